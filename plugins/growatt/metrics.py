"""Growatt records -> gridtap metrics (no I/O): definitions, the field table, the rules.

Units are converted to base units: kWh x 3.6e6 -> joules, kW x 1000 -> watts, % / 100 ->
ratio. One field table serves every family: each metric lists the spellings Growatt uses for
it across MIN/TLX (``eacToday``), SPH/MIX (``epvtoday``, ``etogridTotal``) and classic
inverters (``powerToday``), matched case-insensitively (:mod:`.values`).

Rules (spec §10.5): absent stays absent (never 0); the ``-0.1`` sentinel and negative
energies are absent; lifetime totals never decrease and "today" counters do not bounce
(:class:`.values.Guards`); live readings (power, voltage, current, frequency, temperature,
state of charge, status) are left out when the device's data is older than
``power_max_age`` or ``lost`` - Growatt keeps serving the last daytime values all night -
while energies stay; a "today" energy is only shown on the day it belongs to.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gridtap.model import Display, DisplayByLabel, Kind, Metric, MetricDef

from . import values as v

KWH = 3.6e6  # joules per kWh

# --- how a person reads it (Home Assistant) ------------------------------------------------------------
# What is on a dashboard (enabled, not diagnostic) and why is in README.md "Home Assistant". In
# short: per inverter the powers and energies a Growatt owner looks at (output, PV and each
# string's power, today's and lifetime yield), its status in words and a fault flag; the grid
# and house flows and the battery where the family reports them (the Energy dashboard takes
# the lifetime totals); per plant its power and today's energy. Voltages, currents and the
# inverter temperature are diagnostics; per-phase and per-string details, the other
# temperatures, bus voltages, backup output and "today" copies of the flows are disabled.

#: Human words for label values in entity names ("MIN data back-off", not "device/tlx/tlx_last_data back-off").
_ENDPOINT_WORDS = {"endpoint": {
    "*": "API", "plant/list": "plant list", "plant/details": "plant details", "plant/data": "plant data",
    "plant/energy": "plant energy history", "plant/power": "plant power history", "device/list": "device list",
    "device/tlx/tlx_last_data": "MIN data", "device/tlx/tlx_data_info": "MIN info",
    "device/mix/mix_last_data": "SPH data", "device/mix/mix_data_info": "SPH info",
    "device/inverter/last_new_data": "inverter data", "device/inverter/inv_data_info": "inverter info",
    "device/inverter/day_energy": "inverter day energy"}}
_PHASES_WORDS = {"phases": {"rs": "L1-L2", "st": "L2-L3", "tr": "L3-L1"}}
#: Live values an owner rarely looks at: they exist (diagnostic), disabled until enabled.
_RARE: dict[str, Any] = {"diagnostic": True, "enabled": False}
#: The inverter's own status (``status``; family-specific codes: spec §10.2-10.4) as a state.
#: 0-3 are documented (2 fault on MIN and SPH, 3 on classic inverters); 4-8 are the work modes
#: the same field takes on hybrids (SPH, MIN TL-XH: 5 "PV Bat Online" in real replies).
STATUS_STATES = {0: "waiting", 1: "normal", 2: "fault", 3: "fault", 4: "updating", 5: "pv_battery_online",
                 6: "battery_online", 7: "backup_pv", 8: "backup_battery"}
DEVICE_STATES = ("waiting", "normal", "fault", "updating", "pv_battery_online", "battery_online", "backup_pv",
                 "backup_battery", "offline", "unknown")
_STATE_WORDS = {"state": {
    "waiting": "Waiting", "normal": "Normal", "fault": "Fault", "updating": "Updating firmware",
    "pv_battery_online": "Online (solar and battery)", "battery_online": "Online (battery)",
    "backup_pv": "Backup (solar)", "backup_battery": "Backup (battery)", "offline": "Offline", "unknown": "Unknown"}}


def _energy(name: str, today: bool = False, **kw: Any) -> Display:
    """kWh, 2 digits; a "today" (or month, year) gauge drops when its period starts, so it is
    ``total_increasing`` (HA takes the drop as a new cycle, not as negative energy)."""
    return Display(name=name, unit="kWh", precision=2, device_class="energy",
                   state_class="total_increasing" if today else None, **kw)


def _d(name: str, unit: str, precision: int, **kw: Any) -> Display:
    return Display(name=name, unit=unit, precision=precision, **kw)


def _battery(name: str, **kw: Any) -> Display:
    """A part of the hybrid's battery: Home Assistant shows it as "<inverter> battery"."""
    return Display(name=name, component="battery", **kw)


def _def(name: str, help_: str, unit: str = "", kind: Kind = Kind.GAUGE, labels: tuple[str, ...] = (),
         display: Any = None, integer: bool = False, states: tuple[str, ...] = ()) -> MetricDef:
    return MetricDef(name, help_, kind, unit, integer, states, labels, display)


DEV = ("plant_id", "device_sn")

# --- plant ----------------------------------------------------------------------------------------
# The plant is its own Home Assistant device (named as in the Growatt app): entity names need no "Plant".
PLANT_POWER = _def("growatt_plant_power_watts", "Plant output power now (plant/data current_power, kW x 1000).",
                   "watts", labels=("plant_id",), display=_d("Power", "W", 0))
PLANT_ENERGY_TODAY = _def("growatt_plant_energy_today_joules", "Plant energy today; resets at local midnight.",
                          "joules", labels=("plant_id",), display=_energy("Energy today", today=True))
