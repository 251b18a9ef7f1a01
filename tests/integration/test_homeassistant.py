"""gridtap's MQTT output in a real Home Assistant (tests/integration/homeassistant.py) with Mosquitto.

Per plugin (``CASES``; a new plugin joins with one more entry): two ``gridtap run <plugin>
--output mqtt`` processes, each reading its own simulator, publish to one broker; Home
Assistant's registries and states are then held to what a Home Assistant user should get:

* the entity count per domain and the dashboard (enabled, non-diagnostic) entities by name;
* units a person reads and device classes, values equal to the model's (converted), no float
  noise;
* one HA device per physical device, with manufacturer/model/serial and ``via_device``;
* the energy entities accepted by ``energy/validate``;
* stopping one process (SIGTERM, then SIGKILL and its Last Will) makes only its entities
  unavailable; a stopped device makes its measurements unavailable while its diagnostics stay;
  both recover.

Plus, device-blind (on intergas): a renamed device's entities disappear, and a ``--once`` run
leaves nothing behind.

Marked ``homeassistant``: ``-m "not homeassistant"`` skips it locally; CI runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import homeassistant as H
from . import servers
from .conftest import INTERGAS_BLOCKS, INTERGAS_FILE, needs
from .test_mqtt import Sub

pytestmark = [pytest.mark.integration, pytest.mark.homeassistant]

KEEPALIVE = 5  # s: the Last Will comes about 1.5 keepalives after a SIGKILL


@dataclass
class Rig:
    ha: H.HomeAssistant
    broker: servers.Mosquitto
    workdir: Path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    workdir = tmp_path_factory.mktemp("homeassistant")
    with needs():
        H.require_venv()
        broker = servers.start_mosquitto(workdir / "mosquitto")
    try:
        ha = H.start_homeassistant(workdir)
        try:
            t0 = time.monotonic()
            ha.add_mqtt(broker.port)
            ha.timings["mqtt"] = time.monotonic() - t0
            print(f"\nHome Assistant {H.HA_VERSION}: up in {ha.timings['start']:.1f} s, "
                  f"MQTT set up in {ha.timings['mqtt']:.1f} s")
            yield Rig(ha, broker, workdir)
        finally:
            ha.proc.stop(timeout=30)
    finally:
        broker.proc.stop()


# --- processes -------------------------------------------------------------------------


def start_ready(name: str, argv: list[str], workdir: Path, timeout: float = 20) -> servers.Proc:
    """Start a gridtap command that prints ``ready ...`` and wait for that line."""
    proc = servers.spawn(name, argv, workdir, env=servers.gridtap_env(), stdout_pipe=True)
    assert proc.popen.stdout is not None
    fd = proc.popen.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""

    def ready() -> bool:
        nonlocal buf
        with contextlib.suppress(BlockingIOError, TypeError):
            buf += os.read(fd, 4096)
        return any(line.startswith("ready") for line in buf.decode(errors="replace").splitlines())

    try:
        servers.wait_until(ready, timeout, f"`ready` from {name}", proc)
    except BaseException:
        proc.stop()
        raise
    servers._drain_to_log(proc)
    return proc


@dataclass
class Process:
    """One ``gridtap run <plugin> --output mqtt`` and the simulators it reads."""

    name: str
    run_args: list[str]
    workdir: Path
    broker_port: int
    start_sims: Callable[[], list[servers.Proc]]
    sims: list[servers.Proc] = field(default_factory=list)
    proc: servers.Proc | None = None
    sims_after: bool = False  # the simulators connect to gridtap (a proxy), so they start after it
    #: Take the device away and bring it back (default: stop the simulators, start them again).
    outage: Callable[[Process], Callable[[], None]] | None = None

    def start(self) -> None:
        if self.sims_after:  # devices that dial a proxy give up when it goes: they start anew with it
            self.stop_sims()
        if not self.sims and not self.sims_after:
            self.sims = self.start_sims()
        env = {**servers.gridtap_env(), "GRIDTAP_MQTT_KEEPALIVE": str(KEEPALIVE),
               "GRIDTAP_STATE_DIR": str(self.workdir / "state")}
        argv = [servers.gridtap_bin(), *self.run_args, "--name", self.name, "--output", "mqtt",
                "--mqtt", f"127.0.0.1:{self.broker_port}", "--log-level", "debug"]
        self.proc = servers.spawn(f"run-{self.name}", argv, self.workdir, env=env)
        if not self.sims and self.sims_after:
            self.sims = self.start_sims()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10, sig=sig)

    def stop_sims(self) -> None:
        for s in self.sims:
            s.stop()
        self.sims = []

    def close(self) -> None:
        self.stop(signal.SIGKILL)
        self.stop_sims()

    def device_away(self) -> Callable[[], None]:
        """Make the device unreachable; returns what brings it back."""
        if self.outage is not None:
            return self.outage(self)
        self.stop_sims()

        def back() -> None:
            self.sims = self.start_sims()

        return back


def intergas_process(name: str, workdir: Path, broker_port: int) -> Process:
    """The intergas simulator replaying one fixed moment, so HA's values can be compared exactly."""
    from gridtap_plugins.intergas import simulator

    replay = workdir / "replay"
    replay.mkdir(parents=True, exist_ok=True)
    model = simulator.BoilerModel(start=0.0)
    for kind in INTERGAS_BLOCKS:
        (replay / f"{INTERGAS_FILE[kind]}_fixed.hex").write_text(model.block(kind, now=0.0).hex(" ") + "\n")
    port = servers.free_port()

    def sims() -> list[servers.Proc]:
        return [start_ready(f"sim-{name}", [servers.gridtap_bin(), "simulate", "intergas", "--tcp",
                                            f"127.0.0.1:{port}", "--replay", str(replay)], workdir)]

    return Process(name, ["run", "intergas", "--port", f"socket://127.0.0.1:{port}", "--interval", "2s"],
                   workdir, broker_port, sims)


