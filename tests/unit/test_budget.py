"""gridtap.budget: spacing, per-key intervals, rolling daily caps, back-off windows, the state
file shared by restarts and processes, and bounded memory, on a manual clock."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from gridtap.budget import EVERYTHING, Budget, Limit, ManualClock, SystemClock, call_key

T0 = 1_750_000_000.0


def growatt_like(clock: ManualClock, path: Path | None = None, **kw) -> Budget:
    return Budget(spacing=3.0, default=Limit(interval=300.0),
                  limits={"plant/list": Limit(interval=300.0, per_day=10)}, clock=clock, path=path, **kw)


def test_call_key_is_order_blind_and_separates_parameters():
    assert call_key("plant/data", {"plant_id": 1}) == "plant/data?plant_id=1"
    assert call_key("x", {"b": 2, "a": "1 2"}) == call_key("x", {"a": "1 2", "b": 2}) == "x?a=1+2&b=2"
    assert call_key("x") == call_key("x", {}) == "x"


def test_spacing_between_any_two_calls():
    clock = ManualClock(T0)
    b = growatt_like(clock)
    assert b.acquire("plant/data", {"plant_id": 1}).allowed
    v = b.check("device/list", {"plant_id": 1})  # another endpoint: still 3 s apart
    assert not v.allowed and v.at == T0 + 3.0 and "3 s between calls" in v.reason
    clock.advance(3.0)
    assert b.check("device/list", {"plant_id": 1}).allowed


def test_interval_is_per_endpoint_and_parameters():
    clock = ManualClock(T0)
    b = growatt_like(clock)
    assert b.acquire("plant/data", {"plant_id": 1}).allowed
    clock.advance(10)
    assert b.acquire("plant/data", {"plant_id": 2}).allowed  # other parameters: another key
    v = b.check("plant/data", {"plant_id": 1})
    assert not v.allowed and v.at == T0 + 300 and "one call per 5 min" in v.reason
    assert b.next_allowed("plant/data", {"plant_id": 1}) == T0 + 300
    clock.set(T0 + 299.9)
    assert not b.check("plant/data", {"plant_id": 1}).allowed
    clock.set(T0 + 300)
    assert b.check("plant/data", {"plant_id": 1}).allowed


def test_done_measures_the_window_from_the_answer():
    clock = ManualClock(T0)
    b = growatt_like(clock)
    assert b.acquire("plant/data", {"plant_id": 1}).allowed
    clock.advance(2.5)  # a slow answer
    b.done("plant/data", {"plant_id": 1})
    assert b.next_allowed("plant/data", {"plant_id": 1}) == T0 + 302.5


def test_daily_cap_over_24_simulated_hours_is_rolling():
    clock = ManualClock(T0)
    b = growatt_like(clock)
    booked = []
    started = time.monotonic()
    for _ in range(24 * 12 * 2):  # a try every 5 minutes for 48 hours
        if b.acquire("plant/list").allowed:
            booked.append(clock.time())
        clock.advance(300)
    assert time.monotonic() - started < 2.0  # 48 simulated hours take no real time
    # never more than 10 in any 24 hours, and the cap is used, not starved
    for i, t in enumerate(booked):
        assert sum(1 for u in booked[i:] if u < t + 86400) <= 10
    assert len(booked) == 20
    assert booked[10] == booked[0] + 86400  # allowed again exactly when the first left the window
    clock.set(booked[-1] + 600)
    v = b.check("plant/list")
    assert not v.allowed and "daily cap: 10 of 10" in v.reason and v.at == booked[10] + 86400
    assert b.calls_today("plant/list") == 10


def test_acquire_waits_a_bounded_time():
    clock = ManualClock(T0)
    b = growatt_like(clock)
    assert b.acquire("a").allowed
    v = b.acquire("b", max_wait=5.0)  # 3 s spacing: waits (the manual clock moves) and books
    assert v.allowed and clock.time() == T0 + 3.0
    v = b.acquire("a", max_wait=5.0)  # 297 s left: does not wait, books nothing
    assert not v.allowed and v.at == T0 + 300 and clock.time() == T0 + 3.0


def test_blocks_on_key_endpoint_and_everything():
    clock = ManualClock(T0)
    b = Budget(clock=clock)
    until = b.block(call_key("device/tlx/tlx_last_data", {"tlx_sn": "A"}), 300, "10012 rate limited")
    assert until == T0 + 300
    v = b.check("device/tlx/tlx_last_data", {"tlx_sn": "A"})
    assert not v.allowed and v.at == T0 + 300 and v.reason == "back-off: 10012 rate limited"
    assert b.check("device/tlx/tlx_last_data", {"tlx_sn": "B"}).allowed  # other device carries on
    b.block("device/tlx/tlx_last_data", 60, "endpoint")
    assert not b.check("device/tlx/tlx_last_data", {"tlx_sn": "B"}).allowed
    assert b.check("plant/data", {"plant_id": 1}).allowed
    b.block(EVERYTHING, 30, "transport error")
    assert b.check("plant/data", {"plant_id": 1}).reason == "back-off: transport error"
    assert b.block(EVERYTHING, 5, "shorter") == T0 + 30  # the longer window is kept
    assert set(b.blocked()) == {EVERYTHING, "device/tlx/tlx_last_data", "device/tlx/tlx_last_data?tlx_sn=A"}
    b.unblock(EVERYTHING)
    assert b.check("plant/data", {"plant_id": 1}).allowed
    clock.advance(301)
    assert b.blocked() == {} and b.check("device/tlx/tlx_last_data", {"tlx_sn": "A"}).allowed


def test_failure_backs_off_exponentially_until_a_success():
    clock = ManualClock(T0)
    b = Budget(clock=clock)
    delays = []
    for _ in range(8):
        delays.append(b.failure(EVERYTHING, "HTML instead of JSON", base=30, cap=1800, jitter=0))
        assert b.next_allowed("x") == clock.time() + delays[-1]
        clock.advance(delays[-1])  # the window ends, the next try fails again
    assert delays == [30, 60, 120, 240, 480, 960, 1800, 1800]
    b.success(EVERYTHING)
    assert b.failure(EVERYTHING, "again", base=30, cap=1800, jitter=0) == 30
    jittered = Budget(clock=clock).failure("k", "x", base=100, jitter=0.1)
    assert 90 <= jittered <= 110


def test_state_survives_a_restart_and_is_private(tmp_path: Path):
    clock = ManualClock(T0)
    path = tmp_path / "state" / "budget.json"
    first = growatt_like(clock, path)
    assert first.acquire("plant/list").allowed
    first.block(EVERYTHING, 600, "10011 permission denied")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    second = growatt_like(clock, path)  # a new process, a --once run
    clock.advance(700)
    assert second.check("plant/list").allowed  # window over, back-off over
    assert second.calls_today("plant/list") == 1
    clock.set(T0 + 10)
    v = second.check("plant/list")
    assert not v.allowed and v.reason == "back-off: 10011 permission denied"


def test_a_damaged_or_foreign_state_file_makes_everything_wait_one_interval(tmp_path: Path):
    """What an unreadable ledger said is lost: the calls it counted may be seconds old, so
    nothing is called for one interval (not "no calls yet", which could earn a 10012)."""
    path = tmp_path / "budget.json"
    for content in (b"", b"{not json", b'{"v": 99, "keys": {"x": 1}}', b'{"v": 1, "keys": {"x": "soon"}}', b"[]"):
        path.write_bytes(content)
        clock = ManualClock(T0)
        b = growatt_like(clock, path)
        v = b.check("x")
        assert not v.allowed and v.at == T0 + 300 and "budget.json was unreadable" in v.reason, content
        assert json.loads(path.read_text())["v"] == 1  # replaced at once by a readable one
        clock.advance(300)
        assert b.acquire("x").allowed
        assert json.loads(path.read_text())["keys"] == {"x": T0 + 300}
    path.unlink()
    assert growatt_like(ManualClock(T0), path).check("x").allowed  # no file: the first run


def test_a_process_killed_while_writing_leaves_a_readable_ledger(tmp_path: Path):
    """kill -9 at random moments of a process that books calls as fast as it can: the file is
    always the old ledger or the new one (atomic replace), never a damaged one."""
    import random
    import signal
    import subprocess
    import sys

    path = tmp_path / "budget.json"
    code = ("import sys\nfrom gridtap.budget import Budget, Limit, SystemClock\n"
            "b = Budget(default=Limit(interval=0.0), path=sys.argv[1], clock=SystemClock())\n"
            "i = 0\nwhile True:\n    b.acquire('k', {'i': i % 500}); i += 1\n")
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        time.sleep(0.4 + random.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        doc = json.loads(path.read_bytes())
        assert doc["v"] == 1 and doc["keys"], "the ledger survived"
        assert growatt_like(ManualClock(time.time() + 10), path).check("other").allowed  # trusted
    # The temporary files of the killed writes are orphans; the next write clears the old ones.
    for orphan in tmp_path.glob(".budget.json.*"):
        os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    (tmp_path / ".budget.json.inflight").write_text("{}")  # a write under way now is left alone
    growatt_like(ManualClock(time.time() + 10), path).acquire("other")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".budget.json.inflight", "budget.json", "budget.json.lock"]


def test_memory_and_file_stay_bounded(tmp_path: Path):
    clock = ManualClock(T0)
    path = tmp_path / "budget.json"
    b = Budget(default=Limit(interval=3600), limits={"capped": Limit(per_day=5)}, clock=clock, path=path,
               max_keys=50)
    for i in range(300):
        b.acquire("history", {"date": i})
        b.acquire("capped", {"n": i})
        b.block(call_key("history", {"date": i}), 3600, "r")
        b.failure(f"scope{i}", "f")
        clock.advance(1)
    doc = json.loads(path.read_text())
    assert len(doc["keys"]) <= 50 and len(doc["blocks"]) <= 50 and len(doc["failures"]) <= 50
    assert len(doc["day"]["capped"]) == 5
    assert path.stat().st_size < 15_000
    clock.advance(2 * 86400)
    b.acquire("other")
    doc = json.loads(path.read_text())
    assert doc["keys"] == {"other": clock.time()} and doc["day"] == {} and doc["blocks"] == {}


def _hammer(path: str, out: str, stop_at: float) -> None:
    b = Budget(default=Limit(interval=0.05), path=path, clock=SystemClock())
    booked = []
    while time.time() < stop_at:
        v = b.acquire("shared")
        if v.allowed:
            booked.append(v.at)  # the booking's own time, taken under the lock
    Path(out).write_text(json.dumps(booked))


def test_two_processes_share_one_budget(tmp_path: Path):
    path = tmp_path / "budget.json"
    stop_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(path), str(tmp_path / f"out{i}"), stop_at)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    booked = sorted(t for i in range(2) for t in json.loads((tmp_path / f"out{i}").read_text()))
    assert len(booked) >= 5
    gaps = [b - a for a, b in zip(booked, booked[1:], strict=False)]
    assert min(gaps) >= 0.05 - 1e-3, gaps  # never two bookings inside one interval, whoever made them


@pytest.mark.parametrize("bad", [{"interval": 300.0, "per_day": 0}])
def test_a_zero_cap_never_allows(bad):
    b = Budget(limits={"x": Limit(**bad)}, clock=ManualClock(T0))
    v = b.check("x")
    assert not v.allowed and v.at == float("inf") and not b.acquire("x", max_wait=1e9).allowed


def test_system_clock_sleep_can_be_cut_short():
    clock = SystemClock()
    clock.wake()
    t = time.monotonic()
    clock.sleep(10)
    assert time.monotonic() - t < 1


def test_the_file_is_written_only_when_the_ledger_changes(tmp_path: Path, monkeypatch):
    """Every write is an fsync (an SD card on a Raspberry Pi): a call costs its booking and its
    answer, and questions, no-op successes and re-blocks with a shorter window cost nothing."""
    from gridtap import state

    writes = []
    real = state.write_private
    monkeypatch.setattr(state, "write_private", lambda p, data: (writes.append(p), real(p, data)))
    clock = ManualClock(T0)
    b = growatt_like(clock, tmp_path / "budget.json")
    key = call_key("plant/data", {"plant_id": 1})
    assert b.acquire("plant/data", {"plant_id": 1}).allowed
    clock.advance(0.5)
    b.done("plant/data", {"plant_id": 1})
    b.success(EVERYTHING)
    b.success(key)
    b.check("plant/data", {"plant_id": 1})
    b.calls_today("plant/list")
    b.snapshot()
    assert len(writes) == 2  # the booking and the answer
    b.block(EVERYTHING, 600, "10011")
    b.block(EVERYTHING, 60, "shorter: the longer window stays")
    b.unblock("nothing-there")
    assert len(writes) == 3
    b.failure(key, "error 10001")
    b.success(key)  # ends a streak: written
    assert len(writes) == 5
    assert growatt_like(clock, tmp_path / "budget.json").failures(key) == 0