PLANT_ENERGY_MONTH = _def("growatt_plant_energy_month_joules", "Plant energy this month.", "joules",
                          labels=("plant_id",), display=_energy("Energy this month", today=True, enabled=False))
PLANT_ENERGY_YEAR = _def("growatt_plant_energy_year_joules", "Plant energy this year.", "joules",
                         labels=("plant_id",), display=_energy("Energy this year", today=True, enabled=False))
# Disabled: the sum of the inverters' "Energy produced", which the Energy dashboard takes one by one.
PLANT_ENERGY_TOTAL = _def("growatt_plant_energy_joules_total", "Plant energy since installation.", "joules",
                          Kind.COUNTER, ("plant_id",), _energy("Energy produced", enabled=False))
PLANT_PEAK_POWER = _def("growatt_plant_peak_power_watts", "Plant nameplate (peak) power (kWp x 1000).", "watts",
                        labels=("plant_id",),
                        display=_d("Installed power", "kW", 2, state_class="", diagnostic=True))
PLANT_DATA_TIMESTAMP = _def("growatt_plant_data_timestamp_seconds",
                            "When Growatt last updated the plant's figures (last_update_time, Unix time).",
                            "seconds", labels=("plant_id",), display=Display(name="Last update", diagnostic=True))
PLANT_INFO = _def("growatt_plant_info", "A plant of the account: name, timezone, place.", kind=Kind.INFO,
                  labels=("plant_id", "name", "timezone", "city", "country"), display=Display(hidden=True))

# --- device ---------------------------------------------------------------------------------------
DEVICE_INFO = _def("growatt_device_info", "A device of the plant: family, numeric type, model, datalogger, firmware, "
                   "and the name Home Assistant gives it.", kind=Kind.INFO,
                   labels=(*DEV, "family", "type", "model", "datalogger_sn", "firmware", "name"),
                   display=Display(hidden=True))
DATA_TIMESTAMP = _def("growatt_data_timestamp_seconds",
                      "When the device's values were measured (its own 'time', plant-local, as Unix time).",
                      "seconds", labels=DEV, display=Display(name="Last upload", diagnostic=True))
STATUS = _def("growatt_device_status", "Device status code (0 waiting, 1 normal, 2/3 fault; family-specific).",
              labels=DEV, integer=True, display=_d("Status code", "", 0, state_class="", **_RARE))
DEVICE_STATE = _def("growatt_device_state", "Device status as a state (growatt_device_status in words; offline when "
                    "Growatt says the device is lost or has had no upload for power_max_age).", kind=Kind.STATESET,
                    labels=DEV, states=DEVICE_STATES, display=Display(name="Status", words=_STATE_WORDS))
FAULT_ACTIVE = _def("growatt_fault_active", "1 while the device's status is a fault (without a status: while its "
                    "fault code is not 0), else 0.", labels=DEV, integer=True,
                    display=Display(name="Fault", binary="problem"))
AC_POWER = _def("growatt_ac_power_watts", "AC output power (pac).", "watts", labels=DEV,
                display=_d("Output power", "W", 0))
AC_PHASE_POWER = _def("growatt_ac_phase_power_watts", "AC output power per phase (pac1-3 / pacr, pacs, pact).",
                      "watts", labels=(*DEV, "phase"), display=_d("Output power L{phase}", "W", 0, enabled=False))
PV_POWER = _def("growatt_pv_power_watts", "PV input power, all strings (ppv).", "watts", labels=DEV,
                display=_d("PV power", "W", 0))
PV_STRING_POWER = _def("growatt_pv_string_power_watts", "PV input power per string (ppvN).", "watts",
                       labels=(*DEV, "string"), display=_d("PV{string} power", "W", 0))
PV_STRING_VOLTAGE = _def("growatt_pv_string_voltage_volts", "PV string voltage (vpvN).", "volts",
                         labels=(*DEV, "string"), display=_d("PV{string} voltage", "V", 1, diagnostic=True))
PV_STRING_CURRENT = _def("growatt_pv_string_current_amperes", "PV string current (ipvN).", "amperes",
                         labels=(*DEV, "string"), display=_d("PV{string} current", "A", 2, **_RARE))
GRID_VOLTAGE = _def("growatt_grid_voltage_volts", "Grid voltage per phase (vac1-3 / vacr, vacs, vact).", "volts",
                    labels=(*DEV, "phase"), display=_d("Grid voltage L{phase}", "V", 1, diagnostic=True))
GRID_LINE_VOLTAGE = _def("growatt_grid_line_voltage_volts", "Grid line-to-line voltage (vacRs, vacSt, vacTr).",
                         "volts", labels=(*DEV, "phases"),
                         display=_d("Grid voltage {phases}", "V", 1, words=_PHASES_WORDS, **_RARE))
GRID_CURRENT = _def("growatt_grid_current_amperes", "Grid current per phase (iac1-3 / iacr, iacs, iact).",
                    "amperes", labels=(*DEV, "phase"), display=_d("Grid current L{phase}", "A", 2, **_RARE))
GRID_FREQUENCY = _def("growatt_grid_frequency_hertz", "Grid frequency (fac).", "hertz", labels=DEV,
                      display=_d("Grid frequency", "Hz", 2, **_RARE))
POWER_FACTOR = _def("growatt_power_factor_ratio", "Power factor, -1 to 1 (pf).", "ratio", labels=DEV,
                    display=_d("Power factor", "%", 0, device_class="power_factor", **_RARE))
