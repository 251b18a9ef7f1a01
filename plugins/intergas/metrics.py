"""Intergas metric definitions and the mapping from decoded dicts to samples. No I/O.

Device units are converted to Prometheus base units here, once: °C stays celsius, bar →
pascals (×1e5), rpm → hertz (÷60), percent → ratio (÷100), µA → amperes (×1e-6), hours →
seconds (×3600), m³ stays cubic_meters, l/min → cubic_meters_per_second (÷60000).
Label values keep the seed exporter's words (aanvoer, flow, retour, warmwater, line_power…)
so its dashboards translate one to one (see README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridtap.model import Display, DisplayByLabel, Kind, Metric, MetricDef

from .reference import DISPLAY_STATES, FLAGS1, FLAGS2, PARAMETERS

P = "intergas_"

TEMPERATURE = MetricDef(
    P + "temperature_celsius", "Boiler temperature sensors and the CH setpoint (label sensor)",
    unit="celsius", label_names=("sensor",),
    display=DisplayByLabel("sensor", {
        # t1 is the heat-exchanger sensor in most sources; the seed's "aanvoer" (supply) is kept as the label.
        "aanvoer": Display(name="Heat exchanger temperature", precision=1, diagnostic=True),
        "flow": Display(name="Flow temperature", precision=1),
        "retour": Display(name="Return temperature", precision=1),
        "warmwater": Display(name="Hot water temperature", precision=1),
        "boiler": Display(name="Storage tank temperature", precision=1),
        "buiten": Display(name="Outside temperature", precision=1),
        "set": Display(name="Flow setpoint", precision=1),
    }, default=Display(name="Temperature {sensor}", precision=1, diagnostic=True)),
)
WATER_PRESSURE = MetricDef(P + "water_pressure_pascals", "CH water pressure", unit="pascals",
                           display=Display(name="Water pressure", unit="bar", precision=2))
FAN_SPEED = MetricDef(
    P + "fan_speed_hertz", "Fan speed, revolutions per second (rpm / 60); type=set|measured",
    unit="hertz", label_names=("type",),
    display=DisplayByLabel("type", {
        "measured": Display(name="Fan speed", unit="rpm", precision=0, diagnostic=True),
        "set": Display(name="Fan speed setpoint", unit="rpm", precision=0, diagnostic=True, enabled=False),
    }, default=Display(name="Fan speed {type}", unit="rpm", precision=0, diagnostic=True, enabled=False)),
)
FAN_PWM = MetricDef(P + "fan_pwm_ratio", "Fan PWM duty cycle (0..1)", unit="ratio",
                    display=Display(name="Fan duty cycle", unit="%", precision=1, diagnostic=True, enabled=False))
PUMP_PWM = MetricDef(P + "pump_pwm_ratio", "Pump PWM duty cycle (0..1, (200-b)/200 unclamped)", unit="ratio",
                     display=Display(name="Pump speed", unit="%", precision=0, diagnostic=True))
IONISATION = MetricDef(P + "ionization_current_amperes", "Flame ionisation current", unit="amperes",
                       display=Display(name="Ionisation current", unit="µA", precision=1, diagnostic=True))
DISPLAY_CODE = MetricDef(
    P + "display_code", "Display code; 256 + fault code while a fault is active", integer=True,
    # The state set below says the same in words.
    display=Display(name="Display code", state_class="", diagnostic=True, enabled=False),
)
DISPLAY_STATE = MetricDef(
    P + "display_state", "Display code as a state name (fault, unknown for codes not in the table)",
    kind=Kind.STATESET, states=DISPLAY_STATES, display=Display(name="Status", words={"state": {
        "opentherm": "Heating (OpenTherm)", "boiler_ext": "External storage", "frost": "Frost protection",
        "central_heating_rf": "Heating (RF thermostat)", "tapwater_int": "Hot water", "sensortest": "Sensor test",
        "central_heating": "Heating", "central_heating_wait": "Heating (waiting)",
        "central_heating_low": "Heating (low)", "hp_error_recovery": "Recovering from an error",
        "standby": "Standby", "off": "Off", "postrun_boiler": "Pump overrun (storage)", "service": "Service",
        "tapwater": "Hot water (post-run)", "starting_ch": "Starting heating", "postrun_ch": "Pump overrun (heating)",
        "boiler_int": "Storage heating", "buffer": "Buffer", "fault": "Fault", "unknown": "Unknown"}}),
)
FAULT_ACTIVE = MetricDef(P + "fault_active", "1 while the boiler reports a fault (byte 27 == 0x80)", integer=True,
                         display=Display(name="Fault", binary="problem"))
LAST_FAULT = MetricDef(P + "last_fault_code", "Active or last fault code (absent when 0xFF = none)", integer=True,
                       display=Display(name="Last fault code", state_class="", diagnostic=True))
#: The 16 status flags (+ the gateway's burner): the ones a person watches are on the dashboard
#: (flame, pump, burner), the rest are diagnostics; every one is a binary sensor.
FLAG_DISPLAY = DisplayByLabel("name", {
    "io_signal": Display(name="Flame", binary=""),
    "pump": Display(name="Pump", binary="running"),
    "burner": Display(name="Burner", binary="running"),
    "gp_switch": Display(name="Gas pressure switch", binary="", diagnostic=True),
    "tap_switch": Display(name="Hot water tap", binary="running", diagnostic=True),
    "roomtherm": Display(name="Room thermostat demand", binary="heat", diagnostic=True),
    "dwk": Display(name="Three-way valve (hot water)", binary="", diagnostic=True),
    "alarm_status": Display(name="Alarm", binary="problem", diagnostic=True),
    "ch_cascade_relay": Display(name="Cascade relay", binary="", diagnostic=True, enabled=False),
    "opentherm": Display(name="OpenTherm thermostat", binary="connectivity", diagnostic=True),
    "gasvalve": Display(name="Gas valve", binary="opening", diagnostic=True),
    "spark": Display(name="Ignition spark", binary="", diagnostic=True),
    "ch_ot_disabled": Display(name="Heating blocked by thermostat", binary="", diagnostic=True, enabled=False),
    "low_water_pressure": Display(name="Low water pressure", binary="problem", diagnostic=True),
    "pressure_sensor": Display(name="Pressure sensor fitted", binary="", diagnostic=True, enabled=False),
    "burner_block": Display(name="Burner blocked", binary="problem", diagnostic=True),
    "grad_flag": Display(name="Gradient limit", binary="", diagnostic=True, enabled=False),
}, default=Display(name="Flag {name}", binary="", diagnostic=True, enabled=False))
FLAG = MetricDef(P + "flag", "Status flag bit, 0 or 1 (label name)", integer=True, label_names=("name",),
                 display=FLAG_DISPLAY)
TAP_FLOW = MetricDef(P + "tap_flow_cubic_meters_per_second", "Domestic hot water flow", unit="cubic_meters_per_second",
                     display=Display(name="Hot water flow", unit="L/min", precision=1))
#: Zone 1 is the room of a one-zone home; only a second zone says so.
_ZONE = {"zone": {"1": "", "2": " (zone 2)"}}
ROOM_TEMPERATURE = MetricDef(
    P + "room_temperature_celsius", "OpenTherm room data per zone; type=measured|setpoint|override",
    unit="celsius", label_names=("zone", "type"),
    display=DisplayByLabel("type", {
        "measured": Display(name="Room temperature{zone}", precision=1, words=_ZONE),
        "setpoint": Display(name="Room setpoint{zone}", precision=1, words=_ZONE),
        "override": Display(name="Room override setpoint{zone}", precision=1, diagnostic=True, enabled=False,
                            words=_ZONE),
    }, default=Display(name="Room temperature {type}{zone}", precision=1, diagnostic=True, words=_ZONE)),
)
OUTSIDE_OVERRIDE = MetricDef(
    P + "outside_override_temperature_celsius", "Outside temperature override from the thermostat",
    unit="celsius", display=Display(name="Outside temperature override", precision=1, diagnostic=True),
)
THERMOSTAT_INFO = MetricDef(
    P + "thermostat_info", "OpenTherm master member id and product type/version",
    kind=Kind.INFO, label_names=("member_id", "product_type", "product_version"),
)
INTERRUPT_TIME = MetricDef(P + "interrupt_time", "Burner controller interrupt time (raw / 5, unit unknown)",
                           display=Display(name="Interrupt time", precision=1, diagnostic=True, enabled=False))
LOAD = MetricDef(P + "load_ratio", "Burner controller load (type=interrupt|main)", unit="ratio", label_names=("type",),
                 display=DisplayByLabel("type", {
                     "main": Display(name="Burner modulation", unit="%", precision=0),
                     "interrupt": Display(name="Interrupt load", unit="%", precision=0, diagnostic=True,
                                          enabled=False),
                 }, default=Display(name="Load {type}", unit="%", precision=0, diagnostic=True, enabled=False)))
MAINS_FREQUENCY = MetricDef(P + "mains_frequency_hertz", "Mains frequency measured by the controller", unit="hertz",
                            display=Display(name="Mains frequency", precision=1, diagnostic=True, enabled=False))
REFERENCE_VOLTAGE = MetricDef(P + "reference_voltage_volts", "Controller reference voltage", unit="volts",
                              display=Display(name="Reference voltage", precision=2, diagnostic=True, enabled=False))
OPERATING_TIME = MetricDef(
    P + "operating_time_seconds_total", "Operating time (type=line_power|ch_function|dhw_function)",
    kind=Kind.COUNTER, unit="seconds", integer=True, label_names=("type",),
    display=DisplayByLabel("type", {
        "line_power": Display(name="Powered time", unit="h", precision=0, diagnostic=True),
        "ch_function": Display(name="Heating hours", unit="h", precision=0, diagnostic=True),
        "dhw_function": Display(name="Hot water hours", unit="h", precision=0, diagnostic=True),
    }, default=Display(name="Operating time {type}", unit="h", precision=0, diagnostic=True)),
)
POWER_DISCONNECTS = MetricDef(P + "power_disconnects_total", "Mains disconnections", kind=Kind.COUNTER, integer=True,
                              display=Display(name="Power cuts", diagnostic=True))
BURNER_STARTS = MetricDef(P + "burner_starts_total", "Burner starts (all)", kind=Kind.COUNTER, integer=True,
                          display=Display(name="Burner starts", diagnostic=True))
DHW_BURNER_STARTS = MetricDef(
    P + "dhw_burner_starts_total", "Burner starts for hot water (part of burner_starts)", kind=Kind.COUNTER,
    integer=True, display=Display(name="Burner starts (hot water)", diagnostic=True),
)
IGNITION_FAILURES = MetricDef(P + "ignition_failures_total", "Failed ignitions", kind=Kind.COUNTER, integer=True,
                              display=Display(name="Failed ignitions", diagnostic=True))
FLAME_LOSSES = MetricDef(P + "flame_losses_total", "Flame lost while burning", kind=Kind.COUNTER, integer=True,
                         display=Display(name="Flame losses", diagnostic=True))
RESETS = MetricDef(P + "resets_total", "Controller resets", kind=Kind.COUNTER, integer=True,
                   display=Display(name="Controller resets", diagnostic=True))
GAS_CONSUMED = MetricDef(
    P + "gas_consumed_cubic_meters_total", "Gas used (circuit=heating|dhw), raw / gas_meter_divisor",
    kind=Kind.COUNTER, unit="cubic_meters", label_names=("circuit",),
    display=DisplayByLabel("circuit", {
        "heating": Display(name="Gas used for heating", unit="m³", precision=3, device_class="gas"),
        "dhw": Display(name="Gas used for hot water", unit="m³", precision=3, device_class="gas"),
    }, default=Display(name="Gas used {circuit}", unit="m³", precision=3, device_class="gas")),
)
HOT_WATER = MetricDef(
    P + "hot_water_cubic_meters_total", "Domestic hot water drawn", kind=Kind.COUNTER, unit="cubic_meters",
    display=Display(name="Hot water used", unit="L", precision=0, device_class="water"),
)
#: V? parameters: the named user settings are diagnostics, the installer's service parameters
#: (param_*) exist but are disabled. Case and dots matter (param_C / param_c, param_E / param_E.).
_SETTINGS = {
    "heater_on": Display(name="Heating enabled (setting)", state_class="", diagnostic=True),
    "comfort_mode": Display(name="Comfort mode (setting)", state_class="", diagnostic=True),
    "ch_set_max": Display(name="Maximum flow temperature (setting)", unit="°C", state_class="", diagnostic=True),
    "dhw_set": Display(name="Hot water setpoint (setting)", unit="°C", state_class="", diagnostic=True),
    "eco_days": Display(name="Eco days (setting)", state_class="", diagnostic=True),
    "comfort_set": Display(name="Comfort temperature (setting)", unit="°C", state_class="", diagnostic=True),
    "dhw_at_night": Display(name="Hot water at night (setting)", state_class="", diagnostic=True),
    "ch_at_night": Display(name="Heating at night (setting)", state_class="", diagnostic=True),
}
_SERVICE_WORDS = {p: p.removeprefix("param_").replace(".", " (dot)")
                  + (" (lower case)" if p[-1].islower() and p[:-1] + p[-1].upper() in PARAMETERS else "")
                  for p in PARAMETERS if p.startswith("param_")}
PARAMETER = MetricDef(P + "parameter", "User/service parameter (V?), signed byte", integer=True, label_names=("name",),
                      display=DisplayByLabel("name", _SETTINGS, default=Display(
                          name="Service parameter {name}", words={"name": _SERVICE_WORDS}, state_class="",
                          diagnostic=True, enabled=False)))
REVISION_INFO = MetricDef(
    P + "revision_info", "Controller hardware/software release (REV)", kind=Kind.INFO,
    label_names=("hardware", "software", "controller"),
)
RF_RSSI = MetricDef(P + "rf_message_rssi", "LAN2RF gateway radio signal indicator (raw)", integer=True,
                    display=Display(name="Radio signal (raw)", diagnostic=True))
BLOCK_OK = MetricDef(
    P + "block_ok", "1 if the last read of this block (S?, S2, CRC, HN, V?, REV, lan2rf) was valid",
    integer=True, label_names=("block",),
    # "Connected" (from intergas_up) says the same for the whole boiler.
    display=Display(name="Block {block} read", binary="connectivity", diagnostic=True, enabled=False),
)

ALL: tuple[MetricDef, ...] = (
    TEMPERATURE, WATER_PRESSURE, FAN_SPEED, FAN_PWM, PUMP_PWM, IONISATION, DISPLAY_CODE, DISPLAY_STATE,
    FAULT_ACTIVE, LAST_FAULT, FLAG, TAP_FLOW, ROOM_TEMPERATURE, OUTSIDE_OVERRIDE, THERMOSTAT_INFO,
    INTERRUPT_TIME, LOAD, MAINS_FREQUENCY, REFERENCE_VOLTAGE, OPERATING_TIME, POWER_DISCONNECTS,
    BURNER_STARTS, DHW_BURNER_STARTS, IGNITION_FAILURES, FLAME_LOSSES, RESETS, GAS_CONSUMED, HOT_WATER,
    PARAMETER, REVISION_INFO, RF_RSSI, BLOCK_OK,
)

#: Serial temperature fields → label values (the seed exporter's words, plus boiler/buiten/set).
STATUS_SENSORS = (
    ("t1_aanvoer", "aanvoer"), ("t2_flow", "flow"), ("t3_retour", "retour"), ("t4_warmwater", "warmwater"),
    ("t5_boiler", "boiler"), ("t6_buiten", "buiten"), ("temp_set", "set"),
)
FLAG_NAMES = FLAGS1 + FLAGS2
PARAMETER_NAMES = PARAMETERS

#: 0x7FFF / 100 = "not available"; an unconnected NTC reads 0xEC14 (-51.00) or 0xEC27 (-50.81)
#: (spec §4), so everything at or below -50.81 is a missing sensor, not a temperature.
NOT_AVAILABLE = 327.67
UNCONNECTED = -50.81


@dataclass(frozen=True, slots=True)
class Options:
    """How decoded values become samples (from the plugin config)."""

    gas_meter_divisor: float = 10000.0
    drop_sentinels: bool = True


def _pct(value: float) -> float:
    """Percent → ratio without binary noise in the output (20.8 % → 0.208, not 0.20800000000000002)."""
    return round(value / 100, 12)


def is_sentinel(value: float) -> bool:
    return value == NOT_AVAILABLE or value <= UNCONNECTED


def _temp(value: float, opts: Options) -> bool:
    return not (opts.drop_sentinels and is_sentinel(value))


def status_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    """Samples of an ``S?`` dict. Flags are taken in the order the dict was decoded in.

    With ``drop_sentinels`` the pressure is dropped while the pressure-sensor bit (byte 28
    bit 5, normative order regardless of the flag order setting) is clear.
    """
    out = [TEMPERATURE(d[key], sensor=label) for key, label in STATUS_SENSORS if _temp(d[key], opts)]
    has_pressure_sensor = bool(d["status_flags2"] & 0x20)
    if has_pressure_sensor or not opts.drop_sentinels:
        out.append(WATER_PRESSURE(round(d["ch_pressure"] * 1e5, 6)))
    out += [
        FAN_SPEED(d["fanspeed_set_rpm"] / 60, type="set"),
        FAN_SPEED(d["fanspeed_rpm"] / 60, type="measured"),
        FAN_PWM(_pct(d["fan_pwm_pct"])),
        IONISATION(d["io_curr_uA"] / 1e6),
        DISPLAY_CODE(d["displ_code"]),
        DISPLAY_STATE(d["display_text"]),
        FAULT_ACTIVE(int(d["fault_active"])),
    ]
    if d["fault_code"] != 0xFF:
        out.append(LAST_FAULT(d["fault_code"]))
    out += [FLAG(bit, name=name) for name, bit in d["flags"].items()]
    return out


def status2_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    out = [TAP_FLOW(d["tapflow_lpm"] / 60000), PUMP_PWM(_pct(d["pump_pwm_pct"]))]
    for zone in ("1", "2"):
        for key, kind in (("room_temp_zone", "measured"), ("room_set_zone", "setpoint"),
                          ("room_override_zone", "override")):
            v = d[key + zone]
            if _temp(v, opts):
                out.append(ROOM_TEMPERATURE(v, zone=zone, type=kind))
    if _temp(d["override_outside_temp"], opts):
        out.append(OUTSIDE_OVERRIDE(d["override_outside_temp"]))
    out.append(THERMOSTAT_INFO(
        1, member_id=str(d["ot_master_member_id"]), product_type=str(d["ot_product_type"]),
        product_version=str(d["ot_product_version"]),
    ))
    return out


def crc_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    return [
        INTERRUPT_TIME(d["interrupt_time"]),
        LOAD(_pct(d["interrupt_load_pct"]), type="interrupt"),
        LOAD(_pct(d["main_load_pct"]), type="main"),
        MAINS_FREQUENCY(d["net_frequency_hz"]),
        REFERENCE_VOLTAGE(d["voltage_reference_v"]),
    ]


def counters_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    div = opts.gas_meter_divisor
    return [
        OPERATING_TIME(d["line_power_connected_hours"] * 3600, type="line_power"),
        OPERATING_TIME(d["ch_function_hours"] * 3600, type="ch_function"),
        OPERATING_TIME(d["dhw_function_hours"] * 3600, type="dhw_function"),
        POWER_DISCONNECTS(d["line_power_disconnect"]),
        BURNER_STARTS(d["burnerstarts"]),
        DHW_BURNER_STARTS(d["burnerstarts_dhw"]),
        IGNITION_FAILURES(d["ignition_failed"]),
        FLAME_LOSSES(d["flame_lost"]),
        RESETS(d["reset"]),
        GAS_CONSUMED(d["gasmeter_ch_raw"] / div, circuit="heating"),
        GAS_CONSUMED(d["gasmeter_dhw_raw"] / div, circuit="dhw"),
        HOT_WATER(d["watermeter_raw"] / 10000),
    ]


def parameters_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    return [PARAMETER(d[name], name=name) for name in PARAMETERS]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text).strip()


def revision_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    controller = {"2": "ic2", "3": "ic3"}.get(d["controller_type"], "unknown")
    return [REVISION_INFO(
        1, hardware=_printable(d["hardware_release"]), software=_printable(d["software_release"]),
        controller=controller,
    )]


BLOCK_METRICS = {
    "S?": status_metrics, "S2": status2_metrics, "CRC": crc_metrics,
    "HN": counters_metrics, "V?": parameters_metrics, "REV": revision_metrics,
}


def block_metrics(kind: str, d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    """Samples of one decoded block."""
    return BLOCK_METRICS[kind](d, opts)


def lan2rf_metrics(d: Mapping[str, Any], opts: Options = Options()) -> list[Metric]:
    """The subset a LAN2RF gateway offers (spec §17), under the serial names.

    ch_temp → sensor="aanvoer", tap_temp → sensor="warmwater"; IO bits → flags alarm_status,
    pump, tap_switch and the gateway-only ``burner``; rooms → room temperatures.
    """
    out = []
    if _temp(d["heater_temp"], opts):
        out.append(TEMPERATURE(d["heater_temp"], sensor="aanvoer"))
    if _temp(d["tap_temp"], opts):
        out.append(TEMPERATURE(d["tap_temp"], sensor="warmwater"))
    if not (opts.drop_sentinels and d["pressure"] == NOT_AVAILABLE):
        out.append(WATER_PRESSURE(round(d["pressure"] * 1e5, 6)))
    out += [
        DISPLAY_CODE(d["display_code"]),
        DISPLAY_STATE(d["display_text"]),
        FAULT_ACTIVE(int(d["is_failed"])),
        FLAG(int(d["is_failed"]), name="alarm_status"),
        FLAG(int(d["is_pumping"]), name="pump"),
        FLAG(int(d["is_tapping"]), name="tap_switch"),
        FLAG(int(d["is_burning"]), name="burner"),
        RF_RSSI(d["rf_message_rssi"]),
    ]
    if d["fault_code"] is not None:
        out.append(LAST_FAULT(d["fault_code"]))
    for room in d["rooms"]:
        zone = str(room["room"])
        out.append(ROOM_TEMPERATURE(room["room_temp"], zone=zone, type="measured"))
        for key, kind in (("setpoint", "setpoint"), ("override", "override")):
            if _temp(room[key], opts):
                out.append(ROOM_TEMPERATURE(room[key], zone=zone, type=kind))
    return out
