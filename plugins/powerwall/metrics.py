"""Powerwall metric definitions and the mapping from the gateway's JSON documents to samples.

No I/O. Each ``*_metrics`` function takes one decoded endpoint document (what ``json.loads``
gave) and returns samples; a field that is absent gives no sample (never a made-up 0), a field
of the wrong type is a :class:`DocumentError` naming it. Units are converted here, once:
Wh x 3600 -> joules, percent / 100 -> ratio, Go duration strings -> seconds. Values are
float64 throughout (the seed exporter decoded into float32 and drifted by ~1e-7).

Names keep the seed exporter's (foogod/powerwall_exporter) where they already follow the
Prometheus conventions; README.md maps every other one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gridtap.model import Display, DisplayByLabel, Kind, Metric, MetricDef

P = "powerwall_"
WH = 3600.0  # joules per watt-hour

#: Categories of /api/meters/aggregates, as a person reads them.
CATEGORY_WORDS = {"category": {"site": "grid", "battery": "battery", "load": "home", "solar": "solar",
                               "busway": "busway", "frequency": "frequency", "generator": "generator"}}
#: The Tesla app's names of the operation modes (what Home Assistant shows).
MODE_WORDS = {"mode": {"self_consumption": "Self-Powered", "autonomous": "Time-Based Control",
                       "backup": "Backup Only", "scheduler": "Scheduler"}}


class DocumentError(ValueError):
    """An endpoint document that does not have the shape the gateway gives (names the field)."""


# --------------------------------------------------------------------------------- definitions
def _gauge(name: str, help_: str, unit: str = "", labels: tuple[str, ...] = (), integer: bool = False,
           display: Any = None) -> MetricDef:
    return MetricDef(P + name, help_, Kind.GAUGE, unit, integer, (), labels, display)


def _counter(name: str, help_: str, unit: str = "", labels: tuple[str, ...] = (), integer: bool = False,
             display: Any = None) -> MetricDef:
    return MetricDef(P + name, help_, Kind.COUNTER, unit, integer, (), labels, display)


def _diag(name: str, **kw: Any) -> Display:
    return Display(name=name, diagnostic=True, **kw)


def _rare(name: str, **kw: Any) -> Display:
    """Internals few people want: a diagnostic, disabled until someone enables it."""
    return Display(name=name, diagnostic=True, enabled=False, **kw)


# Home Assistant (README "Home Assistant"): the gateway is one device (manufacturer Tesla, its model
# and serial from /api/status), each battery block and each meter with a serial is a device of its
# own connected via it (plugin.py: ``subdevice_labels = ("serial",)``; the info metrics below name
# them). The gateway's dashboard is what the Tesla app shows: power flows, charge, reserve, grid
# up, and the lifetime energy counters the Energy dashboard takes.
MANUFACTURER = "Tesla"
#: Gateway part numbers (the DIN before "--") as Tesla sells them (pypowerwall's device notes).
GATEWAY_MODELS = {"1118431": "Backup Gateway", "1232100": "Backup Gateway 2"}
#: Meter types of /api/meters/<category> -> (manufacturer, model).
METER_MODELS = {"synchrometerX": (MANUFACTURER, "Synchrometer X"), "synchrometerY": (MANUFACTURER, "Synchrometer Y"),
                "neurio_tcp": ("Neurio", "Neurio meter"), "neurio_w2_tcp": ("Neurio", "Neurio W2")}

INFO = MetricDef(P + "info", "Gateway firmware version and git hash (/api/status); always 1. Labels manufacturer, "
                 "model, serial_number (from the DIN) and firmware (= version) name the Home Assistant device",
                 Kind.INFO, label_names=("version", "git_hash", "manufacturer", "model", "serial_number", "firmware"),
                 display=Display(name="Firmware", diagnostic=True))
UPTIME = _gauge("uptime_seconds", "Time since the gateway last started (/api/status up_time_seconds)", "seconds",
                display=_diag("Uptime", unit="h", precision=1))
COMMISSIONS = _counter("commissions_total", "Configuration commissions of the gateway (commission_count)",
                       integer=True, display=_rare("Commissions"))
CHARGE = _gauge("charge_ratio", "Stored energy of all batteries, raw gateway scale (soe percentage / 100; "
                "the app shows (raw - 5 %) / 0.95)", "ratio",
                display=Display(name="Battery charge (gateway scale)", unit="%", precision=1, diagnostic=True))
APP_CHARGE = _gauge("app_charge_ratio", "Stored energy as the Tesla app shows it: (raw - 5 %) / 0.95, "
                    "clamped to 0..1", "ratio",
                    display=Display(name="Battery charge", unit="%", precision=1, device_class="battery",
                                    state_class="measurement"))
OPERATION_MODE = _gauge("operation_mode", "Operation mode (label mode: self_consumption, autonomous, backup, "
                        "scheduler); always 1", labels=("mode",), integer=True,
                        display=_diag("Operation mode", state_label="mode", words=MODE_WORDS))
RESERVE = _gauge("reserve_ratio", "Backup reserve, raw gateway scale (backup_reserve_percent / 100)", "ratio",
                 display=Display(name="Backup reserve (gateway scale)", unit="%", precision=1, diagnostic=True))
APP_RESERVE = _gauge("app_reserve_ratio", "Backup reserve as the Tesla app shows it: (raw - 5 %) / 0.95, "
                     "clamped to 0..1", "ratio", display=Display(name="Backup reserve", unit="%", precision=0))
SITEMASTER_RUNNING = _gauge("sitemaster_running", "1 while the site controller (sitemaster) runs", integer=True,
                            display=Display(name="Site controller", binary="running", diagnostic=True))
SITEMASTER_CONNECTED = _gauge("sitemaster_connected", "1 while the gateway is connected to Tesla", integer=True,
                              display=Display(name="Connected to Tesla", binary="connectivity", diagnostic=True))
POWER_SUPPLY_MODE = _gauge("power_supply_mode", "1 in power-supply mode", integer=True,
                           display=Display(name="Power supply mode", binary="", diagnostic=True))
SITEMASTER_BUSY = _gauge("sitemaster_busy", "Present (1) while the gateway should not be stopped or rebooted; "
                         "label reason is its can_reboot text (\"\" while stopped)", labels=("reason",),
                         integer=True, display=_rare("Busy: {reason}", binary="running"))
PROBLEMS = _gauge("problems_detected", "Problems the gateway reports (/api/troubleshooting/problems)",
                  integer=True, display=Display(name="Problems", diagnostic=True))
#: What a battery holds is HA's energy_storage, a measurement: a "total" energy sensor would be
#: offered to HA's Energy dashboard as if it were a flow.
_STORED = {"unit": "kWh", "precision": 2, "device_class": "energy_storage", "state_class": "measurement"}
FULL_PACK = _gauge("full_pack_joules", "Usable capacity of all batteries (nominal_full_pack_energy)", "joules",
                   display=Display(name="Battery capacity", diagnostic=True, **_STORED))
REMAINING = _gauge("remaining_joules", "Energy stored in all batteries (nominal_energy_remaining)", "joules",
                   display=Display(name="Battery stored energy", **_STORED))
ISLAND_STATE = _gauge("island_state", "Grid connection state (label state: SystemGridConnected, "
                      "SystemIslandedActive, SystemTransitionToGrid, ...); always 1", labels=("state",),
                      integer=True, display=_rare("Island state", state_label="state"))
GRID_CONNECTED = _gauge("grid_connected", "1 while system_island_state is SystemGridConnected", integer=True,
                        display=Display(name="Grid", binary="connectivity"))
BATTERY_INFO = MetricDef(P + "battery_info", "A battery block: serial, part number, firmware; always 1. Labels "
                         "name (Battery 1, 2, ... in the gateway's order), model and manufacturer name its Home "
                         "Assistant device", Kind.INFO,
                         label_names=("serial", "partno", "version", "name", "model", "manufacturer"),
                         display=Display(hidden=True))
# One battery block is a Home Assistant device of its own ("Battery 1"): names without the serial.
_B = ("serial",)
BATTERY_FULL_PACK = _gauge("battery_full_pack_joules", "Usable capacity of one battery", "joules", _B,
                           display=Display(name="Capacity", diagnostic=True, **_STORED))
BATTERY_REMAINING = _gauge("battery_remaining_joules", "Energy stored in one battery", "joules", _B,
                           display=Display(name="Stored energy", **_STORED))
BATTERY_VOLTS = _gauge("battery_output_volts", "Battery inverter AC voltage (v_out)", "volts", _B,
                       display=_diag("Voltage", unit="V", precision=1))
BATTERY_AMPERES = _gauge("battery_output_amperes", "Battery inverter AC current (i_out; + = discharging)",
                         "amperes", _B, display=_diag("Current", unit="A", precision=1))
BATTERY_HERTZ = _gauge("battery_output_hertz", "Battery inverter AC frequency (f_out)", "hertz", _B,
                       display=_rare("Frequency", unit="Hz", precision=3))
BATTERY_WATTS = _gauge("battery_output_watts", "Battery inverter real power (p_out; + = discharging)", "watts",
                       _B, display=_diag("Power", unit="W", precision=0))
BATTERY_OFF_GRID = _gauge("battery_off_grid", "1 while the battery is off grid", labels=_B, integer=True,
                          display=_diag("Off grid", binary=""))
BATTERY_ISLAND = _gauge("battery_island_state", "1 while the battery runs islanded (vf_mode)", labels=_B,
                        integer=True, display=_diag("Islanded", binary=""))
BATTERY_WOBBLE = _gauge("battery_wobble_detected", "1 when frequency wobble is detected", labels=_B, integer=True,
                        display=_diag("Frequency wobble", binary="problem"))
BATTERY_CLAMPED = _gauge("battery_charge_power_clamped", "1 while charge power is clamped", labels=_B,
                         integer=True, display=_diag("Charge power clamped", binary=""))
BATTERY_BACKUP_READY = _gauge("battery_backup_ready", "1 when the battery is ready for backup", labels=_B,
                              integer=True, display=_diag("Backup ready", binary=""))
BATTERY_PINV_STATE = _gauge("battery_pinv_state", "Battery inverter state (label state); always 1",
                            labels=("serial", "state"), integer=True,
                            display=_rare("Inverter state", state_label="state"))
BATTERY_PINV_GRID_STATE = _gauge("battery_pinv_grid_state", "Battery inverter grid state (label state); always 1",
                                 labels=("serial", "state"), integer=True,
                                 display=_rare("Inverter grid state", state_label="state"))
BATTERY_OPSEQ_STATE = _gauge("battery_opseq_state", "Battery operation sequence state (label state); always 1",
                             labels=("serial", "state"), integer=True,
                             display=_rare("Operation sequence", state_label="state"))
BATTERY_CHARGED = _counter("battery_charged_joules_total", "Energy charged into one battery over its lifetime "
                           "(energy_charged; absent while the gateway reports 0)", "joules", _B,
                           display=Display(name="Energy charged", unit="kWh", precision=2,
                                           state_class="total_increasing", device_class="energy"))
BATTERY_DISCHARGED = _counter("battery_discharged_joules_total", "Energy discharged from one battery over its "
                              "lifetime (energy_discharged; absent while the gateway reports 0)", "joules", _B,
                              display=Display(name="Energy discharged", unit="kWh", precision=2,
                                              state_class="total_increasing", device_class="energy"))

_C = ("category",)
_CAT = CATEGORY_WORDS


def _by_category(default: Display, **choices: Display) -> DisplayByLabel:
    return DisplayByLabel("category", choices, default)


INSTANT_POWER = _gauge(
    "instant_power_watts", "Real power per category (site > 0 = importing from the grid, battery > 0 = "
    "discharging, load > 0 = consumption, solar > 0 = producing)", "watts", _C,
    display=_by_category(_rare("{category} power", unit="W", precision=0, words=_CAT),
                         site=Display(name="Grid power", unit="W", precision=0),
                         battery=Display(name="Battery power", unit="W", precision=0),
                         load=Display(name="Home power", unit="W", precision=0),
                         solar=Display(name="Solar power", unit="W", precision=0),
                         generator=Display(name="Generator power", unit="W", precision=0)))
REACTIVE_POWER = _gauge("instant_reactive_power_volt_amperes_reactive", "Reactive power per category (var)",
                        "volt_amperes", _C,
                        display=_rare("{category} reactive power", unit="var", precision=0,
                                      device_class="reactive_power", words=_CAT))
APPARENT_POWER = _gauge("instant_apparent_power_volt_amperes", "Apparent power per category", "volt_amperes", _C,
                        display=_rare("{category} apparent power", unit="VA", precision=0, words=_CAT))
#: The gateway measures one AC bus: the grid's voltage and frequency say it all, the other
#: categories repeat them.
FREQUENCY = _gauge("frequency_hertz", "AC frequency per category (absent while 0)", "hertz", _C,
                   display=_by_category(_rare("{category} frequency", unit="Hz", precision=3, words=_CAT),
                                        site=_diag("Grid frequency", unit="Hz", precision=3)))
AVERAGE_VOLTS = _gauge("instant_average_volts", "Average voltage per category", "volts", _C,
                       display=_by_category(_rare("{category} voltage", unit="V", precision=1, words=_CAT),
                                            site=_diag("Grid voltage", unit="V", precision=1)))
AVERAGE_AMPERES = _gauge("instant_average_amperes", "Average current per category", "amperes", _C,
                         display=_rare("{category} current", unit="A", precision=2, words=_CAT))
TOTAL_AMPERES = _gauge("instant_total_amperes", "Total current per category", "amperes", _C,
                       display=_rare("{category} total current", unit="A", precision=2, words=_CAT))
_ENERGY = {"unit": "kWh", "precision": 2, "device_class": "energy", "state_class": "total_increasing"}
EXPORTED = _counter(
    "exported_joules_total", "Energy exported per category over the meter's lifetime (site: to the grid; "
    "battery: discharged; solar: produced); absent while 0", "joules", _C,
    display=_by_category(_rare("{category} energy exported", words=_CAT, **_ENERGY),
                         site=Display(name="Grid export", **_ENERGY),
                         battery=Display(name="Battery energy out", **_ENERGY),
                         solar=Display(name="Solar production", **_ENERGY),
                         generator=Display(name="Generator production", **_ENERGY)))
IMPORTED = _counter(
    "imported_joules_total", "Energy imported per category over the meter's lifetime (site: from the grid; "
    "battery: charged; load: consumed); absent while 0", "joules", _C,
    display=_by_category(_rare("{category} energy imported", words=_CAT, **_ENERGY),
                         site=Display(name="Grid import", **_ENERGY),
                         battery=Display(name="Battery energy in", **_ENERGY),
                         load=Display(name="Home consumption", **_ENERGY)))

_M = ("category", "type", "serial")
METER_INFO = MetricDef(P + "meter_info", "A meter of /api/meters/<category> with a serial; always 1. Labels name "
                       "(Grid meter, Solar meter, ...), model and manufacturer name its Home Assistant device",
                       Kind.INFO, label_names=(*_M, "name", "model", "manufacturer"), display=Display(hidden=True))


def _dev(name: str, help_: str, unit: str, kind: Kind, display: DisplayByLabel) -> MetricDef:
    return MetricDef(P + "dev_" + name, help_ + " of one meter (/api/meters/<category> Cached_readings)", kind, unit,
                     False, (), _M, display)


def _dev_display(what: str, unit: str, precision: int, **kw: Any) -> DisplayByLabel:
    """A meter's readings repeat the aggregates (Grid power is the site meter's power): disabled.
    A meter with a serial is its own device ("Power"); one without is on the gateway's."""
    own = _rare(what[:1].upper() + what[1:], unit=unit, precision=precision, **kw)
    return DisplayByLabel("serial", {"": _rare(f"{{category}} meter {what}", unit=unit, precision=precision,
                                               words=_CAT, **kw)}, default=own)