DC_BUS_VOLTAGE = _def("growatt_dc_bus_voltage_volts", "DC bus voltage (pBusVoltage, nBusVoltage).", "volts",
                      labels=(*DEV, "bus"), display=_d("DC bus {bus} voltage", "V", 1, **_RARE,
                                                       words={"bus": {"p": "positive", "n": "negative"}}))
#: temp1 (MIN, SPH) and temperature (classic) are the inverter's; the others are internal sensors.
TEMPERATURE = _def("growatt_temperature_celsius", "Inverter temperatures by sensor field (0 = no sensor, left out).",
                   "celsius", labels=(*DEV, "sensor"), display=DisplayByLabel("sensor", {
                       "temp1": _d("Temperature", "°C", 1, diagnostic=True),
                       "temperature": _d("Temperature", "°C", 1, diagnostic=True),
                       "ipm": _d("IPM temperature", "°C", 1, **_RARE)},
                       default=_d("Temperature {sensor}", "°C", 1, **_RARE, words={"sensor": {
                           f"{stem}{n}": str(n) for stem in ("temp", "temperature") for n in range(2, 6)}})))
AC_ENERGY_TODAY = _def("growatt_ac_energy_today_joules", "AC energy produced today (eacToday / powerToday).",
                       "joules", labels=DEV, display=_energy("Energy today", today=True))
AC_ENERGY_TOTAL = _def("growatt_ac_energy_joules_total", "AC energy produced since installation (eacTotal / "
                       "powerTotal).", "joules", Kind.COUNTER, DEV, _energy("Energy produced"))
PV_ENERGY_TODAY = _def("growatt_pv_energy_today_joules", "PV energy today, all strings (epvToday).", "joules",
                       labels=DEV, display=_energy("PV energy today", today=True))
PV_ENERGY_TOTAL = _def("growatt_pv_energy_joules_total", "PV energy since installation, all strings (epvTotal).",
                       "joules", Kind.COUNTER, DEV, _energy("PV energy"))
PV_STRING_ENERGY_TODAY = _def("growatt_pv_string_energy_today_joules", "PV energy today per string (epvNToday).",
                              "joules", labels=(*DEV, "string"),
                              display=_energy("PV{string} energy today", today=True, enabled=False))
PV_STRING_ENERGY_TOTAL = _def("growatt_pv_string_energy_joules_total", "PV energy per string (epvNTotal).",
                              "joules", Kind.COUNTER, (*DEV, "string"),
                              _energy("PV{string} energy", enabled=False))
GRID_IMPORT_ENERGY_TODAY = _def("growatt_grid_import_energy_today_joules", "Energy bought from the grid today "
                                "(etoUserToday).", "joules", labels=DEV,
                                display=_energy("Grid energy imported today", today=True, enabled=False))
GRID_IMPORT_ENERGY_TOTAL = _def("growatt_grid_import_energy_joules_total", "Energy bought from the grid "
                                "(etoUserTotal).", "joules", Kind.COUNTER, DEV, _energy("Grid energy imported"))
GRID_EXPORT_ENERGY_TODAY = _def("growatt_grid_export_energy_today_joules", "Energy sold to the grid today "
                                "(etoGridToday).", "joules", labels=DEV,
                                display=_energy("Grid energy exported today", today=True, enabled=False))
GRID_EXPORT_ENERGY_TOTAL = _def("growatt_grid_export_energy_joules_total", "Energy sold to the grid "
                                "(etoGridTotal / etogridTotal).", "joules", Kind.COUNTER, DEV,
                                _energy("Grid energy exported"))
LOAD_ENERGY_TODAY = _def("growatt_load_energy_today_joules", "Energy used by the house today (elocalLoadToday).",
                         "joules", labels=DEV, display=_energy("House energy used today", today=True, enabled=False))
LOAD_ENERGY_TOTAL = _def("growatt_load_energy_joules_total", "Energy used by the house (elocalLoadTotal).",
                         "joules", Kind.COUNTER, DEV, _energy("House energy used"))
SELF_ENERGY_TODAY = _def("growatt_self_consumption_energy_today_joules", "Own production used today (eselfToday).",
                         "joules", labels=DEV, display=_energy("Self-consumption today", today=True, enabled=False))
SELF_ENERGY_TOTAL = _def("growatt_self_consumption_energy_joules_total", "Own production used (eselfTotal).",
                         "joules", Kind.COUNTER, DEV, _energy("Self-consumption", enabled=False))
SYSTEM_ENERGY_TODAY = _def("growatt_system_energy_today_joules", "System production today (esystemToday).",
                           "joules", labels=DEV, display=_energy("System production today", today=True,
                                                                  enabled=False))
SYSTEM_ENERGY_TOTAL = _def("growatt_system_energy_joules_total", "System production (esystemTotal).", "joules",
                           Kind.COUNTER, DEV, _energy("System production", enabled=False))
BATTERY_CHARGE_ENERGY_TODAY = _def("growatt_battery_charge_energy_today_joules", "Energy into the battery today "
                                   "(echargeToday / echarge1Today).", "joules", labels=DEV,
                                   display=_energy("Energy charged today", today=True, enabled=False,
                                                   component="battery"))
BATTERY_CHARGE_ENERGY_TOTAL = _def("growatt_battery_charge_energy_joules_total", "Energy into the battery "
                                   "(echargeTotal / echarge1Total).", "joules", Kind.COUNTER, DEV,
                                   _energy("Energy charged", component="battery"))
