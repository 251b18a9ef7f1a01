"""Telegraf's ``inputs.execd`` runs ``gridtap run intergas --output influx --signal STDIN``.

Telegraf writes one newline per interval; gridtap answers with one batch and exits when
Telegraf closes its stdin (Telegraf waits 5 s before SIGTERM, so exiting on EOF is the only
way to be gone in under 5 s). The same contract is also checked without Telegraf.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from . import servers

pytestmark = pytest.mark.integration

#: Fields that legitimately differ between two collections of the same device state.
TIME_DEPENDENT = ("seconds", "timestamp", "duration")


def run_argv(sim: str, *extra: str) -> list[str]:
    return [servers.gridtap_bin(), "run", "intergas", "--port", sim, "--name", "boiler", "--output", "influx",
            *extra]


def stable_points(lines: list[servers.LPLine]) -> dict[tuple, dict]:
    """{(measurement, tags): fields} without the time-dependent fields."""
    out: dict[tuple, dict] = {}
    for ln in lines:
        key = (ln.measurement, frozenset(ln.tags.items()))
        out.setdefault(key, {}).update(
            {k: v for k, v in ln.fields.items() if not any(t in k for t in TIME_DEPENDENT)}
        )
    return out


def by_timestamp(lines: list[servers.LPLine]) -> dict[int | None, list[servers.LPLine]]:
    out: dict[int | None, list[servers.LPLine]] = {}
    for ln in lines:
        out.setdefault(ln.timestamp, []).append(ln)
    return out


def test_telegraf_execd_collects_our_metrics_and_stops_us_gracefully(
    workdir: Path, telegraf: str, intergas_fixed: tuple[str, dict[str, float]]
) -> None:
    sim, temps = intergas_fixed
    once = servers.run_gridtap(run_argv(sim, "--once")[1:])
    assert once.returncode == 0, once.stderr.decode()
    once_lines = servers.parse_line_protocol(once.stdout.decode())
    expected = stable_points(once_lines)

    tg = servers.start_telegraf(workdir, run_argv(sim, "--signal", "STDIN"), signal_mode="STDIN")
    try:
        def two_batches() -> bool:
            lines = [ln for ln in servers.parse_line_protocol(tg.output()) if ln.measurement == "intergas"]
            stamps = {ln.timestamp for ln in lines if "up" in ln.fields}
            return len(stamps) >= 2

        servers.wait_until(two_batches, 40, "two intergas batches in Telegraf's file output", tg.proc)
        kids = servers.children_of(tg.proc.pid)
        assert len(kids) == 1, f"expected one execd child of Telegraf, found {kids}"
        child = kids[0]

        t0 = time.monotonic()
        os.kill(tg.proc.pid, 15)  # Telegraf closes the child's stdin first
        while servers.pid_alive(child) and time.monotonic() - t0 < 12:
            time.sleep(0.05)
        child_gone_after = time.monotonic() - t0
        rc = tg.proc.stop(timeout=15)
    finally:
        tg.proc.stop()

    log = tg.proc.log()
    assert child_gone_after < 4.5, (
        f"gridtap took {child_gone_after:.1f} s to exit after Telegraf closed its stdin\n{log}"
    )
    assert rc == 0, f"Telegraf exited {rc}\n{log}"
    assert "parse error" not in log.lower(), log
    # Telegraf's stdout/stderr readers race its own Wait() once the child has exited on stdin
    # EOF, as the execd contract asks, and then log "read |0: file already closed"; that is
    # Telegraf's shutdown noise, not something we wrote. Every other execd error counts.
    execd_errors = [ln for ln in log.splitlines()
                    if "E! [inputs.execd]" in ln and "file already closed" not in ln]
    assert not execd_errors, log

    lines = [ln for ln in servers.parse_line_protocol(tg.output()) if ln.measurement == "intergas"]
    assert lines, tg.output()
    batches = by_timestamp(lines)
    assert None not in batches, "a line without timestamp reached Telegraf"
    for stamp, batch in batches.items():
        assert stable_points(batch) == expected, (
            f"the batch at {stamp} differs from `gridtap run intergas --once`"
        )
    got = stable_points(lines)
    for sensor, value in temps.items():
        key = ("intergas", frozenset({("device", "boiler"), ("sensor", sensor)}))
        assert got[key]["temperature_celsius"] == pytest.approx(value, abs=0.005), (sensor, got.get(key))
    up = [ln.fields["up"] for ln in lines if "up" in ln.fields]
    assert up and all(v == 1 for v in up), up


def _read_until(proc: subprocess.Popen, buf: bytearray, predicate, timeout: float) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while not predicate(bytes(buf)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; stdout so far: {bytes(buf)!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"stdout closed early (exit {proc.poll()}); stdout: {bytes(buf)!r}")
            buf += chunk


def test_stdin_signal_one_batch_per_newline_and_exit_on_eof(
    workdir: Path, intergas_fixed: tuple[str, dict[str, float]]
) -> None:
    sim, _temps = intergas_fixed
    proc = servers.spawn("gridtap-stdin", run_argv(sim, "--signal", "STDIN"), workdir,
                         env=servers.gridtap_env(), stdin=subprocess.PIPE, stdout_pipe=True)
    try:
        assert proc.popen.stdin is not None
        buf = bytearray()

        def n_up(data: bytes) -> int:
            return sum(1 for ln in data.split(b"\n") if b" up=" in ln or b",up=" in ln)

        time.sleep(1.0)
        assert n_up(bytes(buf)) == 0 and proc.alive(), "gridtap must wait for a newline before collecting"
        for n in (1, 2, 3):
            proc.popen.stdin.write(b"\n")
            proc.popen.stdin.flush()
            _read_until(proc.popen, buf, lambda d, n=n: n_up(d) >= n and d.endswith(b"\n"), 20)
        proc.popen.stdin.close()
        t0 = time.monotonic()
        rc = proc.popen.wait(5)
        took = time.monotonic() - t0
        rest = proc.popen.stdout.read() if proc.popen.stdout else b""
    finally:
        proc.stop()
    assert rc == 0, f"exit {rc} after stdin EOF\n{proc.log()}"
    assert took < 5
    lines = servers.parse_line_protocol((bytes(buf) + rest).decode())
    assert len({ln.timestamp for ln in lines}) == 3, "expected exactly one batch per newline"


def test_once_unreachable_device_fails_with_one_line(workdir: Path, gridtap: str) -> None:
    port = servers.free_port()  # nothing listens there
    res = servers.run_gridtap(["run", "intergas", "--port", f"socket://127.0.0.1:{port}", "--name", "boiler",
                               "--output", "influx", "--once"])
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode != 0, res
    assert len(err) == 1, f"expected one line on stderr, got: {err}"
