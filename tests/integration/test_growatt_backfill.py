"""Acceptance 5: ``gridtap growatt backfill --days 7`` against the simulator writes the right
daily and hourly points into a real InfluxDB (influxd 1.6 on 127.0.0.1), within the budget
(the simulator answers 10012 to anything its limits forbid, and to calls closer than 3 s),
and shows its progress. The same history pushed to a Pushgateway carries date labels."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import urllib.request
from pathlib import Path

import pytest

from gridtap_plugins.growatt import backfill
from gridtap_plugins.growatt import simulator as gsim

from . import servers
from .conftest import needs

pytestmark = pytest.mark.integration

TZ = dt.timezone(dt.timedelta(hours=1))


def expected_history(days: list[dt.date]) -> tuple[dict, dict, dict, int]:
    """What the simulator's model says: daily kWh (as the API rounds it), hourly mean W, daily peak W."""
    model = gsim.GrowattSimulator(tz_hours=1.0, families=("min", "mix", "datalogger"))
    daily, hourly, peak, points = {}, {}, {}, 0
    for day in days:
        daily[day] = float(f"{model._day_total(day):.1f}")
        slots = [(s, model.plant_slot_power(day, s)) for s in range(288)]
        slots = [(s, p) for s, p in slots if p]
        points += len(slots)
        peak[day] = max(p for _, p in slots)
        by_hour: dict[int, list[float]] = {}
        for s, p in slots:
            by_hour.setdefault(s // 12, []).append(p)
        for h, ps in by_hour.items():
            hourly[(day, h)] = math.fsum(ps) / len(ps)
    return daily, hourly, peak, points


def calls(url: str) -> list[dict]:
    with urllib.request.urlopen(url.removesuffix("/v1/") + "/_sim/calls", timeout=10) as resp:
        return json.load(resp)


def test_seven_day_backfill_into_influxdb(workdir: Path, gridtap: str, influxdb: servers.InfluxDB):
    sim, url = servers.start_simulator("growatt", workdir, "--timezone", "1", "--devices", "min,mix,datalogger",
                                       "--min-spacing", "3s")
    try:
        res = servers.run_gridtap(["growatt", "backfill", "--days", "7", "--name", "roof", "--token",
                                   gsim.DEFAULT_TOKEN, "--base-url", url, "--cache-dir", str(workdir / "cache"),
                                   "--influx-url", influxdb.url, "--influx-db", influxdb.db, "--progress", "lines"],
                                  timeout=180)
        log = calls(url)
    finally:
        sim.stop()
    err = res.stderr.decode()
    assert res.returncode == 0, err
    # progress: one line per call of the history, then a summary
    steps = [ln for ln in err.splitlines() if ln.startswith("growatt backfill: ") and "/8 " in ln]
    assert [ln.split()[2] for ln in steps] == [f"{i}/8" for i in range(1, 9)]
    assert "plant/energy" in steps[0] and all("plant/power" in ln for ln in steps[1:])
    assert "point(s) of 7 day(s) written" in err

    today = dt.datetime.now(TZ).date()
    days = [today - dt.timedelta(days=i) for i in range(7, 0, -1)]
    daily, hourly, peak, n_points = expected_history(days)

    rows = influxdb.rows("SELECT plant_daily_energy_joules, plant_daily_peak_power_watts FROM growatt "
                         "WHERE plant_id = '4242' AND device = 'roof'")
    got_daily = {dt.datetime.fromtimestamp(r["time"] / 1e9, TZ): r for r in rows}
    assert sorted(got_daily) == [dt.datetime.combine(d, dt.time(), TZ) for d in days]  # local midnights
    for d in days:
        r = got_daily[dt.datetime.combine(d, dt.time(), TZ)]
        assert r["plant_daily_energy_joules"] == pytest.approx(daily[d] * 3.6e6)
        assert r["plant_daily_peak_power_watts"] == pytest.approx(peak[d], rel=1e-6)

    rows = influxdb.rows("SELECT plant_hourly_average_power_watts FROM growatt WHERE plant_id = '4242'")
    got_hourly = {dt.datetime.fromtimestamp(r["time"] / 1e9, TZ): r["plant_hourly_average_power_watts"]
                  for r in rows if r["plant_hourly_average_power_watts"] is not None}
    want_hourly = {dt.datetime.combine(d, dt.time(h), TZ): w for (d, h), w in hourly.items()}
    assert sorted(got_hourly) == sorted(want_hourly)
    for t, w in want_hourly.items():
        assert got_hourly[t] == pytest.approx(w, abs=5e-4), t  # means are written to 3 decimals
    count = influxdb.rows("SELECT count(plant_power_watts) FROM growatt WHERE plant_id = '4242'")
    assert count[0]["count"] == n_points  # every 5-minute value, at its own time

    # within the budget: nothing refused, 3 s apart, one plant/energy call for 7 days, one plant/power per day
    assert [c for c in log if c["code"] != 0] == []
    assert min(c["gap"] for c in log if c["gap"] is not None) >= 3.0
    assert sum(c["endpoint"] == "plant/energy" for c in log) == 1
    power_dates = [c["params"]["date"] for c in log if c["endpoint"] == "plant/power"]
    assert power_dates == [d.isoformat() for d in days]


def test_backfill_to_a_pushgateway_with_date_labels(workdir: Path, gridtap: str):
    with needs():
        gateway = servers.start_pushgateway(workdir / "pgw")
    sim, url = servers.start_simulator("growatt", workdir, "--timezone", "1", "--devices", "min,datalogger")
    try:
        res = servers.run_gridtap(["growatt", "backfill", "--days", "2", "--name", "roof", "--token",
                                   gsim.DEFAULT_TOKEN, "--base-url", url, "--cache-dir", str(workdir / "cache"),
                                   "--pushgateway", gateway.url, "--progress", "none", "--call-spacing", "1s"],
                                  timeout=120)
        assert res.returncode == 0, res.stderr.decode()
        groups = [g for g in gateway.groups() if g["labels"].get("plugin") == "growatt"]
        assert groups and all(g["labels"]["job"] == "gridtap-history" and g["labels"]["device"] == "roof"
                              for g in groups)
        _, _, body = servers.http_get(gateway.url + "/metrics", timeout=5)
        text = body.decode()
        today = dt.datetime.now(TZ).date()
        daily, _hourly, _peak, _n = expected_history([today - dt.timedelta(days=i) for i in (2, 1)])
        model = gsim.GrowattSimulator(tz_hours=1.0, families=("min", "datalogger"))
        for d in daily:
            want = float(f"{model._day_total(d):.1f}") * 3.6e6
            line = next(ln for ln in text.splitlines() if ln.startswith("growatt_plant_daily_energy_joules{")
                        and f'date="{d.isoformat()}"' in ln)
            assert float(line.rsplit(" ", 1)[1]) == pytest.approx(want)
        assert 'growatt_plant_hourly_average_power_watts{' in text and 'hour="12"' in text
    finally:
        sim.stop()
        gateway.proc.stop()


def test_progress_bar_on_a_terminal_and_lines_otherwise():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = backfill.Progress(4, "auto", tty)
    bar.step("plant/energy")
    bar.step("plant/power 2026-06-20")
    bar.finish()
    assert tty.getvalue().startswith("\r[" + "#" * 7 + "." * 23 + "] 1/4 plant/energy")
    assert "\r[" + "#" * 15 + "." * 15 + "] 2/4 plant/power 2026-06-20" in tty.getvalue()
    plain = io.StringIO()
    lines = backfill.Progress(2, "auto", plain)
    lines.step("a")
    lines.step("b")
    assert plain.getvalue() == "growatt backfill: 1/2 a\ngrowatt backfill: 2/2 b\n"


def test_days_out_of_range_and_two_outputs_are_config_errors(workdir: Path, gridtap: str):
    res = servers.run_gridtap(["growatt", "backfill", "--days", "200", "--token", "t" * 32])
    assert res.returncode == 2 and "--days" in servers.one_error_line(res)
    res = servers.run_gridtap(["growatt", "backfill", "--days", "2", "--token", "t" * 32, "--influx-url",
                               "http://127.0.0.1:1", "--influx-db", "x", "--pushgateway", "http://127.0.0.1:2"])
    assert res.returncode == 2 and "one place at a time" in servers.one_error_line(res)


def test_backfill_respects_a_spent_daily_cap(workdir: Path, gridtap: str):
    """Ten plant/energy calls in the last 24 hours (another tool, an earlier run): the backfill
    says so in one line before spending anything, and exits 1."""
    import time

    from gridtap.budget import Budget, Limit
    from gridtap_plugins.growatt import poller

    sim, url = servers.start_simulator("growatt", workdir, "--devices", "min")
    try:
        cache = workdir / "cache"
        budget = Budget(limits={"plant/energy": Limit(per_day=10)},
                        path=cache / f"{poller.file_stem(url, gsim.DEFAULT_TOKEN)}.budget.json")
        for i in range(10):
            assert budget.acquire("plant/energy", {"n": i}).allowed
        res = servers.run_gridtap(["growatt", "backfill", "--days", "3", "--token", gsim.DEFAULT_TOKEN, "--base-url",
                                   url, "--cache-dir", str(cache), "--call-spacing", "1s"], timeout=120)
        assert res.returncode == 1
        assert "plant/energy allows 10 calls a day and 0 are left" in servers.one_error_line(res)
        assert [c["endpoint"] for c in calls(url)] == ["plant/list", "device/list"]  # discovery only
        assert time.time() - budget.next_allowed("plant/energy") < 0  # still capped
    finally:
        sim.stop()


@pytest.mark.parametrize(("end", "days", "needle"), [
    ("2099-01-01", "1", "--end: 2099-01-01 is in the future"),
    ("2020-01-01", "1", "Growatt keeps about 95 days"),
    ((dt.date.today() - dt.timedelta(days=60)).isoformat(), "40", "Growatt keeps about 95 days"),
])
def test_a_history_growatt_does_not_keep_is_refused_before_any_call(workdir: Path, gridtap: str, end, days, needle):
    res = servers.run_gridtap(["growatt", "backfill", "--days", days, "--end", end, "--token", "t" * 32,
                               "--base-url", "http://127.0.0.1:1/v1/", "--cache-dir", str(workdir / "c")])
    assert res.returncode == 2 and needle in servers.one_error_line(res)


def test_an_unreachable_influxdb_is_one_line_before_anything_is_spent(workdir: Path, gridtap: str):
    """The history is fetched within a budget (10 plant/energy calls a day): a wrong
    --influx-url is found out before a single call is made, not after the fetching."""
    sim, url = servers.start_simulator("growatt", workdir, "--devices", "min")
    try:
        res = servers.run_gridtap(["growatt", "backfill", "--days", "2", "--token", gsim.DEFAULT_TOKEN, "--base-url",
                                   url, "--cache-dir", str(workdir / "cache"), "--influx-url",
                                   f"http://127.0.0.1:{servers.free_port()}", "--influx-db", "solar"], timeout=60)
        assert res.returncode != 0
        line = servers.one_error_line(res)
        assert "influxdb" in line and "nothing was fetched" in line
        assert calls(url) == []
        res = servers.run_gridtap(["growatt", "backfill", "--days", "2", "--token", gsim.DEFAULT_TOKEN, "--base-url",
                                   url, "--cache-dir", str(workdir / "cache"), "--pushgateway",
                                   f"http://127.0.0.1:{servers.free_port()}"], timeout=60)
        assert res.returncode != 0 and "pushgateway" in servers.one_error_line(res).lower()
        assert calls(url) == []
    finally:
        sim.stop()


def test_the_bar_ends_with_one_line_break():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = backfill.Progress(1, "auto", tty)
    bar.step("plant/energy")
    bar.finish()
    bar.note("8 point(s) written")
    assert tty.getvalue().endswith("plant/energy" + " " * 48 + "\ngrowatt backfill: 8 point(s) written\n")