BATTERY_DISCHARGE_ENERGY_TODAY = _def("growatt_battery_discharge_energy_today_joules", "Energy out of the battery "
                                      "today (edischargeToday / edischarge1Today).", "joules", labels=DEV,
                                      display=_energy("Energy discharged today", today=True, enabled=False,
                                                      component="battery"))
BATTERY_DISCHARGE_ENERGY_TOTAL = _def("growatt_battery_discharge_energy_joules_total", "Energy out of the battery "
                                      "(edischargeTotal / edischarge1Total).", "joules", Kind.COUNTER, DEV,
                                      _energy("Energy discharged", component="battery"))
GRID_IMPORT_POWER = _def("growatt_grid_import_power_watts", "Power bought from the grid (pacToUserTotal).",
                         "watts", labels=DEV, display=_d("Grid import power", "W", 0))
GRID_EXPORT_POWER = _def("growatt_grid_export_power_watts", "Power sold to the grid (pacToGridTotal).", "watts",
                         labels=DEV, display=_d("Grid export power", "W", 0))
LOAD_POWER = _def("growatt_load_power_watts", "House load power (pacToLocalLoad / plocalLoadTotal).", "watts",
                  labels=DEV, display=_d("House load", "W", 0))
SELF_POWER = _def("growatt_self_consumption_power_watts", "Own production used now (pself).", "watts",
                  labels=DEV, display=_d("Self-consumption power", "W", 0, enabled=False))
SYSTEM_POWER = _def("growatt_system_power_watts", "System output power (psystem).", "watts", labels=DEV,
                    display=_d("System power", "W", 0, enabled=False))
BATTERY_SOC = _def("growatt_battery_state_of_charge_ratio", "Battery state of charge (bdc1Soc / bmsSoc / soc, "
                   "% / 100).", "ratio", labels=DEV,
                   display=_battery("State of charge", unit="%", precision=0, device_class="battery"))
BATTERY_SOH = _def("growatt_battery_state_of_health_ratio", "Battery state of health (bmsSoh, % / 100).", "ratio",
                   labels=DEV, display=_battery("State of health", unit="%", precision=0, diagnostic=True))
BATTERY_VOLTAGE = _def("growatt_battery_voltage_volts", "Battery voltage (bdc1Vbat / bmsVbat / vbat).", "volts",
                       labels=DEV, display=_battery("Voltage", unit="V", precision=1, diagnostic=True))
BATTERY_CURRENT = _def("growatt_battery_current_amperes", "Battery current (bdc1Ibat / bmsIbat).", "amperes",
                       labels=DEV, display=_battery("Current", unit="A", precision=1, diagnostic=True))
BATTERY_CHARGE_POWER = _def("growatt_battery_charge_power_watts", "Battery charging power (bdc1ChargePower / "
                            "pcharge1).", "watts", labels=DEV,
                            display=_battery("Charging power", unit="W", precision=0))
BATTERY_DISCHARGE_POWER = _def("growatt_battery_discharge_power_watts", "Battery discharging power "
                               "(bdc1DischargePower / pdischarge1).", "watts", labels=DEV,
                               display=_battery("Discharging power", unit="W", precision=0))
EPS_POWER = _def("growatt_eps_apparent_power_volt_amperes", "Backup (EPS/UPS) output apparent power (upsPac1).",
                 "volt_amperes", labels=DEV, display=_d("Backup output power", "VA", 0, enabled=False))
EPS_VOLTAGE = _def("growatt_eps_voltage_volts", "Backup (EPS/UPS) output voltage (upsVac1).", "volts",
                   labels=DEV, display=_d("Backup output voltage", "V", 1, **_RARE))
OPERATING_TIME = _def("growatt_operating_seconds_total", "Time the inverter has run (timeTotal h x 3600).",
                      "seconds", Kind.COUNTER, DEV, _d("Operating time", "h", 0, diagnostic=True))
FAULT_CODE = _def("growatt_fault_code", "Fault code the inverter reports (0 = none).", labels=DEV, integer=True,
                  display=_d("Fault code", "", 0, state_class="", diagnostic=True))

# --- freshness of what is served -----------------------------------------------------------------
# One endpoint per plant or device serves its values, so the device says which: "Data stale".
READING_STALE = _def("growatt_reading_stale", "1 when these values were not refreshed by this collection (rate "
                     "window, back-off, API error) and come from an earlier call; 0 when fresh.",
                     labels=("endpoint", "plant_id", "device_sn"), integer=True,
                     display=Display(name="Data stale", binary="problem", diagnostic=True))
READING_AGE = _def("growatt_reading_age_seconds", "Seconds since gridtap fetched the values served for this endpoint.",
                   "seconds", labels=("endpoint", "plant_id", "device_sn"),
                   display=_d("Data age", "min", 1, diagnostic=True))

# --- gridtap's side of the API (diagnostics: published while the API is down) --------------------
API_REQUESTS = _def("growatt_api_requests_total", "Calls made to the Growatt API, by endpoint.",
                    kind=Kind.COUNTER, labels=("endpoint",), integer=True,
                    display=Display(name="{endpoint} calls", words=_ENDPOINT_WORDS, **_RARE))
API_ERRORS = _def("growatt_api_errors_total", "Calls that gave no data, by endpoint and code (10012 rate limited, "
                  "10011 permission denied, http_NNN, not_json, timeout, transport).", kind=Kind.COUNTER,
                  labels=("endpoint", "code"), integer=True,
                  display=Display(name="{endpoint} errors {code}", words=_ENDPOINT_WORDS, **_RARE))