DEV_POWER = _dev("instant_power_watts", "Real power", "watts", Kind.GAUGE, _dev_display("power", "W", 0))
DEV_REACTIVE = _dev("instant_reactive_power_volt_amperes_reactive", "Reactive power", "volt_amperes", Kind.GAUGE,
                    _dev_display("reactive power", "var", 0, device_class="reactive_power"))
DEV_APPARENT = _dev("instant_apparent_power_volt_amperes", "Apparent power", "volt_amperes", Kind.GAUGE,
                    _dev_display("apparent power", "VA", 0))
DEV_FREQUENCY = _dev("frequency_hertz", "AC frequency (absent while 0)", "hertz", Kind.GAUGE,
                     _dev_display("frequency", "Hz", 3))
DEV_VOLTS = _dev("instant_average_volts", "Average voltage", "volts", Kind.GAUGE, _dev_display("voltage", "V", 1))
DEV_AVERAGE_AMPERES = _dev("instant_average_amperes", "Average current", "amperes", Kind.GAUGE,
                           _dev_display("current", "A", 2))
DEV_TOTAL_AMPERES = _dev("instant_total_amperes", "Total current", "amperes", Kind.GAUGE,
                         _dev_display("total current", "A", 2))
DEV_EXPORTED = _dev("exported_joules_total", "Energy exported (absent while 0)", "joules", Kind.COUNTER,
                    _dev_display("energy exported", "kWh", 2, device_class="energy", state_class="total_increasing"))
