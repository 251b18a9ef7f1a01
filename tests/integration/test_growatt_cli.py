"""Acceptance 3: ``gridtap run growatt --token T --base-url URL --cache-dir DIR --once --output
influx`` against ``gridtap simulate growatt`` prints real values; an immediate second run with
the same cache makes no discovery call and provokes no 10012; a wrong token is one clear line
and the token is never printed. Also: the design's GROWATT_* variables, ${VAR} in YAML, and
config mistakes as one line with exit 2."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridtap_plugins.growatt import simulator as gsim

from . import servers

pytestmark = pytest.mark.integration

TOKEN = gsim.DEFAULT_TOKEN
MIN_SN, MIX_SN = gsim.DEVICES["min"].sn, gsim.DEVICES["mix"].sn


def midday_offset() -> int:
    """A plant time zone in which it is about noon now, so the simulated sun shines."""
    return max(-12, min(14, 12 - dt.datetime.now(dt.UTC).hour))


@pytest.fixture
def sim(workdir: Path, gridtap: str) -> Iterator[tuple[str, str, int]]:
    """(API URL, control URL, tz hours): a real-clock simulator with the real 5-minute window."""
    tz = midday_offset()
    proc, url = servers.start_simulator("growatt", workdir, "--timezone", str(tz), "--devices", "min,mix,datalogger",
                                        "--min-spacing", "3s")
    try:
        yield url, url.removesuffix("/v1/"), tz
    finally:
        proc.stop()


def calls(control: str) -> list[dict]:
    with urllib.request.urlopen(f"{control}/_sim/calls", timeout=10) as resp:
        return json.load(resp)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    import subprocess

    full = servers.gridtap_env()
    full.update(env or {})
    return subprocess.run([servers.gridtap_bin(), *args], capture_output=True, timeout=timeout, env=full,
                          stdin=subprocess.DEVNULL)


def fields(stdout: bytes) -> dict[tuple[str, frozenset], object]:
    out = {}
    for line in servers.parse_line_protocol(stdout.decode()):
        tags = frozenset((k, v) for k, v in line.tags.items() if k != "device")
        for k, v in line.fields.items():
            out[(k, tags)] = v
    return out


def pick(got: dict, field: str, **tags: str):
    found = [v for (f, ts), v in got.items() if f == field and all((k, x) in ts for k, x in tags.items())]
    assert len(found) == 1, (field, tags, found)
    return found[0]


def test_once_prints_real_values_and_a_second_run_calls_nothing(sim, workdir: Path):
    url, control, tz = sim
    cache = workdir / "cache"
    first = run("run", "growatt", "--token", TOKEN, "--base-url", url, "--cache-dir", str(cache), "--once",
                "--output", "influx")
    assert first.returncode == 0, first.stderr.decode()
    log = calls(control)
    got = fields(first.stdout)
    # the values the simulator served at the moment of each call, in base units
    model = gsim.PlantModel(float(tz))
    t_min = next(c["t"] for c in log if c["endpoint"] == "device/tlx/tlx_last_data")
    rec = gsim.min_record(model, gsim.DEVICES["min"], t_min)
    assert pick(got, "ac_energy_joules_total", device_sn=MIN_SN) == pytest.approx(rec["eacTotal"] * 3.6e6)
    assert pick(got, "ac_power_watts", device_sn=MIN_SN) == pytest.approx(rec["pac"], abs=0.05)
    assert pick(got, "ac_power_watts", device_sn=MIN_SN) > 100  # noon in the plant's zone
    t_mix = next(c["t"] for c in log if c["endpoint"] == "device/mix/mix_last_data")
    mix = gsim.mix_record(model, gsim.DEVICES["mix"], t_mix)
    assert pick(got, "battery_state_of_charge_ratio", device_sn=MIX_SN) == pytest.approx(float(mix["soc"]) / 100)
    assert pick(got, "grid_export_energy_joules_total", device_sn=MIX_SN) == \
        pytest.approx(float(mix["etogridTotal"]) * 3.6e6)
    assert pick(got, "up", ) == 1
    assert pick(got, "reading_stale", endpoint="device/tlx/tlx_last_data") == 0
    assert {c["endpoint"] for c in log} >= {"plant/list", "device/list", "plant/data", "device/tlx/tlx_last_data",
                                            "device/mix/mix_last_data"}
    assert all(c["code"] == 0 for c in log)

    second = run("run", "growatt", "--token", TOKEN, "--base-url", url, "--cache-dir", str(cache), "--once",
                 "--output", "influx")
    assert second.returncode == 0, second.stderr.decode()
    new = calls(control)[len(log):]
    assert not [c for c in new if c["endpoint"] in ("plant/list", "device/list")]  # no discovery call
    assert not [c for c in new if c["code"] == 10012]  # and no call inside a window
    assert not [c for c in new if c["endpoint"].endswith("_last_data") or c["endpoint"] == "plant/data"]
    again = fields(second.stdout)
    assert pick(again, "ac_energy_joules_total", device_sn=MIN_SN) == pick(got, "ac_energy_joules_total",
                                                                          device_sn=MIN_SN)
    assert pick(again, "reading_stale", endpoint="device/tlx/tlx_last_data") == 1  # from the cache, said so
    assert pick(again, "data_timestamp_seconds", device_sn=MIN_SN) == pick(got, "data_timestamp_seconds",
                                                                          device_sn=MIN_SN)


def test_a_wrong_token_is_one_clear_line_and_never_printed(sim, workdir: Path):
    url, control, _ = sim
    secret = "f00dfeedf00dfeedf00dfeedf00dfeed"
    res = run("run", "growatt", "--token", secret, "--base-url", url, "--cache-dir", str(workdir / "c"), "--once",
              "--output", "influx")
    assert res.returncode == 1
    line = servers.one_error_line(res)
    assert "refused the token (10011" in line and "ShinePhone" in line
    assert secret not in res.stdout.decode() + res.stderr.decode()
    for path in (workdir / "c").iterdir():
        assert secret.encode() not in path.read_bytes(), path
    again = run("run", "growatt", "--token", secret, "--base-url", url, "--cache-dir", str(workdir / "c"), "--once",
                "--output", "influx", "--log-level", "debug")
    assert again.returncode == 1 and secret not in again.stderr.decode() and "token refused" in again.stderr.decode()
    assert [c["endpoint"] for c in calls(control)] == ["plant/list"]  # the second run backed off


def test_environment_of_the_design_and_yaml_variables(sim, workdir: Path):
    url, control, _ = sim
    env = {"GROWATT_TOKEN": TOKEN, "GROWATT_BASE_URL": url, "GROWATT_PLANT_ID": "4242", "GROWATT_DEVICE_SN": MIX_SN,
           "GROWATT_CACHE_DIR": str(workdir / "env-cache")}
    res = run("run", "growatt", "--once", "--output", "influx", env=env)
    assert res.returncode == 0, res.stderr.decode()
    got = fields(res.stdout)
    assert {dict(tags).get("device_sn") for (f, tags) in got if f == "device_info"} == {MIX_SN}
    assert "plant/list" not in {c["endpoint"] for c in calls(control)}  # plant_id given: no plant list
    conf = workdir / "growatt.yaml"
    conf.write_text("devices:\n  - plugin: growatt\n    name: roof\n    token: ${MY_GROWATT_TOKEN}\n"
                    f"    base_url: {url}\n    plant_id: \"4242\"\n    device_sn: [{MIX_SN}]\n"
                    f"    cache_dir: {workdir / 'env-cache'}\n")
    res = run("run", "growatt", "--config", str(conf), "--once", "--output", "influx",
              env={"MY_GROWATT_TOKEN": TOKEN})
    assert res.returncode == 0, res.stderr.decode()
    assert b"growatt,device=roof" in res.stdout
    res = run("run", "growatt", "--config", str(conf), "--once", env={"MY_GROWATT_TOKEN": ""})
    assert res.returncode == 2 and "growatt.token" in servers.one_error_line(res)
    res = run("run", "growatt", "--config", str(conf), "--once")
    assert res.returncode == 2 and "MY_GROWATT_TOKEN is not set" in servers.one_error_line(res)


@pytest.mark.parametrize(("args", "needle"), [
    (["--base-url", "https://server.growatt.com/"], "server.growatt.com is retired"),
    (["--base-url", "ftp://x"], "growatt.base_url"),
    (["--region", "mars"], "growatt.region"),
    (["--timezone", "Mars/Olympus"], "growatt.timezone"),
    (["--plant-id", "my plant"], "growatt.plant_id"),
    (["--rate-window", "0s"], "growatt.rate_window"),
    (["--base-url", "https://openapi.growatt.com/v1/plant/list"], "that is the plant/list endpoint; give the API "
                                                                   "root, e.g. https://openapi.growatt.com/v1/"),
    (["--base-url", "https://openapi.growatt.com/v1/?token=" + "x" * 32], "the token goes in token"),
    (["--base-url", "https://" + "x" * 32 + "@openapi.growatt.com/v1/"], "the token goes in token"),
])
def test_config_mistakes_are_one_line_exit_2(workdir: Path, gridtap: str, args, needle):
    res = run("run", "growatt", "--token", "x" * 32, "--cache-dir", str(workdir / "c"), "--once", *args)
    assert res.returncode == 2
    assert needle in servers.one_error_line(res)
    assert "x" * 32 not in res.stderr.decode()


def test_a_token_given_as_plant_id_is_not_echoed(workdir: Path, gridtap: str):
    secret = "0badc0de0badc0de0badc0de0badc0de"
    res = run("run", "growatt", "--token", "x" * 32, "--cache-dir", str(workdir / "c"), "--once",
              "--plant-id", secret)
    assert res.returncode == 2 and "looks like an API token" in servers.one_error_line(res)
    assert secret not in res.stderr.decode()


def test_a_token_with_a_trailing_newline_or_cr_works(sim, workdir: Path):
    url, control, _ = sim
    res = run("run", "growatt", "--base-url", url, "--cache-dir", str(workdir / "c"), "--once", "--output", "influx",
              "--plant-id", "4242", "--device-sn", MIX_SN,
              env={"GROWATT_TOKEN": TOKEN + "\r\n"})  # from an env file written on Windows, or $(cat file)
    assert res.returncode == 0, res.stderr.decode()
    assert [c["code"] for c in calls(control)][:1] == [0]
    res = run("run", "growatt", "--base-url", url, "--cache-dir", str(workdir / "c"), "--once",
              env={"GROWATT_TOKEN": "two words-of-a-secret"})
    assert res.returncode == 2 and "spaces or control characters" in servers.one_error_line(res)
    assert b"words-of-a-secret" not in res.stderr


def test_missing_token_is_a_config_error(workdir: Path, gridtap: str):
    res = run("run", "growatt", "--cache-dir", str(workdir / "c"), "--once")
    assert res.returncode == 2 and "growatt.token: missing required value" in servers.one_error_line(res)


def test_help_shows_no_secret_and_the_simulator_refuses_bad_flags(gridtap: str):
    res = run("run", "growatt", "--help", env={"GROWATT_TOKEN": "s3cr3t-s3cr3t-s3cr3t"})
    assert res.returncode == 0 and b"s3cr3t" not in res.stdout and b"--rate-window" in res.stdout
    res = run("simulate", "growatt", "--window", "soon")
    assert res.returncode == 2 and "--window" in servers.one_error_line(res)


@pytest.mark.parametrize("key", ["region", "device_sn", "plant_id", "base_url", "timezone", "stale_power"])
def test_a_token_pasted_into_the_wrong_key_is_not_printed(workdir: Path, gridtap: str, key: str):
    secret = "c0ffeec0ffeec0ffeec0ffeec0ffee00"
    conf = workdir / "wrong.yaml"
    conf.write_text(f"devices:\n  - plugin: growatt\n    token: ${{TOK}}\n    {key}: ${{TOK}}\n"
                    f"    cache_dir: {workdir / 'c'}\n")
    res = run("run", "growatt", "--config", str(conf), "--once", env={"TOK": secret})
    assert res.returncode == 2 and key in servers.one_error_line(res)
    assert secret not in res.stdout.decode() + res.stderr.decode()


def test_the_telegraf_snippet_under_a_real_telegraf(sim, workdir: Path, telegraf: str, monkeypatch):
    """telegraf.d/growatt.conf as shipped (its command, signal and environment, the token from
    Telegraf's environment), a config file pointing at the simulator: the values arrive."""
    import tomllib

    from tests.conftest import ROOT

    url, control, _ = sim
    snippet = tomllib.loads((ROOT / "telegraf.d" / "growatt.conf").read_text())["inputs"]["execd"][0]
    conf = workdir / "growatt.yaml"
    conf.write_text(f"interval: 5m\ndevices:\n  - plugin: growatt\n    name: roof\n    base_url: {url}\n"
                    f"    cache_dir: {workdir / 'cache'}\n")
    command = [servers.gridtap_bin() if c == "gridtap" else str(conf) if c.endswith("growatt.yaml") else c
               for c in snippet["command"]]
    monkeypatch.setenv("GROWATT_TOKEN", TOKEN)  # Telegraf expands ${GROWATT_TOKEN} from its own environment
    server = servers.start_telegraf(workdir / "telegraf", command, signal_mode=snippet["signal"],
                                    environment=[*snippet["environment"], f"GRIDTAP_STATE_DIR={workdir / 'state'}"])
    try:
        servers.wait_until(lambda: "ac_power_watts=" in server.output() and "battery_state_of_charge_ratio="
                           in server.output(), 90, "growatt lines in Telegraf's output", server.proc)
    finally:
        server.proc.stop()
    lines = [ln for ln in servers.parse_line_protocol(server.output()) if ln.measurement == "growatt"]
    assert {ln.tags.get("device_sn") for ln in lines if "ac_power_watts" in ln.fields} == {MIN_SN, MIX_SN}
    assert TOKEN not in server.output() + server.proc.log()
    assert [c["code"] for c in calls(control)] == [0] * len(calls(control))