#: The back-off of every call (endpoint "*") is the one to watch; per endpoint they are there when asked for.
API_BACKOFF = _def("growatt_api_backoff_seconds", "Seconds until the endpoint may be called again after an error "
                   "(0 = no back-off); endpoint=\"*\" is the back-off of every call.", "seconds",
                   labels=("endpoint",), display=DisplayByLabel(
                       "endpoint", {"*": _d("API back-off", "min", 1, diagnostic=True)},
                       default=_d("{endpoint} back-off", "min", 1, words=_ENDPOINT_WORDS, **_RARE)))
API_DAILY_CALLS = _def("growatt_api_daily_calls", "Calls of a capped endpoint in the last 24 hours.",
                       labels=("endpoint",), integer=True, display=_d("{endpoint} calls today", "", 0,
                                                                       diagnostic=True, words=_ENDPOINT_WORDS))
API_DAILY_LIMIT = _def("growatt_api_daily_limit", "Calls a capped endpoint allows in 24 hours.",
                       labels=("endpoint",), integer=True, display=Display(hidden=True))
API_DISABLED = _def("growatt_api_disabled", "1 while an endpoint is switched off for one plant or device after "
                    "10011 (the token may not read it); the rest carries on.", labels=("endpoint", "target"),
                    integer=True, display=Display(name="{endpoint} switched off", binary="problem",
                                                  diagnostic=True, words=_ENDPOINT_WORDS))

# --- history (gridtap growatt backfill) -----------------------------------------------------------
DAILY_ENERGY = _def("growatt_plant_daily_energy_joules", "Plant energy of one day (plant/energy), timestamped at "
                    "local midnight; pushed with a date label.", "joules", labels=("plant_id", "date"),
                    display=_energy("Plant energy of the day", hidden=True))
DAILY_PEAK = _def("growatt_plant_daily_peak_power_watts", "Highest 5-minute plant power of one day (plant/power).",
                  "watts", labels=("plant_id", "date"), display=Display(hidden=True))
HOURLY_POWER = _def("growatt_plant_hourly_average_power_watts", "Mean of the 5-minute plant power values of one "
                    "hour (plant/power), timestamped at the start of the hour.", "watts",
                    labels=("plant_id", "date", "hour"), display=Display(hidden=True))
DEVICE_DAILY_ENERGY = _def("growatt_device_daily_energy_joules", "Energy of one device on one day "
                           "(device/inverter/day_energy).", "joules", labels=("device_sn", "datalogger_sn"),
                           display=Display(hidden=True))

METRICS: tuple[MetricDef, ...] = tuple(x for x in list(globals().values()) if isinstance(x, MetricDef))


class Rule(enum.Enum):
    LIVE = "live"    # instantaneous: absent when the data is stale
    TODAY = "today"  # a "today" energy: guarded, shown only on its own day
    TOTAL = "total"  # a lifetime total: never decreases
    PLAIN = "plain"


@dataclass(frozen=True)
class Field:
    metric: MetricDef
    keys: tuple[str, ...]
    scale: float = 1.0
    rule: Rule = Rule.LIVE
    labels: tuple[tuple[str, str], ...] = ()
    #: Part of the battery: only exported when the device has one (spec §10.3).
    battery: bool = False
    #: Measured by the grid meter: only exported when the device has one (a MIN without a meter
    #: reports zeros for the grid and house flows, as for a battery it does not have).
    meter: bool = False
    #: A 0 means "no such sensor" (temperatures).
    zero_is_absent: bool = False
    #: Scaled by the configured unit of SPH/MIX grid and load powers (W or kW).
    mix_unit: bool = False
    #: Only exported for a PV string or AC phase that is in use (see ``_in_use``).
    string: str | None = None
    phase: str | None = None
    #: Only for these families (a key whose meaning differs between them).
    families: tuple[str, ...] = ()


def _f(metric: MetricDef, *keys: str, scale: float = 1.0, rule: Rule = Rule.LIVE, **kw: Any) -> Field:
    labels = tuple(sorted((k, str(x)) for k, x in kw.pop("labels", {}).items()))
    return Field(metric, tuple(v.norm_key(k) for k in keys), scale, rule, labels, **kw)


def _today(metric: MetricDef, *keys: str, **kw: Any) -> Field:
    return _f(metric, *keys, scale=KWH, rule=Rule.TODAY, **kw)


def _total(metric: MetricDef, *keys: str, scale: float = KWH, **kw: Any) -> Field:
    return _f(metric, *keys, scale=scale, rule=Rule.TOTAL, **kw)


_PHASE_KEYS = {"1": ("1", "r"), "2": ("2", "s"), "3": ("3", "t")}