DEV_IMPORTED = _dev("imported_joules_total", "Energy imported (absent while 0)", "joules", Kind.COUNTER,
                    _dev_display("energy imported", "kWh", 2, device_class="energy", state_class="total_increasing"))

_N = ("type", "name")
#: Network interfaces as a person calls them; a gateway has one of each.
NETWORK_WORDS = {"type": {"EthType": "Ethernet", "WifiType": "Wi-Fi", "GsmType": "Cellular"}}
NETWORK_ENABLED = _gauge("network_enabled", "1 if the network interface is enabled (label type: EthType, "
                         "WifiType, GsmType)", labels=_N, integer=True,
                         display=_rare("{type} enabled", binary="", words=NETWORK_WORDS))
NETWORK_ACTIVE = _gauge("network_active", "1 if the network interface is active", labels=_N, integer=True,
                        display=_diag("{type}", binary="connectivity", words=NETWORK_WORDS))
NETWORK_PRIMARY = _gauge("network_primary", "1 for the primary network interface", labels=_N, integer=True,
                         display=_rare("{type} primary", binary="", words=NETWORK_WORDS))
NETWORK_STATE = _gauge("network_state", "Interface state and the reason of its last change (labels state, "
                       "reason); always 1", labels=("type", "name", "state", "reason"), integer=True,
                       display=_rare("{type} {state}", binary="", words=NETWORK_WORDS))
