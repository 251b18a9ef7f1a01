"""Issue 11, "bad input and hostile environments": every case here was a traceback, a hang,
gigabytes of memory or a silently ignored mistake before. Each must now be one line on stderr
and a non-zero exit (or, where the user did nothing wrong, just work)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration import servers

pytestmark = pytest.mark.integration


def _gridtap(args: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([servers.gridtap_bin(), *args], timeout=60, env=servers.gridtap_env(), **kw)


@pytest.mark.parametrize("args", [["plugins"], ["--help"], ["--version"], ["run", "intergas", "--help"]])
def test_a_full_disk_on_stdout_is_one_line(args: list[str]) -> None:
    with open("/dev/full", "wb") as full:
        proc = _gridtap(args, stdout=full, stderr=subprocess.PIPE)
    assert proc.returncode == 1
    assert servers.one_error_line(proc) == "gridtap: cannot write to stdout: No space left on device"


def test_closed_stdout_is_one_line_and_no_output_goes_to_a_reused_descriptor(intergas_sim: str) -> None:
    # `gridtap run ... --once >&-`: fd 1 is closed before gridtap starts.
    proc = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--port", intergas_sim, "--once"],
                          stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, env=servers.gridtap_env(),
                          preexec_fn=lambda: os.close(1))
    assert proc.returncode == 1
    assert servers.one_error_line(proc) == "gridtap: cannot write to stdout: stdout is closed"


def test_decode_of_an_endless_input_stops_at_the_cap_in_bounded_memory() -> None:
    """`decode intergas --block 'S?' /dev/zero` grew to 4.2 GB in 4 s; now: 1 GB of address
    space is plenty, and it ends with one line naming the cap."""
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    t0 = time.monotonic()
    proc = _gridtap(["decode", "intergas", "--block", "S?", "/dev/zero"], preexec_fn=limit_memory)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 2
    assert servers.one_error_line(proc) == ("gridtap: /dev/zero: larger than 16 MiB, the most gridtap decode "
                                            "reads from one capture; split it")


def test_decode_of_a_big_hex_file_is_streamed(tmp_path: Path) -> None:
    """A 39 MB hex file took 1.18 GB; 40 MB of hex text (13 MiB of bytes) now fits in 512 MB."""
    big = tmp_path / "big.hex"
    row = ("00 " * 32).strip() + "\n"
    with big.open("w") as f:
        f.write("# a long capture\n")
        for _ in range(40_000_000 // len(row)):
            f.write(row)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))

    proc = _gridtap(["decode", "intergas", "--block", "S?", str(big)], preexec_fn=limit_memory)
    assert proc.returncode == 2  # 13 MiB is not one 32-byte block: a clear refusal, not a MemoryError
    line = servers.one_error_line(proc)
    assert "a S? block is 32 bytes" in line, line


def test_a_non_ascii_comment_in_a_hex_capture(tmp_path: Path) -> None:
    from gridtap_plugins.intergas import encode, simulator

    block = encode.encode_block("S?", simulator.BoilerModel(start=0.0).values("S?", now=0.0))
    capture = tmp_path / "S.hex"
    capture.write_text(f"# Kessel im Keller — Zählerstand ✓\n{block.hex(' ')}\n", encoding="utf-8")
    proc = _gridtap(["decode", "intergas", "--block", "S?", str(capture)])
    assert proc.returncode == 0, proc.stderr.decode()
    rows = json.loads(proc.stdout)
    assert any(r["name"] == "intergas_temperature_celsius" for r in rows)


@pytest.mark.parametrize("delay", [0.15, 0.5, 1.5])
def test_ctrl_c_exits_130_quietly(delay: float) -> None:
    proc = subprocess.Popen([servers.gridtap_bin(), "run", "intergas", "--port", f"socket://127.0.0.1:{servers.free_port()}",
                             "--output", "prometheus", "--listen", "127.0.0.1:0", "--log-level", "error"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=servers.gridtap_env(),
                            restore_signals=True, start_new_session=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err


def test_wait_0s_is_what_the_help_shows(intergas_sim: str) -> None:
    proc = _gridtap(["run", "intergas", "--port", intergas_sim, "--once", "--wait", "0s"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"intergas,device=intergas" in proc.stdout


def test_a_mistyped_environment_variable_is_refused_like_a_mistyped_key() -> None:
    env = {**servers.gridtap_env(), "GRIDTAP_INTERGAS_PROT": "/dev/ttyUSB0"}
    proc = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--port", "/dev/null", "--once"],
                          capture_output=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert servers.one_error_line(proc) == ("gridtap: config error: GRIDTAP_INTERGAS_PROT: unknown setting for "
                                            "intergas (did you mean GRIDTAP_INTERGAS_PORT?)")


@pytest.mark.parametrize("name", ["", " "])
def test_an_empty_name_is_refused(name: str) -> None:
    proc = _gridtap(["run", "intergas", "--port", "/dev/null", "--name", name, "--once"])
    assert proc.returncode == 2
    assert "intergas.name" in servers.one_error_line(proc)


def test_json_logs_are_json_from_the_first_line() -> None:
    """`--log-format json` printed the demo banner as plain text."""
    port = servers.free_port()
    proc = _gridtap(["demo", "--listen", f"127.0.0.1:{port}", "--duration", "2s", "--interval", "1s",
                     "--log-format", "json"])
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines, "no log lines at all"
    records = [json.loads(line) for line in lines]  # every line parses
    assert any("gridtap demo" in r["msg"] for r in records)