DEVICE_FIELDS: tuple[Field, ...] = (
    _f(AC_POWER, "pac"),
    *(_f(AC_PHASE_POWER, f"pac{a}", f"pac{b}", labels={"phase": p}, phase=p) for p, (a, b) in _PHASE_KEYS.items()),
    *(_f(GRID_VOLTAGE, f"vac{a}", f"vac{b}", labels={"phase": p}, phase=p) for p, (a, b) in _PHASE_KEYS.items()),
    *(_f(GRID_CURRENT, f"iac{a}", f"iac{b}", labels={"phase": p}, phase=p) for p, (a, b) in _PHASE_KEYS.items()),
    *(_f(GRID_LINE_VOLTAGE, f"vac{x}", labels={"phases": x}, zero_is_absent=True) for x in ("rs", "st", "tr")),
    _f(GRID_FREQUENCY, "fac"),
    _f(POWER_FACTOR, "pf"),
    _f(PV_POWER, "ppv"),
    *(f for n in range(1, 9) for f in (
        _f(PV_STRING_POWER, f"ppv{n}", labels={"string": n}, string=str(n)),
        _f(PV_STRING_VOLTAGE, f"vpv{n}", labels={"string": n}, string=str(n)),
        _f(PV_STRING_CURRENT, f"ipv{n}", labels={"string": n}, string=str(n)),
        _today(PV_STRING_ENERGY_TODAY, f"epv{n}Today", labels={"string": n}, string=str(n)),
        _total(PV_STRING_ENERGY_TOTAL, f"epv{n}Total", labels={"string": n}, string=str(n)),
    )),
    _f(DC_BUS_VOLTAGE, "pBusVoltage", labels={"bus": "p"}, zero_is_absent=True),
    _f(DC_BUS_VOLTAGE, "nBusVoltage", labels={"bus": "n"}, zero_is_absent=True),
    *(_f(TEMPERATURE, k, labels={"sensor": k}, zero_is_absent=True)
      for k in ("temp1", "temp2", "temp3", "temp4", "temp5", "temperature", "temperature2", "temperature3",
                "temperature4", "temperature5")),
    _f(TEMPERATURE, "ipmTemperature", labels={"sensor": "ipm"}, zero_is_absent=True),
    _today(AC_ENERGY_TODAY, "eacToday", "powerToday"),
    _total(AC_ENERGY_TOTAL, "eacTotal", "powerTotal"),
    _today(PV_ENERGY_TODAY, "epvToday"),
    _total(PV_ENERGY_TOTAL, "epvTotal"),
    _today(GRID_IMPORT_ENERGY_TODAY, "etoUserToday", meter=True),
    _total(GRID_IMPORT_ENERGY_TOTAL, "etoUserTotal", meter=True),
    _today(GRID_EXPORT_ENERGY_TODAY, "etoGridToday", meter=True),
    _total(GRID_EXPORT_ENERGY_TOTAL, "etoGridTotal", meter=True),
    _today(LOAD_ENERGY_TODAY, "elocalLoadToday", meter=True),
    _total(LOAD_ENERGY_TOTAL, "elocalLoadTotal", meter=True),
    _today(SELF_ENERGY_TODAY, "eselfToday", meter=True),
    _total(SELF_ENERGY_TOTAL, "eselfTotal", meter=True),
    _today(SYSTEM_ENERGY_TODAY, "esystemToday"),
    _total(SYSTEM_ENERGY_TOTAL, "esystemTotal"),
    _today(BATTERY_CHARGE_ENERGY_TODAY, "echargeToday", "echarge1Today", battery=True),
    _total(BATTERY_CHARGE_ENERGY_TOTAL, "echargeTotal", "echarge1Total", battery=True),
    _today(BATTERY_DISCHARGE_ENERGY_TODAY, "edischargeToday", "edischarge1Today", battery=True),
    _total(BATTERY_DISCHARGE_ENERGY_TOTAL, "edischargeTotal", "edischarge1Total", battery=True),
    _f(GRID_IMPORT_POWER, "pacToUserTotal", mix_unit=True, meter=True),
    _f(GRID_EXPORT_POWER, "pacToGridTotal", mix_unit=True, meter=True),
    _f(LOAD_POWER, "pacToLocalLoad", "plocalLoadTotal", mix_unit=True, meter=True),
    _f(SELF_POWER, "pself", meter=True),
    _f(SYSTEM_POWER, "psystem"),
    _f(BATTERY_SOC, "bdc1Soc", "bmsSoc", "soc", "bmsSOC", scale=0.01, battery=True),
    _f(BATTERY_SOH, "bmsSoh", scale=0.01, battery=True, zero_is_absent=True),
    _f(BATTERY_VOLTAGE, "bdc1Vbat", "bmsVbat", "vbat", battery=True),
    _f(BATTERY_CURRENT, "bdc1Ibat", "bmsIbat", battery=True),
    _f(BATTERY_CHARGE_POWER, "bdc1ChargePower", "pcharge1", battery=True),
    _f(BATTERY_DISCHARGE_POWER, "bdc1DischargePower", "pdischarge1", battery=True),
    _f(EPS_POWER, "upsPac1"),
    _f(EPS_VOLTAGE, "upsVac1"),
    # Hours on classic inverters; MIN/TLX and SPH/MIX send a number of unknown unit in the same key.
    _total(OPERATING_TIME, "timeTotal", scale=3600.0, families=("inverter",)),
    _f(FAULT_CODE, "faultCode", "faultType"),
    _f(STATUS, "status"),
)

#: Keys whose non-zero value says a battery is there (all 0 on MIN/TLX units without one).
_BATTERY_PRESENT = tuple(v.norm_key(k) for k in ("bdc1Soc", "bmsSoc", "bmsSoh", "bdc1Vbat", "bmsVbat", "soc",
                                                  "vbat", "bmsSOC"))
#: Keys whose non-zero value says a grid meter is there (lifetime flows: a day without import or
#: export, or a night without load, does not hide the meter).
_METER_PRESENT = tuple(v.norm_key(k) for k in ("etoUserTotal", "etoGridTotal", "elocalLoadTotal",
                                                "pacToUserTotal", "pacToGridTotal", "pacToLocalLoad",
                                                "plocalLoadTotal"))