NETWORK_SIGNAL = _gauge("network_signal_strength", "Wireless signal strength as the gateway reports it "
                        "(absent while 0)", labels=_N, integer=True,
                        display=_diag("{type} signal strength", precision=0, state_class="measurement",
                                      words=NETWORK_WORDS))
ENDPOINT_OK = _gauge("endpoint_ok", "1 if the last read of this API endpoint gave a usable answer, 0 if not "
                     "(502 while the sitemaster is stopped, say)", labels=("endpoint",), integer=True,
                     display=_rare("API {endpoint}", binary=""))

DEVICE_METRICS: tuple[MetricDef, ...] = (
    INFO, UPTIME, COMMISSIONS, CHARGE, APP_CHARGE, OPERATION_MODE, RESERVE, APP_RESERVE, SITEMASTER_RUNNING,
    SITEMASTER_CONNECTED, POWER_SUPPLY_MODE, SITEMASTER_BUSY, PROBLEMS, FULL_PACK, REMAINING, ISLAND_STATE,
    GRID_CONNECTED, BATTERY_INFO, BATTERY_FULL_PACK, BATTERY_REMAINING, BATTERY_VOLTS, BATTERY_AMPERES,
    BATTERY_HERTZ, BATTERY_WATTS, BATTERY_OFF_GRID, BATTERY_ISLAND, BATTERY_WOBBLE, BATTERY_CLAMPED,
    BATTERY_BACKUP_READY, BATTERY_PINV_STATE, BATTERY_PINV_GRID_STATE, BATTERY_OPSEQ_STATE, BATTERY_CHARGED,
    BATTERY_DISCHARGED, INSTANT_POWER, REACTIVE_POWER, APPARENT_POWER, FREQUENCY, AVERAGE_VOLTS, AVERAGE_AMPERES,
    TOTAL_AMPERES, EXPORTED, IMPORTED, DEV_POWER, DEV_REACTIVE, DEV_APPARENT, DEV_FREQUENCY, DEV_VOLTS,
    DEV_AVERAGE_AMPERES, DEV_TOTAL_AMPERES, DEV_EXPORTED, DEV_IMPORTED, METER_INFO, NETWORK_ENABLED, NETWORK_ACTIVE,
    NETWORK_PRIMARY, NETWORK_STATE, NETWORK_SIGNAL, ENDPOINT_OK,
)