def goodwe_process(name: str, workdir: Path, broker_port: int) -> Process:
    """A proxy (no cloud) with a meter, a DNS inverter and an ET hybrid uploading every 2 s."""
    port = servers.free_port()
    tag = f"{sum(map(ord, name)) % 10**8:08d}"

    def sims() -> list[servers.Proc]:
        servers.wait_until(lambda: not servers.port_is_free(port), 20, f"the goodwe proxy {name} listening")
        out = []
        for kind, prefix in (("meter", "91000HKU"), ("inverter", "53000DSC"), ("et", "9010KETU")):
            out.append(servers.spawn(f"sim-{name}-{kind}", [
                servers.gridtap_bin(), "simulate", "goodwe", "--connect", f"127.0.0.1:{port}", "--kind", kind,
                "--serial", prefix + tag, "--interval", "2s"], workdir, env=servers.gridtap_env()))
        return out

    return Process(name, ["run", "goodwe", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                          "--forward", "false", "--stale-after", "5s", "--interval", "1s"],
                   workdir, broker_port, sims, sims_after=True)


def growatt_process(name: str, workdir: Path, broker_port: int) -> Process:
    """The Growatt OpenAPI simulator (one plant: MIN, SPH with battery, classic inverter, logger) with
    1-second rate windows, its plant where it is midday so the sun shines."""
    import datetime as dt

    from gridtap_plugins.growatt import simulator as gsim

    port = servers.free_port()
    tz = max(-12, min(14, 12 - dt.datetime.now(dt.UTC).hour))

    def sims() -> list[servers.Proc]:
        return [start_ready(f"sim-{name}", [servers.gridtap_bin(), "simulate", "growatt", "--listen",
                                            f"127.0.0.1:{port}", "--window", "1s", "--timezone", str(tz)], workdir)]

    return Process(name, ["run", "growatt", "--token", gsim.DEFAULT_TOKEN, "--base-url", f"http://127.0.0.1:{port}/v1/",
                          "--cache-dir", str(workdir / "cache"), "--rate-window", "1s", "--call-spacing", "50ms",
                          "--stale-after", "4s", "--interval", "2s"], workdir, broker_port, sims)


def powerwall_process(name: str, workdir: Path, broker_port: int) -> Process:
    """The Powerwall gateway simulator (firmware 23.28) over HTTPS on loopback; it goes away as a
    gateway does, off its network for a while (the control endpoint's ``drop``): a restarted
    simulator would have a new certificate, which gridtap rightly refuses."""
    port, control = servers.free_port(), servers.free_port()

    def sims() -> list[servers.Proc]:
        return [start_ready(f"sim-{name}", [servers.gridtap_bin(), "simulate", "powerwall", "--tcp",
                                            f"127.0.0.1:{port}", "--firmware", "23.28", "--password", "pw",
                                            "--control", f"127.0.0.1:{control}"], workdir)]

    def outage(_p: Process) -> Callable[[], None]:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{control}/control", data=json.dumps({"drop": 12}).encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        return lambda: None  # it comes back by itself

    return Process(name, ["run", "powerwall", "--gateway-address", f"127.0.0.1:{port}", "--login-password", "pw",
                          "--token-file", "none", "--interval", "2s"], workdir, broker_port, sims, outage=outage)


def isg_process(name: str, workdir: Path, broker_port: int) -> Process:
    """The ISG simulator's WPM heat pump, read over Modbus TCP."""
    port = servers.free_port()

    def sims() -> list[servers.Proc]:
        return [start_ready(f"sim-{name}", [servers.gridtap_bin(), "simulate", "isg", "--web", "127.0.0.1:0",
                                            "--modbus", f"127.0.0.1:{port}"], workdir)]

    return Process(name, ["run", "isg", "--mode", "modbus", "--host", "127.0.0.1", "--modbus-port", str(port),
                          "--interval", "2s"], workdir, broker_port, sims)