@dataclass
class Options:
    plant_power_unit: str = "kW"  # plant/data current_power
    mix_power_unit: str = "W"     # SPH/MIX pacToGridTotal, pacToUserTotal, pacToLocalLoad
    power_max_age: float = 900.0  # live values older than this are left out
    stale_power: str = "absent"   # "zero": stale powers are 0 W instead (inverters are off at night)


@dataclass
class DeviceReading:
    """One device's normalised record, with what it needs to be turned into samples."""

    plant_id: str
    device_sn: str
    family: str
    record: dict[str, Any]
    data_time: float | None
    lost: bool
    #: Values after the guards (field index -> value in base units); None = absent.
    values: dict[int, float] = field(default_factory=dict)
    #: When gridtap fetched the record (None: not known): Growatt's newest upload was already
    #: ``data_time`` then, so an old ``data_time`` at a recent fetch means the device is offline.
    fetched_at: float | None = None


def device_values(record: Mapping[str, Any], family: str) -> dict[int, float]:
    """Field index -> value in base units (SPH/MIX grid powers as sent), before guards and
    staleness: a pure function of the record."""
    battery = any((v.number(record.get(k)) or 0) != 0 for k in _BATTERY_PRESENT)
    meter = any((v.number(record.get(k)) or 0) != 0 for k in _METER_PRESENT)
    strings = {str(n) for n in range(1, 9) if _in_use(record, f"vpv{n}", f"ppv{n}", f"epv{n}total")}
    phases = {"1"} | {p for p, (a, b) in _PHASE_KEYS.items()
                      if _in_use(record, f"vac{a}", f"vac{b}", f"pac{a}", f"pac{b}")}
    out: dict[int, float] = {}
    for i, f in enumerate(DEVICE_FIELDS):
        if (f.battery and not battery) or (f.meter and not meter):
            continue
        if (f.string and f.string not in strings) or (f.phase and f.phase not in phases):
            continue
        if f.families and family not in f.families:
            continue
        x = v.first(record, f.keys)
        if x is None or (f.zero_is_absent and x == 0):
            continue
        if f.rule in (Rule.TODAY, Rule.TOTAL) and x < 0:
            continue
        out[i] = v.denoise(x * f.scale) if f.scale != 1.0 else x
    return out


def _in_use(record: Mapping[str, Any], *keys: str) -> bool:
    return any((v.number(record.get(k)) or 0) != 0 for k in keys)


def guard_device(reading: DeviceReading, guards: v.Guards, zone: dt.tzinfo | None) -> None:
    """Run the counters of a freshly fetched reading through the guards (once per fetch)."""
    raw = device_values(reading.record, reading.family)
    when = reading.data_time
    day = v.local_date(when, zone).isoformat() if when is not None else ""
    sod = v.seconds_into_day(when, zone) if when is not None else 0.0
    kept: dict[int, float] = {}
    for i, x in raw.items():
        f = DEVICE_FIELDS[i]
        series = f"{reading.device_sn}/{f.metric.name}/{dict(f.labels)}"
        if f.rule is Rule.TOTAL:
            y = guards.total(series, x)
        elif f.rule is Rule.TODAY and when is not None:
            y = guards.today(series, x, day, sod)
        else:
            y = x
        if y is not None:
            kept[i] = y
    reading.values = kept


def device_metrics(reading: DeviceReading, options: Options, now: float, zone: dt.tzinfo | None) -> list[Metric]:
    """The samples of one device reading as served at ``now``."""
    labels = {"plant_id": reading.plant_id, "device_sn": reading.device_sn}
    live_ok = (not reading.lost and reading.data_time is not None
               and now - reading.data_time <= options.power_max_age)
    today_ok = reading.data_time is not None and v.local_date(reading.data_time, zone) == v.local_date(now, zone)
    out: list[Metric] = []
    mix_scale = 1000.0 if reading.family == "mix" and options.mix_power_unit == "kW" else 1.0
    for i, x in reading.values.items():
        f = DEVICE_FIELDS[i]
        if f.rule is Rule.LIVE and not live_ok:
            if options.stale_power != "zero" or f.metric.unit != "watts":
                continue
            x = 0.0  # asked for: a night without a reading is 0 W, not a gap
        if f.rule is Rule.TODAY and not today_ok:
            continue
        if f.mix_unit and mix_scale != 1.0:
            x = v.denoise(x * mix_scale)
        value: float | int = int(x) if f.metric.integer else x
        out.append(f.metric(value, **labels, **dict(f.labels)))
    offline = reading.lost or (reading.fetched_at is not None and reading.data_time is not None
                               and reading.fetched_at - reading.data_time > options.power_max_age)
    codes = {DEVICE_FIELDS[i].metric: x for i, x in reading.values.items()
             if DEVICE_FIELDS[i].metric in (STATUS, FAULT_CODE)} if live_ok else {}
    out += status_metrics(codes.get(STATUS), codes.get(FAULT_CODE), offline and not live_ok, labels)
    if reading.data_time is not None:
        out.append(DATA_TIMESTAMP(reading.data_time, **labels))
    return out