# Diagnostics: gridtap's side of the gateway, published while it is down too.
LOGINS = _counter("login_attempts_total", "Logins gridtap attempted, by result (ok, rejected, rate_limited, "
                  "unsupported, failed)", labels=("result",), integer=True,
                  display=_diag("Logins {result}", enabled=False))
REQUESTS = _counter("api_requests_total", "HTTP requests to the gateway, by answer (HTTP status code, or "
                    "network / tls when there was none)", labels=("code",), integer=True,
                    display=_diag("API requests {code}", enabled=False))
BACKOFF = _gauge("login_backoff_seconds", "Seconds until gridtap talks to the gateway again after a rejected "
                 "login, a 429 or an unsupported gateway; 0 when not backing off", "seconds",
                 display=_diag("Login back-off", unit="s", precision=0))
DIAGNOSTIC_METRICS: tuple[MetricDef, ...] = (LOGINS, REQUESTS, BACKOFF)
ALL: tuple[MetricDef, ...] = DEVICE_METRICS + DIAGNOSTIC_METRICS


# --------------------------------------------------------------------------------- values
_GO_DURATION = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
#: Go keeps a duration in int64 nanoseconds: anything longer (~292 years) is refused.
_GO_MAX_SECONDS = (2**63 - 1) / 1e9
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string (``230h55m59.932079901s``, ``1m20s``, ``500ms``, ``-1.5h``, ``0``).

    The same grammar as Go's ``time.ParseDuration``: a sign, then one or more number+unit
    pairs; ``d`` is not a unit; at most ~292 years (Go's int64 nanoseconds). ValueError for
    anything else. float64's 15-16 digits keep the nanoseconds of uptimes up to ~3 years.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string, got {text!r}")
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s[1:] if s[:1] in "+-" else s
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    if not s:
        raise ValueError(f"not a duration: {text!r}")
    while pos < len(s):
        m = _GO_DURATION.match(s, pos)
        if not m:
            raise ValueError(f"not a duration: {text!r}")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if total > _GO_MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than a Go duration can be (about 292 years)")
    return sign * total


def _field(doc: Mapping[str, Any], key: str) -> Any:
    """``doc[key]`` matched exactly, else case-insensitively (as Go's decoder does); None if absent."""
    if key in doc:
        return doc[key]
    lowered = key.lower()
    for k, v in doc.items():
        if isinstance(k, str) and k.lower() == lowered:
            return v
    return None


def _number(doc: Mapping[str, Any], key: str, where: str) -> float | None:
    v = _field(doc, key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DocumentError(f"{where}.{key}: expected a number, got {_shown(v)}")
    f = float(v)
    if not math.isfinite(f):
        raise DocumentError(f"{where}.{key}: not a finite number")
    return f


def _flag(doc: Mapping[str, Any], key: str, where: str) -> int | None:
    v = _field(doc, key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise DocumentError(f"{where}.{key}: expected true or false, got {_shown(v)}")
    return int(v)


def _text(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    v = _field(doc, key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise DocumentError(f"{where}.{key}: expected a string, got {_shown(v)}")
    return v


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(doc: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict):
        raise DocumentError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _list(doc: Any, where: str) -> list[Any]:
    if doc is None:
        return []  # the gateway answers `null` for an empty list (meters/solar without a meter)
    if not isinstance(doc, list):
        raise DocumentError(f"{where}: expected a JSON list, got {type(doc).__name__}")
    return doc


def app_scale(percent: float) -> float:
    """The Tesla app's reading of a raw gateway percentage, as a ratio: (raw - 5) / 0.95, in 0..1."""
    return min(1.0, max(0.0, (percent - 5.0) / 95.0))


def _out(out: list[Metric], definition: MetricDef, value: float | int | None, **labels: str) -> None:
    if value is not None:
        out.append(definition(value, **labels))


# --------------------------------------------------------------------------------- endpoints
def status_metrics(doc: Any) -> list[Metric]:
    """``/api/status`` (no login needed)."""
    d = _object(doc, "status")
    out: list[Metric] = []
    version, git_hash = _text(d, "version", "status"), _text(d, "git_hash", "status")
    din = _text(d, "din", "status")
    if version is not None or git_hash is not None or din is not None:
        part, _, serial = (din or "").partition("--")
        out.append(INFO(1, version=version or "", git_hash=git_hash or "", manufacturer=MANUFACTURER,
                        model=gateway_model(part, _text(d, "device_type", "status")), serial_number=serial,
                        firmware=version or ""))
    uptime = _field(d, "up_time_seconds")
    if uptime is not None:
        try:
            out.append(UPTIME(parse_go_duration(uptime)))
        except ValueError as e:
            raise DocumentError(f"status.up_time_seconds: {e}") from None
    count = _number(d, "commission_count", "status")
    _out(out, COMMISSIONS, int(count) if count is not None else None)
    return out


def gateway_model(part_number: str, device_type: str | None) -> str:
    """What the gateway is, from its part number (the DIN before "--") or else its device_type."""
    found = GATEWAY_MODELS.get(part_number.split("-")[0])
    if found:
        return found
    return "Energy Gateway" if device_type == "teg" else ""


def soe_metrics(doc: Any) -> list[Metric]:
    """``/api/system_status/soe``."""
    pct = _number(_object(doc, "system_status/soe"), "percentage", "system_status/soe")
    if pct is None:
        return []
    return [CHARGE(pct / 100), APP_CHARGE(app_scale(pct))]


def operation_metrics(doc: Any) -> list[Metric]:
    """``/api/operation``."""
    d = _object(doc, "operation")
    out: list[Metric] = []
    mode = _text(d, "real_mode", "operation")
    if mode is not None:
        out.append(OPERATION_MODE(1, mode=mode))
    reserve = _number(d, "backup_reserve_percent", "operation")
    if reserve is not None:
        out += [RESERVE(reserve / 100), APP_RESERVE(app_scale(reserve))]
    return out


def sitemaster_metrics(doc: Any) -> list[Metric]:
    """``/api/sitemaster``. ``sitemaster_busy`` appears unless ``can_reboot`` is ``Yes``."""
    d = _object(doc, "sitemaster")
    out: list[Metric] = []
    _out(out, SITEMASTER_RUNNING, _flag(d, "running", "sitemaster"))
    _out(out, SITEMASTER_CONNECTED, _flag(d, "connected_to_tesla", "sitemaster"))
    _out(out, POWER_SUPPLY_MODE, _flag(d, "power_supply_mode", "sitemaster"))
    reason = _text(d, "can_reboot", "sitemaster")
    if reason is not None and reason != "Yes":
        out.append(SITEMASTER_BUSY(1, reason=reason))
    return out


def problems_metrics(doc: Any) -> list[Metric]:
    """``/api/troubleshooting/problems``: only the number of problems is known to mean something."""
    d = _object(doc, "troubleshooting/problems")
    problems = _field(d, "problems")
    if problems is None:
        return []
    return [PROBLEMS(len(_list(problems, "troubleshooting/problems.problems")))]


def system_status_metrics(doc: Any, seen_serials: set[str] | None = None,
                          duplicate: Callable[[str], None] | None = None) -> list[Metric]:
    """``/api/system_status``: totals and one series set per battery block (label ``serial``).

    A block whose serial was already seen is left out (its series would collide with the
    first one's) and reported through ``duplicate``; ``seen_serials`` collects the serials.
    """
    where = "system_status"
    d = _object(doc, where)
    out: list[Metric] = []
    full, left = _number(d, "nominal_full_pack_energy", where), _number(d, "nominal_energy_remaining", where)
    _out(out, FULL_PACK, full * WH if full is not None else None)
    _out(out, REMAINING, left * WH if left is not None else None)
    island = _text(d, "system_island_state", where)
    if island is not None:
        out += [ISLAND_STATE(1, state=island), GRID_CONNECTED(int(island == "SystemGridConnected"))]
    seen = set() if seen_serials is None else seen_serials
    for i, block in enumerate(_list(_field(d, "battery_blocks"), f"{where}.battery_blocks")):
        out += _battery_block(_object(block, f"{where}.battery_blocks[{i}]"), f"{where}.battery_blocks[{i}]",
                              seen, duplicate)
    return out


def _battery_block(b: Mapping[str, Any], where: str, seen: set[str],
                   duplicate: Callable[[str], None] | None) -> list[Metric]:
    serial = _text(b, "PackageSerialNumber", where)
    if serial is None:
        raise DocumentError(f"{where}.PackageSerialNumber: missing")
    if serial in seen:
        if duplicate is not None:
            duplicate(serial)
        return []
    seen.add(serial)
    out = [BATTERY_INFO(1, serial=serial, partno=_text(b, "PackagePartNumber", where) or "",
                        version=_text(b, "version", where) or "", name=f"Battery {len(seen)}", model="Powerwall",
                        manufacturer=MANUFACTURER)]

    def num(key: str) -> float | None:
        return _number(b, key, where)

    full, left = num("nominal_full_pack_energy"), num("nominal_energy_remaining")
    _out(out, BATTERY_FULL_PACK, full * WH if full is not None else None, serial=serial)
    _out(out, BATTERY_REMAINING, left * WH if left is not None else None, serial=serial)
    _out(out, BATTERY_VOLTS, num("v_out"), serial=serial)
    _out(out, BATTERY_AMPERES, num("i_out"), serial=serial)
    _out(out, BATTERY_HERTZ, num("f_out"), serial=serial)
    _out(out, BATTERY_WATTS, num("p_out"), serial=serial)
    for definition, key in ((BATTERY_OFF_GRID, "off_grid"), (BATTERY_ISLAND, "vf_mode"),
                            (BATTERY_WOBBLE, "wobble_detected"), (BATTERY_CLAMPED, "charge_power_clamped"),
                            (BATTERY_BACKUP_READY, "backup_ready")):
        _out(out, definition, _flag(b, key, where), serial=serial)
    for definition, key in ((BATTERY_PINV_STATE, "pinv_state"), (BATTERY_PINV_GRID_STATE, "pinv_grid_state"),
                            (BATTERY_OPSEQ_STATE, "OpSeqState")):
        state = _text(b, key, where)
        if state is not None:
            out.append(definition(1, serial=serial, state=state))
    # A gateway that is starting reports 0 for a while: a 0 would read as a counter reset.
    charged, discharged = num("energy_charged"), num("energy_discharged")
    if charged:
        out.append(BATTERY_CHARGED(charged * WH, serial=serial))
    if discharged:
        out.append(BATTERY_DISCHARGED(discharged * WH, serial=serial))
    return out


#: The nine readings of an aggregate or a meter: (field, aggregate metric, meter metric, 0 means absent,
#: factor to the base unit).
READINGS = (
    ("instant_power", INSTANT_POWER, DEV_POWER, False, 1.0),
    ("instant_reactive_power", REACTIVE_POWER, DEV_REACTIVE, False, 1.0),
    ("instant_apparent_power", APPARENT_POWER, DEV_APPARENT, False, 1.0),
    ("frequency", FREQUENCY, DEV_FREQUENCY, True, 1.0),
    ("instant_average_voltage", AVERAGE_VOLTS, DEV_VOLTS, False, 1.0),
    ("instant_average_current", AVERAGE_AMPERES, DEV_AVERAGE_AMPERES, False, 1.0),
    ("instant_total_current", TOTAL_AMPERES, DEV_TOTAL_AMPERES, False, 1.0),
    ("energy_exported", EXPORTED, DEV_EXPORTED, True, WH),
    ("energy_imported", IMPORTED, DEV_IMPORTED, True, WH),
)


def _readings(d: Mapping[str, Any], where: str, meter: bool, **labels: str) -> list[Metric]:
    out = []
    for key, aggregate, device, zero_absent, factor in READINGS:
        value = _number(d, key, where)
        if value is None or (zero_absent and value == 0):
            continue
        out.append((device if meter else aggregate)(value * factor, **labels))
    return out


def aggregates_metrics(doc: Any) -> tuple[list[Metric], list[str]]:
    """``/api/meters/aggregates``: samples per category, and the categories (for meters/<category>)."""
    d = _object(doc, "meters/aggregates")
    out: list[Metric] = []
    categories = []
    for category, readings in d.items():
        where = f"meters/aggregates.{category}"
        out += _readings(_object(readings, where), where, False, category=category)
        categories.append(category)
    return out, categories


def meters_metrics(category: str, doc: Any) -> list[Metric]:
    """``/api/meters/<category>``: one series set per meter (labels category, type, serial)."""
    where = f"meters/{category}"
    out: list[Metric] = []
    for i, meter in enumerate(_list(doc, where)):
        m = _object(meter, f"{where}[{i}]")
        connection = _field(m, "connection")
        serial = _text(_object(connection, f"{where}[{i}].connection"), "device_serial", where) \
            if connection is not None else None
        readings = _field(m, "Cached_readings")
        if readings is None:
            continue
        kind = _text(m, "type", where) or ""
        if serial:
            maker, model = METER_MODELS.get(kind, (MANUFACTURER, kind))
            word = CATEGORY_WORDS["category"].get(category, category.replace("_", " "))
            out.append(METER_INFO(1, category=category, type=kind, serial=serial, name=f"{word.capitalize()} meter",
                                  model=model, manufacturer=maker))
        out += _readings(_object(readings, f"{where}[{i}].Cached_readings"), f"{where}[{i}].Cached_readings", True,
                         category=category, type=kind, serial=serial or "")
    return out


def networks_metrics(doc: Any) -> list[Metric]:
    """``/api/networks``: per interface (labels type, name)."""
    out: list[Metric] = []
    for i, entry in enumerate(_list(doc, "networks")):
        where = f"networks[{i}]"
        n = _object(entry, where)
        labels = {"type": _text(n, "interface", where) or "", "name": _text(n, "network_name", where) or ""}
        _out(out, NETWORK_ENABLED, _flag(n, "enabled", where), **labels)
        _out(out, NETWORK_ACTIVE, _flag(n, "active", where), **labels)
        _out(out, NETWORK_PRIMARY, _flag(n, "primary", where), **labels)
        info = _field(n, "iface_network_info")
        if info is None:
            continue  # an inactive interface has no iface_network_info
        iface = _object(info, f"{where}.iface_network_info")
        if not _text(iface, "network_name", where):
            continue
        out.append(NETWORK_STATE(1, **labels, state=_text(iface, "state", where) or "",
                                 reason=_text(iface, "state_reason", where) or ""))
        signal = _number(iface, "signal_strength", where)
        if signal:
            out.append(NETWORK_SIGNAL(round(signal), **labels))  # an integer field, whatever the gateway writes
    return out


#: Endpoints in the seed exporter's poll order, with their decoders (meters/<category> follow aggregates).
ENDPOINTS: tuple[tuple[str, Callable[[Any], list[Metric]]], ...] = (
    ("status", status_metrics),
    ("system_status/soe", soe_metrics),
    ("operation", operation_metrics),
    ("sitemaster", sitemaster_metrics),
    ("troubleshooting/problems", problems_metrics),
    ("system_status", system_status_metrics),
    ("meters/aggregates", lambda doc: aggregates_metrics(doc)[0]),
    ("networks", networks_metrics),
)
DECODERS = dict(ENDPOINTS)


def decoder_for(endpoint: str) -> Callable[[Any], list[Metric]]:
    """The decoder of one endpoint (``meters/site`` included); KeyError for one we do not read."""
    if endpoint in DECODERS:
        return DECODERS[endpoint]
    if endpoint.startswith("meters/") and endpoint.count("/") == 1:
        category = endpoint.split("/", 1)[1]
        return lambda doc: meters_metrics(category, doc)
    raise KeyError(endpoint)


def unique(metrics: Iterable[Metric]) -> tuple[list[Metric], list[Metric]]:
    """(samples with each name+labels once, the later duplicates that were dropped)."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    kept, dropped = [], []
    for m in metrics:
        key = (m.name, m.labels)
        if key in seen:
            dropped.append(m)
        else:
            seen.add(key)
            kept.append(m)
    return kept, dropped


#: foogod/powerwall_exporter's names that gridtap spells differently (every other seed name is
#: kept as it is). The dev_* label ``tyoe`` (sic) is ``type`` here.
SEED_NAMES: dict[str, str] = {
    "powerwall_commission_count": COMMISSIONS.name,  # a _count suffix is for histograms; it only grows
    "powerwall_problems_detected_count": PROBLEMS.name,
    "powerwall_battery_output_amps": BATTERY_AMPERES.name,
    "powerwall_battery_output_hz": BATTERY_HERTZ.name,
    "powerwall_instant_reactive_power_watts": REACTIVE_POWER.name,  # var, not W
    "powerwall_instant_apparent_power_watts": APPARENT_POWER.name,  # VA, not W
    "powerwall_frequency_hz": FREQUENCY.name,
    "powerwall_instant_average_amps": AVERAGE_AMPERES.name,
    "powerwall_instant_total_amps": TOTAL_AMPERES.name,
    "powerwall_dev_instant_reactive_power_watts": DEV_REACTIVE.name,
    "powerwall_dev_instant_apparent_power_watts": DEV_APPARENT.name,
    "powerwall_dev_frequency_hz": DEV_FREQUENCY.name,
    "powerwall_dev_instant_average_amps": DEV_AVERAGE_AMPERES.name,
    "powerwall_dev_instant_total_amps": DEV_TOTAL_AMPERES.name,
}
#: Series gridtap adds to the seed's (README "Added").
ADDED: tuple[MetricDef, ...] = (APP_CHARGE, APP_RESERVE, GRID_CONNECTED, BATTERY_WATTS, ENDPOINT_OK, METER_INFO)