@dataclass(frozen=True)
class Case:
    """What one plugin must look like in Home Assistant (per process)."""

    make: Callable[[str, Path, int], Process]
    #: HA devices: name -> (manufacturer, model or None, via device name or None); the configured
    #: device is called "<process name>".
    devices: dict[str, tuple[str, str | None, str | None]]
    domains: dict[str, int]
    #: "<device> <entity name>" of the enabled, non-diagnostic entities (None: not held to a list yet)
    dashboard: set[str] | None
    units: dict[str, str]  # entity name -> unit shown
    device_classes: dict[str, str]
    energy: list[tuple[str, str, str]]  # (source type, field, "<device> <entity name>")
    #: Entity names whose shown value is checked against the model: name -> (state key, factor).
    values: dict[str, tuple[str, float]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # entity name -> state shown (enum sensors)
    binary_uids: str = ""  # unique ids matching this regex must be binary sensors
    settle: float = 20.0
    #: The second process on the broker: another of this plugin (None), or of the plugin named
    #: here when the simulator cannot be told to be a different device (same serials).
    partner: str | None = None
    #: Checks this plugin does not pass yet, each with why (reported, to be fixed in the plugin).
    known_issues: dict[str, str] = field(default_factory=dict)
    #: "<device> <entity name>" of energy entities outside ``energy`` that must have long-term sums.
    sums: list[str] = field(default_factory=list)


CASES: dict[str, Case] = {
    "intergas": Case(
        make=intergas_process,
        devices={"{name}": ("Intergas", None, None)},
        domains={"sensor": 67, "binary_sensor": 23},
        dashboard={f"{{name}} {n}" for n in (
            "Flow temperature", "Return temperature", "Hot water temperature", "Flow setpoint", "Water pressure",
            "Status", "Fault", "Flame", "Pump", "Hot water flow", "Room temperature", "Room setpoint",
            "Burner modulation", "Gas used for heating", "Gas used for hot water", "Hot water used")},
        units={"Water pressure": "bar", "Fan speed": "rpm", "Ionisation current": "µA", "Heating hours": "h",
               "Gas used for heating": "m³", "Hot water used": "L", "Hot water flow": "L/min",
               "Burner modulation": "%", "Flow temperature": "°C", "Maximum flow temperature (setting)": "°C"},
        device_classes={"Water pressure": "pressure", "Gas used for heating": "gas", "Hot water used": "water",
                        "Fault": "problem", "Pump": "running", "Status": "enum", "Connected": "connectivity",
                        "Heating hours": "duration"},
        energy=[("gas", "stat_energy_from", "{name} Gas used for heating"),
                ("gas", "stat_energy_from", "{name} Gas used for hot water"),
                ("water", "stat_energy_from", "{name} Hot water used")],
        values={"Water pressure": ("water_pressure_pascals", 1e-5), "Fan speed": ("fan_speed_hertz_measured", 60),
                "Ionisation current": ("ionization_current_amperes", 1e6),
                "Heating hours": ("operating_time_seconds_total_ch_function", 1 / 3600),
                "Flow temperature": ("temperature_celsius_flow", 1),
                "Gas used for heating": ("gas_consumed_cubic_meters_total_heating", 1),
                "Hot water used": ("hot_water_cubic_meters_total", 1000)},
        texts={"Status": "Heating (OpenTherm)", "Fault": "off", "Pump": "on"},
        binary_uids=r"_flag_|_fault_active$|_block_ok_|_up$",
    ),
    "goodwe": Case(
        make=goodwe_process,
        devices={"{name}": ("gridtap", "gridtap goodwe", None),
                 "HomeKit 1000 Smart Meter": ("Goodwe", "HomeKit 1000 Smart Meter", "{name}"),
                 "Inverter GW10KN-ET": ("Goodwe", "GW10KN-ET", "{name}"),
                 "Inverter GW3000-DNS-30": ("Goodwe", "GW3000-DNS-30", "{name}"),
                 "Inverter GW10KN-ET battery": ("Goodwe", None, "Inverter GW10KN-ET")},
        # 9 packet types are seen without a cloud (no-forward mode answers the devices itself)
        domains={"sensor": 89, "binary_sensor": 1},
        dashboard={f"{d} {n}" for d, names in (
            ("HomeKit 1000 Smart Meter", ("Energy exported", "Energy generated", "Energy imported",
                                          "Grid export power", "Generation power")),
            ("Inverter GW10KN-ET", ("Energy produced", "Energy today", "House load", "Output power",
                                    "Grid energy exported", "Grid energy imported", "House energy used")),
            ("Inverter GW3000-DNS-30", ("Energy produced", "Energy today", "Output power")),
            ("Inverter GW10KN-ET battery", ("Power", "State of charge", "Energy charged", "Energy discharged")))
            for n in names},
        units={"Energy imported": "kWh", "Energy today": "kWh", "Output power": "W", "State of charge": "%",
               "Operating time": "h", "Wi-Fi signal": "%", "PV1 voltage": "V"},
        device_classes={"Energy imported": "energy", "Energy today": "energy", "State of charge": "battery",
                        "Output power": "power", "Connected": "connectivity"},
        energy=[("grid", "flow_from", "HomeKit 1000 Smart Meter Energy imported"),
                ("grid", "flow_to", "HomeKit 1000 Smart Meter Energy exported"),
                ("solar", "stat_energy_from", "Inverter GW10KN-ET Energy produced"),
                ("solar", "stat_energy_from", "Inverter GW3000-DNS-30 Energy produced")],
        binary_uids=r"_up$",
        settle=40.0,
    ),
    "growatt": Case(
        make=growatt_process,
        # A plant and three inverters behind the account, the SPH's battery via the SPH; the classic
        # inverter reports a model code (A0B0D0T0PFU1M3S4), which is its model but never its name.
        devices={"{name}": ("gridtap", "gridtap growatt", None),
                 "Simulated plant": ("Growatt", None, "{name}"),
                 "Inverter MIN 5000TL-X": ("Growatt", "MIN 5000TL-X", "{name}"),
                 "Inverter SPH 3000": ("Growatt", "SPH 3000", "{name}"),
                 "Inverter SPH 3000 battery": ("Growatt", None, "Inverter SPH 3000"),
                 "Inverter": ("Growatt", "A0B0D0T0PFU1M3S4", "{name}")},
        domains={"sensor": 126, "binary_sensor": 8},
        # plugins/growatt/README.md "Home Assistant" says why each of these 39 is there
        dashboard={f"{d} {n}" for d, names in (
            ("Inverter MIN 5000TL-X", ("Output power", "PV power", "PV1 power", "PV2 power", "Energy today",
                                       "Energy produced", "PV energy", "Status", "Fault")),
            ("Inverter SPH 3000", ("Output power", "PV power", "PV1 power", "Energy today", "PV energy today",
                                   "Energy produced", "PV energy", "Status", "Fault", "Grid import power",
                                   "Grid export power", "Grid energy imported", "Grid energy exported", "House load",
                                   "House energy used")),
            ("Inverter SPH 3000 battery", ("State of charge", "Charging power", "Discharging power", "Energy charged",
                                           "Energy discharged")),
            ("Inverter", ("Output power", "PV power", "PV1 power", "Energy today", "Energy produced", "PV energy",
                          "Status", "Fault")),
            ("Simulated plant", ("Power", "Energy today")))
            for n in names},
        units={"Output power": "W", "Energy today": "kWh", "Grid voltage L1": "V", "Energy charged": "kWh",
               "State of charge": "%", "Temperature": "°C", "Data age": "min", "API back-off": "min",
               "Installed power": "kW"},
        # (names every entity of which is enabled: a disabled one has no state to look at)
        device_classes={"Output power": "power", "PV energy": "energy", "Connected": "connectivity",
                        "Fault": "problem", "Data stale": "problem", "Status": "enum", "State of charge": "battery",
                        "Last upload": "timestamp"},
        energy=[("grid", "flow_from", "Inverter SPH 3000 Grid energy imported"),
                ("grid", "flow_to", "Inverter SPH 3000 Grid energy exported"),
                ("solar", "stat_energy_from", "Inverter MIN 5000TL-X Energy produced"),
                ("solar", "stat_energy_from", "Inverter SPH 3000 PV energy"),
                ("solar", "stat_energy_from", "Inverter Energy produced")],
        values={"Plant list calls today": ("api_daily_calls_plant_list", 1)},
        texts={"Fault": "off"},
        binary_uids=r"_up$|_fault_active$|_reading_stale_|_api_disabled_",
        settle=40.0,
        partner="intergas",  # the simulator has one plant: a second one would be the same devices
    ),
    "powerwall": Case(
        make=powerwall_process,
        # the gateway, and each battery block and meter with a serial behind it (subdevice_labels)
        devices={"{name}": ("Tesla", "Backup Gateway 2", None),
                 "Battery 1": ("Tesla", "Powerwall", "{name}"),
                 "Battery 2": ("Tesla", "Powerwall", "{name}"),
                 "Grid meter": ("Tesla", "Synchrometer X", "{name}")},
        domains={"sensor": 80, "binary_sensor": 33},
        # plugins/powerwall/README.md, "Home Assistant", says why each is there
        dashboard={*(f"{{name}} {n}" for n in (
            "Grid power", "Home power", "Solar power", "Battery power", "Battery charge", "Backup reserve",
            "Battery stored energy", "Grid", "Grid import", "Grid export", "Solar production", "Home consumption",
            "Battery energy in", "Battery energy out")),
            *(f"Battery {i} {n}" for i in (1, 2) for n in ("Stored energy", "Energy charged", "Energy discharged"))},
        units={"Battery charge": "%", "Grid import": "kWh", "Solar production": "kWh", "Grid power": "W",
               "Battery stored energy": "kWh", "Uptime": "h", "Grid voltage": "V"},
        device_classes={"Battery charge": "battery", "Grid import": "energy", "Connected": "connectivity",
                        "Grid": "connectivity", "Battery stored energy": "energy_storage", "Ethernet": "connectivity"},
        energy=[("grid", "flow_from", "{name} Grid import"), ("grid", "flow_to", "{name} Grid export"),
                ("solar", "stat_energy_from", "{name} Solar production"),
                ("battery", "stat_energy_to", "{name} Battery energy in"),
                ("battery", "stat_energy_from", "{name} Battery energy out")],
        texts={"Grid": "on", "Operation mode": "Self-Powered"},
        binary_uids=r"_up$|_grid_connected$|_battery_off_grid$|_network_active_",
        partner="intergas",  # the simulator's gateway serial is fixed: a second one would be the same gateway
    ),
    "isg": Case(
        make=isg_process,
        devices={"{name}": ("Stiebel Eltron", "WPM 3", None)},
        domains={"sensor": 54, "binary_sensor": 48},
        # plugins/isg/README.md, "Home Assistant", says why each is there
        dashboard={f"{{name}} {n}" for n in (
            "Outside temperature", "Flow temperature", "Return temperature", "Heating circuit 1 temperature",
            "Heating circuit 2 temperature", "Hot water temperature", "Hot water set temperature",
            "Room temperature (circuit 1)", "Room humidity (circuit 1)", "Heating pressure", "Operating mode",
            "Fault", "Compressor", "Heating", "Hot water heating", "Defrost", "Electric booster", "SG Ready state",
            "Inverter 1 power", "Heat produced today for heating", "Heat produced today for hot water",
            "Electricity used today for heating", "Electricity used today for hot water")},
        units={"Flow temperature": "°C", "Heating pressure": "bar", "Heating flow rate": "L/min",
               "Electricity used today for heating": "kWh", "Room humidity (circuit 1)": "%",
               "Heat pump 1 compressor 1 runtime for heating": "h", "Inverter 1 power": "W"},
        device_classes={"Flow temperature": "temperature", "Fault": "problem", "Compressor": "running",
                        "Operating mode": "enum", "SG Ready state": "enum", "Connected": "connectivity",
                        "Room humidity (circuit 1)": "humidity",
                        "Electricity used today for heating": "energy", "Heating pressure": "pressure"},
        # the day counters: the totals lag up to a day (README); heat has long-term sums too
        energy=[("device", "stat_consumption", "{name} Electricity used today for heating"),
                ("device", "stat_consumption", "{name} Electricity used today for hot water")],
        sums=["{name} Heat produced today for heating", "{name} Heat produced today for hot water",
              "{name} Heat produced for heating", "{name} Electricity used for heating"],
        values={"Heating pressure": ("heating_pressure_pascals", 1e-5)},
        texts={"Operating mode": "Automatic", "SG Ready state": "Normal", "Fault": "off"},
        binary_uids=r"_up$|_status_flag_|_fault$|_defrost$|_sgready_input_",
    ),
}


def battery_energy_metrics(plugin: str) -> list[str]:
    """Battery charge/discharge counters a plugin defines (they let a battery join the Energy dashboard)."""
    from gridtap import plugin as plugins

    return [d.name for d in plugins.load(plugin).metrics
            if "battery" in d.name and "charge" in d.name and d.name.endswith("_joules_total")]


# --- reading Home Assistant ------------------------------------------------------------


@dataclass
class Seen:
    """What HA has of one process: registry entries and devices (by name), states by entity id."""

    entities: list[dict[str, Any]]
    devices: dict[str, dict[str, Any]]  # device id -> device
    states: dict[str, dict[str, Any]]

    def device_name(self, entity: dict[str, Any]) -> str:
        return self.devices[entity["device_id"]]["name"]

    def label(self, entity: dict[str, Any]) -> str:
        return f"{self.device_name(entity)} {entity['original_name']}"

    def by_label(self) -> dict[str, dict[str, Any]]:
        return {self.label(e): e for e in self.entities}

    def enabled(self) -> list[dict[str, Any]]:
        return [e for e in self.entities if e["disabled_by"] is None]


def seen(ha: H.HomeAssistant, process: Process) -> Seen:
    """The registry entries of the devices of ``process`` (its configured device and those via it)."""
    entities, devices = ha.registries()
    by_id = {d["id"]: d for d in devices}
    root = [d for d in devices if ["mqtt", f"gridtap_{process.run_args[1]}_{process.name.replace('-', '_')}"]
            in d["identifiers"]]
    ours: dict[str, dict[str, Any]] = {}
    frontier = [d["id"] for d in root]
    while frontier:
        current = frontier.pop()
        ours[current] = by_id[current]
        frontier += [d["id"] for d in devices if d["via_device_id"] == current and d["id"] not in ours]
    mine = [e for e in entities if e["device_id"] in ours and e["platform"] == "mqtt"]
    return Seen(mine, ours, ha.states())


def wait_settled(ha: H.HomeAssistant, process: Process, expected_total: int, timeout: float) -> Seen:
    """Wait until HA has ``expected_total`` entities of ``process``, every enabled one with a value,
    and the set has stopped growing (a proxy learns packet types as they come)."""
    last: list[int] = [-1]

    def check() -> Seen | None:
        s = seen(ha, process)
        enabled = s.enabled()
        n, previous = len(s.entities), last[0]
        last[0] = n
        def shown(e: dict[str, Any]) -> str:
            return s.states.get(e["entity_id"], {}).get("state", "unavailable")

        # Measurements have values; a diagnostic may say "unknown" (a back-off that is not running).
        if n >= expected_total and n == previous and enabled and all(
                shown(e) != "unavailable" and (e["entity_category"] or shown(e) != "unknown") for e in enabled):
            return s
        return None

    try:
        return servers.wait_until(check, timeout, f"{expected_total} entities of {process.name} in Home Assistant",
                                  interval=2.0)
    except servers.ServerError:
        s = seen(ha, process)
        unknown = [e["entity_id"] for e in s.enabled() if s.states.get(e["entity_id"], {}).get("state") == "unknown"]
        raise AssertionError(f"{process.name}: {len(s.entities)} entities, unavailable: {unavailable(s)[:20]}, "
                             f"unknown: {unknown[:20]}"
                             f"\n--- run log ---\n{process.proc.log() if process.proc else ''}") from None


def unavailable(s: Seen, which: Callable[[dict[str, Any]], bool] = lambda e: True) -> list[str]:
    return [e["entity_id"] for e in s.enabled() if which(e)
            and s.states.get(e["entity_id"], {}).get("state", "unavailable") == "unavailable"]


def retained_configs(broker_port: int) -> dict[str, dict[str, Any]]:
    """Every retained gridtap discovery config on the broker, by unique id."""
    sub = Sub(broker_port, ["homeassistant/+/+/config"])
    try:
        time.sleep(1.0)
        out = {}
        for _t, payload, retain in sub.snapshot():
            if retain and payload:
                cfg = json.loads(payload)
                if cfg.get("o", {}).get("name") == "gridtap":
                    out[cfg["unique_id"]] = cfg
        return out
    finally:
        sub.close()


def last_state(broker_port: int, topic: str) -> dict[str, Any]:
    sub = Sub(broker_port, [topic])
    try:
        raw = sub.wait(f"a state on {topic}", lambda _m: sub.last(topic), timeout=15)
        return json.loads(raw)
    finally:
        sub.close()


# --- the per-plugin test ---------------------------------------------------------------


@pytest.mark.parametrize("plugin", list(CASES))
def test_plugin_in_home_assistant(rig: Rig, plugin: str, tmp_path: Path) -> None:
    case = CASES[plugin]
    ha = rig.ha
    t0 = time.monotonic()
    a = case.make(f"{plugin}-a", tmp_path / "a", rig.broker.port)
    other = CASES[case.partner] if case.partner else case
    b = other.make(f"{case.partner or plugin}-b", tmp_path / "b", rig.broker.port)
    try:
        for p in (a, b):
            p.start()
        total = sum(case.domains.values())
        sa = wait_settled(ha, a, total, 60 + case.settle)
        sb = wait_settled(ha, b, sum(other.domains.values()), 30 + other.settle)

        # --- entities, domains, names ---------------------------------------------------
        pairs = ((sa, a), (sb, b)) if case.partner is None else ((sa, a),)
        for s, p in pairs:
            domains: dict[str, int] = {}
            for e in s.entities:
                domains[e["entity_id"].split(".")[0]] = domains.get(e["entity_id"].split(".")[0], 0) + 1
            assert domains == case.domains, (p.name, domains)
        labels = sa.by_label()
        dashboard = {lbl for lbl, e in labels.items() if e["disabled_by"] is None and e["entity_category"] is None}
        if case.dashboard is not None:
            assert dashboard == {d.format(name=a.name) for d in case.dashboard}
        print(f"\n{plugin}: {sum(case.domains.values())} entities, {len(dashboard)} on the dashboard")
        for e in sa.entities:
            if "serials in names" not in case.known_issues:
                assert not re.search(r"\d{6,}|[A-Z0-9]{8}\d{4}", e["original_name"]), e["original_name"]  # no serials
            assert e["has_entity_name"]
            if case.binary_uids and re.search(case.binary_uids, e["unique_id"]):
                assert e["entity_id"].startswith("binary_sensor."), e["entity_id"]
        assert len({e["entity_id"] for e in sa.entities + sb.entities}) == total + sum(other.domains.values())

        # --- units, device classes, values, precision -----------------------------------
        configs = retained_configs(rig.broker.port)
        by_name: dict[str, dict[str, Any]] = {}
        for e in sa.entities:
            by_name.setdefault(e["original_name"], e)
            st = sa.states.get(e["entity_id"])
            cfg = configs[e["unique_id"]]
            # Home Assistant took the id we asked for (2025.10+ reads default_entity_id; older
            # releases make the same one from the device and entity names).
            if not re.search(r"_\d+$", e["entity_id"]):
                assert e["entity_id"] == cfg["default_entity_id"], (e["entity_id"], cfg["default_entity_id"])
            if st is None:
                continue
            value = st["state"]
            if re.fullmatch(r"-?\d+\.\d+", value):
                assert len(value.split(".")[1]) <= max(1, cfg.get("suggested_display_precision", 0)), (e, value)
            assert "e-" not in value and "e+" not in value, (e["entity_id"], value)
        for name, unit in case.units.items():
            st = sa.states[by_name[name]["entity_id"]]
            assert st["attributes"].get("unit_of_measurement") == unit, (name, st)
        for name, device_class in case.device_classes.items():
            st = sa.states[by_name[name]["entity_id"]]
            assert st["attributes"].get("device_class") == device_class, (name, st)
        for name, text in case.texts.items():
            st = sa.states[by_name[name]["entity_id"]]
            assert st["state"] == text, (name, st)
            if st["attributes"].get("device_class") == "enum":
                assert text in st["attributes"]["options"], st
        if case.values:
            state = last_state(rig.broker.port, f"gridtap/{plugin}/{a.name}/state")
            for name, (key, factor) in case.values.items():
                cfg = configs[by_name[name]["unique_id"]]
                shown = float(sa.states[by_name[name]["entity_id"]]["state"])
                expected = round(state[key] * factor, cfg["suggested_display_precision"])
                assert shown == pytest.approx(expected, abs=1e-9), (name, shown, expected)

        # --- one HA device per physical device ------------------------------------------
        for s, p in pairs:
            names = {d["name"]: d for d in s.devices.values()}
            expected_names = {n.format(name=p.name) for n in case.devices}
            assert set(names) == expected_names, (p.name, sorted(names))
            for n, (manufacturer, model, via) in case.devices.items():
                d = names[n.format(name=p.name)]
                assert d["manufacturer"] == manufacturer, d
                assert d["model"] == model, d
                parent = names[via.format(name=p.name)]["id"] if via else None
                assert d["via_device_id"] == parent, (n, d)
                if via == "{name}" and model is not None:  # a physical device with a model has a serial
                    assert d["serial_number"] and d["serial_number"] not in d["name"], d
        serials = [d["serial_number"] for s in (sa, sb) for d in s.devices.values() if d["serial_number"]]
        assert len(serials) == len(set(serials))

        # --- the Energy dashboard -------------------------------------------------------
        labels = sa.by_label()
        sources: dict[str, dict[str, Any]] = {}
        energy = [(t, f, lbl.format(name=a.name)) for t, f, lbl in case.energy]
        battery = battery_energy_metrics(plugin)
        if battery:  # the plugin reports battery energy: it must be offered to the dashboard
            for e in sa.entities:
                if any(e["unique_id"].endswith(m.removeprefix(f"{plugin}_")) for m in battery):
                    field_name = "stat_energy_to" if "discharge" not in e["unique_id"] else "stat_energy_from"
                    energy.append(("battery", field_name, sa.label(e)))
            assert any(t == "battery" for t, _f, _l in energy), battery
        energy_sources: list[dict[str, Any]] = []
        consumption: list[dict[str, Any]] = []
        for kind, field_name, lbl in energy:
            entity_id = labels[lbl]["entity_id"]
            if kind == "grid":
                grid = sources.setdefault("grid", {"type": "grid", "flow_from": [], "flow_to": [],
                                                   "cost_adjustment_day": 0})
                if field_name == "flow_from":
                    grid["flow_from"].append({"stat_energy_from": entity_id, "stat_cost": None,
                                              "entity_energy_price": None, "number_energy_price": None})
                else:
                    grid["flow_to"].append({"stat_energy_to": entity_id, "stat_compensation": None,
                                            "entity_energy_price": None, "number_energy_price": None})
            elif kind == "battery":
                bat = sources.setdefault("battery", {"type": "battery"})
                bat[field_name] = entity_id
            elif kind == "device":
                consumption.append({"stat_consumption": entity_id})
            elif kind == "solar":
                energy_sources.append({"type": "solar", "stat_energy_from": entity_id,
                                       "config_entry_solar_forecast": None})
            else:
                energy_sources.append({"type": kind, "stat_energy_from": entity_id, "stat_cost": None,
                                       "entity_energy_price": None, "number_energy_price": None})
        energy_sources += list(sources.values())
        _saved, report, ids = ha.ws({"type": "energy/save_prefs", "energy_sources": energy_sources,
                                     "device_consumption": consumption},
                                    {"type": "energy/validate"},
                                    {"type": "recorder/list_statistic_ids", "statistic_type": "sum"})
        problems = [issue for group in report["energy_sources"] + report["device_consumption"] for issue in group
                    if issue["type"] != "statistics_not_defined"]  # statistics come at the recorder's 5-min tick
        assert problems == [], problems
        summed = {i["statistic_id"]: i for i in ids}
        for lbl in [lbl for _kind, _field, lbl in energy] + [lbl.format(name=a.name) for lbl in case.sums]:
            assert labels[lbl]["entity_id"] in summed, lbl  # Home Assistant keeps long-term sums of it
        print(f"{plugin}: energy sources accepted: {[s['type'] for s in energy_sources]}"
              f"{f', {len(consumption)} devices' if consumption else ''}")

        # --- availability per process ---------------------------------------------------
        def still_available(s_proc: Process, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                assert unavailable(seen(ha, s_proc)) == [], f"{s_proc.name} went unavailable"
                time.sleep(0.5)

        a.stop(signal.SIGTERM)
        servers.wait_until(lambda: len(unavailable(seen(ha, a))) == len(sa.enabled()), 20,
                           f"every entity of {a.name} unavailable after SIGTERM")
        still_available(b, 3)
        a.start()
        wait_settled(ha, a, total, 30 + case.settle)
        b.stop(signal.SIGKILL)
        servers.wait_until(lambda: len(unavailable(seen(ha, b))) == len(sb.enabled()), 3 * KEEPALIVE + 10,
                           f"every entity of {b.name} unavailable after SIGKILL (Last Will)")
        still_available(a, 2)

        # --- the device goes away and comes back ----------------------------------------
        back = a.device_away()

        def down() -> bool:
            s = seen(ha, a)
            measurements = unavailable(s, lambda e: e["entity_category"] is None)
            connected = [e for e in s.entities if e["unique_id"].endswith("_up")]
            return (len(measurements) == len([e for e in s.enabled() if e["entity_category"] is None])
                    and s.states[connected[0]["entity_id"]]["state"] == "off"
                    and unavailable(s, lambda e: e["entity_category"] == "diagnostic"
                                    and e["unique_id"].endswith(("_up", "_last_success_timestamp_seconds"))) == [])

        servers.wait_until(down, 30, f"{a.name}'s measurements unavailable, 'Connected' off, diagnostics kept")
        back()
        wait_settled(ha, a, total, 30 + case.settle)
        print(f"{plugin}: Home Assistant checks took {time.monotonic() - t0:.0f} s")
    finally:
        for p in (a, b):
            p.close()


# --- device-blind checks, on intergas --------------------------------------------------


def test_renamed_device_leaves_no_entities_behind(rig: Rig, tmp_path: Path) -> None:
    ha = rig.ha
    old = intergas_process("attic", tmp_path, rig.broker.port)
    total = sum(CASES["intergas"].domains.values())
    try:
        old.start()
        s = wait_settled(ha, old, total, 60)
        device_ids = set(s.devices)
        old.stop()
        renamed = Process("loft", old.run_args, tmp_path, rig.broker.port, old.start_sims, old.sims)
        renamed.start()  # same invocation (same flags, same state folder): it knows "attic" was its own
        wait_settled(ha, renamed, total, 60)

        def attic_gone() -> bool:
            _entities, devices = ha.registries()
            return not any(d["id"] in device_ids for d in devices)

        servers.wait_until(attic_gone, 20, "the old device 'attic' removed from Home Assistant")
        assert not any("_attic_" in uid for uid in retained_configs(rig.broker.port))
        renamed.stop()
    finally:
        old.close()


def test_once_run_leaves_no_ghost(rig: Rig, tmp_path: Path) -> None:
    ha = rig.ha
    once = intergas_process("cron-boiler", tmp_path, rig.broker.port)
    once.sims = once.start_sims()
    try:
        env = {**servers.gridtap_env(), "GRIDTAP_STATE_DIR": str(tmp_path / "state")}
        argv = [servers.gridtap_bin(), *once.run_args[:-2], "--interval", "3s", "--name", once.name, "--once",
                "--output", "mqtt", "--mqtt", f"127.0.0.1:{rig.broker.port}"]
        res = servers.spawn("once", argv, tmp_path, env=env)
        assert res.popen.wait(60) == 0, res.log()
        def registered() -> Seen | None:
            # HA registers discovered entities one message at a time: wait for the one checked
            # below, not just for the first few (CI once caught the registry half-filled).
            s = seen(ha, once)
            names = {e["original_name"] for e in s.entities}
            return s if "Water pressure" in names and not unavailable(s) else None

        s = servers.wait_until(registered, 20, "the once-run's entities available in Home Assistant")
        pressure = next(e for e in s.entities if e["original_name"] == "Water pressure")
        assert re.fullmatch(r"\d\.\d{1,2}", s.states[pressure["entity_id"]]["state"])
        # expire_after = 3 intervals: unavailable by then; the broker has forgotten the configs
        servers.wait_until(lambda: (lambda now: len(unavailable(now)) == len(now.enabled()) > 0)(seen(ha, once)),
                           20, "the once-run's entities expired")
        assert not any("_cron_boiler_" in uid for uid in retained_configs(rig.broker.port))
    finally:
        once.close()