def status_metrics(status: float | None, fault_code: float | None, offline: bool,
                   labels: Mapping[str, str]) -> list[Metric]:
    """The status in words and the fault flag, from a live status and fault code; "offline"
    (and no fault flag: nothing is known of one) for a device that uploads nothing."""
    if offline:
        return [DEVICE_STATE("offline", **labels)]
    out: list[Metric] = []
    state = STATUS_STATES.get(int(status), "unknown") if status is not None else None
    if state is not None:
        out.append(DEVICE_STATE(state, **labels))
    # The status decides: a fault code next to a normal status is a latched or past one (the code
    # stays a diagnostic); only a device without a status is judged by its code.
    if state is not None:
        out.append(FAULT_ACTIVE(int(state == "fault"), **labels))
    elif fault_code is not None:
        out.append(FAULT_ACTIVE(int(fault_code > 0), **labels))
    return out


# --- plant ------------------------------------------------------------------------------------------


def plant_metrics(plant_id: str, record: Mapping[str, Any], options: Options, now: float,
                  zone: dt.tzinfo | None) -> list[Metric]:
    """plant/data (normalised record, already through :func:`guard_plant`) -> samples."""
    out: list[Metric] = []
    when = v.parse_local_time(record.get("lastupdatetime"), zone)
    power = v.first(record, ("currentpower",))
    fresh = when is None or now - when <= options.power_max_age
    if power is not None and fresh:
        out.append(PLANT_POWER(v.denoise(power * (1000.0 if options.plant_power_unit == "kW" else 1.0)),
                               plant_id=plant_id))
    elif power is not None and options.stale_power == "zero":
        out.append(PLANT_POWER(0.0, plant_id=plant_id))
    # A day's, month's or year's energy is only shown in the period it belongs to.
    then, today = (v.local_date(when, zone) if when is not None else None), v.local_date(now, zone)
    periods = {
        PLANT_ENERGY_TODAY: then is None or then == today,
        PLANT_ENERGY_MONTH: then is None or (then.year, then.month) == (today.year, today.month),
        PLANT_ENERGY_YEAR: then is None or then.year == today.year,
        PLANT_ENERGY_TOTAL: True,
    }
    for metric, key in ((PLANT_ENERGY_TODAY, "todayenergy"), (PLANT_ENERGY_MONTH, "monthlyenergy"),
                        (PLANT_ENERGY_YEAR, "yearlyenergy"), (PLANT_ENERGY_TOTAL, "totalenergy")):
        x = v.first(record, (key,))
        if x is None or x < 0 or not periods[metric]:
            continue
        out.append(metric(v.denoise(x * KWH), plant_id=plant_id))
    peak = v.first(record, ("peakpoweractual",))
    if peak:
        out.append(PLANT_PEAK_POWER(v.denoise(peak * 1000.0), plant_id=plant_id))
    if when is not None:
        out.append(PLANT_DATA_TIMESTAMP(when, plant_id=plant_id))
    return out


def guard_plant(plant_id: str, record: dict[str, Any], guards: v.Guards, zone: dt.tzinfo | None) -> None:
    """Drop a decreasing plant total from a fresh plant/data record (in place)."""
    x = v.first(record, ("totalenergy",))
    if x is not None and guards.total(f"plant/{plant_id}/total_energy", x) is None:
        record.pop("totalenergy", None)
    when = v.parse_local_time(record.get("lastupdatetime"), zone)
    t = v.first(record, ("todayenergy",))
    if t is not None and when is not None:
        day = v.local_date(when, zone).isoformat()
        if guards.today(f"plant/{plant_id}/today_energy", t, day, v.seconds_into_day(when, zone)) is None:
            record.pop("todayenergy", None)


def plant_info(plant_id: str, info: Mapping[str, Any]) -> Metric:
    return PLANT_INFO(1, plant_id=plant_id, name=v.text(info, "name", "plantname") or "",
                      timezone=v.text(info, "timezone") or "", city=v.text(info, "city") or "",
                      country=v.text(info, "country") or "")


def device_info(plant_id: str, device: Mapping[str, Any], family: str, firmware: str = "") -> Metric:
    model = str(device.get("model") or "")
    return DEVICE_INFO(1, plant_id=plant_id, device_sn=str(device.get("device_sn", "")), family=family,
                       type=str(device.get("type", "")), model=model,
                       datalogger_sn=str(device.get("datalogger_sn") or ""), firmware=firmware,
                       name=device_name(model))


#: Growatt's model code of classic inverters (device/list ``model``, e.g. A0B0D0T0PFU1M3S4): eight
#: letter-digit pairs that describe options, not a product a person would recognise.
_MODEL_CODE = re.compile(r"A\wB\wD\wT\wP\wU\wM\wS\w", re.IGNORECASE)


def device_name(model: str) -> str:
    """What a person calls the device, for Home Assistant: "Inverter MIN 5000TL-X"; just
    "Inverter" when the model is a model code or unknown (never the serial number)."""
    model = " ".join(model.split())
    if not model or _MODEL_CODE.fullmatch(model) or model.lower() in ("unknown", "null", "none"):
        return "Inverter"
    return model if model.lower().startswith("inverter") else f"Inverter {model}"


def day_energy_metric(data: Any, extra: Mapping[str, Any]) -> Metric | None:
    """device/inverter/day_energy: ``data`` is a bare kWh number, the identifiers sit beside it
    (``datalogger_sn`` or ``dataloggerSn``)."""
    kwh = v.number(data)
    if kwh is None or kwh < 0:
        return None
    logger = extra.get("datalogger_sn") or extra.get("dataloggerSn") or ""
    return DEVICE_DAILY_ENERGY(v.denoise(kwh * KWH), device_sn=str(extra.get("device_sn") or ""),
                               datalogger_sn=str(logger))

