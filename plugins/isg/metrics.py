"""Every metric the isg plugin emits, with its display hint. No I/O.

Two sources, two naming schemes:

* **Modbus** values come from the register catalogues (``catalogues/*.yaml``), which name a
  family here for every register (``isg_outside_temperature_celsius``,
  ``isg_heat_joules_total{use="heating"}``) in base units.
* **Web** values are whatever the ISG's pages show, in the UI's language, so their names are
  data: one family per physical quantity, the row's normalised label in ``name`` and its
  section in ``section`` (``isg_web_temperature_celsius{name="vorlauftemp",section="prozesswerte"}``).
  The seed exporter's ``isg_vorlauftemp{unit="°C"}`` maps to that one to one (README.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from gridtap.model import Display, DisplayByLabel, Kind, MetricDef, display_of

P = "isg_"

_DISPLAY_UNITS = {
    "celsius": ("°C", 1), "pascals": ("bar", 2), "ratio": ("%", 0), "joules": ("kWh", 1),
    "watts": ("W", 0), "seconds": ("h", 0), "hertz": ("Hz", 1), "cubic_meters": ("L", 0),
    "cubic_meters_per_second": ("L/min", 1), "volts": ("V", 0), "amperes": ("A", 1),
}


def _unit_of(name: str) -> str:
    stem = name.removesuffix("_total")
    for unit in ("cubic_meters_per_second", "cubic_meters", "celsius", "pascals", "ratio", "joules", "watts",
                 "seconds", "hertz", "volts", "amperes"):
        if stem.endswith("_" + unit) or stem == unit:
            return unit
    return ""


def family(stem: str, help: str, *labels: str, title: str | None = None, integer: bool = False,  # noqa: A002
           unit: str | None = None, precision: int | None = None, binary: str | None = None,
           states: tuple[str, ...] = (), diagnostic: bool = False, enabled: bool = True,
           state_class: str | None = None, words: Mapping[str, Mapping[str, str]] | None = None,
           hidden: bool = False) -> MetricDef:
    """A MetricDef named ``isg_<stem>``: the unit from the name, counter if it ends ``_total``."""
    name = P + stem
    base = _unit_of(stem)
    shown, digits = _DISPLAY_UNITS.get(base, (None, None))
    kind = Kind.COUNTER if stem.endswith("_total") else Kind.STATESET if states else Kind.GAUGE
    display = Display(name=title, unit=unit or shown, precision=precision if precision is not None else digits,
                      binary=binary, diagnostic=diagnostic, enabled=enabled, state_class=state_class,
                      words=words or {}, hidden=hidden)
    return MetricDef(name, help, kind=kind, unit=base, integer=integer, states=states, label_names=labels,
                     display=display)


# --- Modbus (catalogue) families -------------------------------------------------------------
_USE = {"use": {"heating": "heating", "dhw": "hot water", "cooling": "cooling"}}
_TYPE = {"type": {"actual": "actual", "set": "set"}}
#: Words for the flags and outputs the catalogues name (Display titles of {flag}/{output}).
_FLAG_WORDS = {
    "hc1_pump": "Heating circuit 1 pump", "hc2_pump": "Heating circuit 2 pump", "dhw": "Hot water heating",
    "booster_stages": "Booster stages running", "power_off": "Power off (utility)", "utility_lock": "Utility lock",
    "silent_mode_1": "Silent mode 1", "silent_mode_2": "Silent mode 2 (heat pump off)",
}
#: Status bits that are not something running: what Home Assistant should call them.
_FLAG_CLASSES = {
    "filter_change": "problem", "filter_change_extract_air": "problem", "filter_change_supply_air": "problem",
    "service": "problem", "utility_lock": "", "power_off": "", "summer_mode": "", "silent_mode_1": "",
    "silent_mode_2": "", "switching_program": "", "heat_up_program": "",
}


def _status_flag() -> MetricDef:
    d = family("status_flag", "Operating status bit of the controller, 0 or 1 (flag), each from its own register.",
               "flag", integer=True, binary="running", title="{flag}", words={"flag": _FLAG_WORDS})
    running = display_of(d, {})
    by_flag = {flag: dataclasses.replace(running, binary=cls) for flag, cls in _FLAG_CLASSES.items()}
    return dataclasses.replace(d, display=DisplayByLabel("flag", by_flag, default=running))


OPERATING_MODES = ("emergency", "standby", "automatic", "comfort", "eco", "dhw", "day", "setback", "manual",
                   "unknown")

MODBUS: tuple[MetricDef, ...] = (
    family("outside_temperature_celsius", "Outside temperature.", title="Outside temperature"),
    family("remote_control_temperature_celsius", "Room temperature at a remote control (FE7, FEK): actual or set.",
           "remote", "type", title="{remote} {type} temperature", words={"remote": {"fe7": "FE7", "fek": "FEK"}}),
    family("remote_control_humidity_ratio", "Relative humidity at the FEK remote control.", "remote",
           title="{remote} humidity", words={"remote": {"fek": "FEK"}}),
    family("remote_control_dew_point_celsius", "Dew point at the FEK remote control.", "remote",
           title="{remote} dew point", words={"remote": {"fek": "FEK"}}),
    family("heating_circuit_temperature_celsius", "Heating circuit temperature (circuit, type=actual|set).",
           "circuit", "type", title="Heating circuit {circuit} {type} temperature"),
    family("flow_temperature_celsius", "Flow temperature (source=heat_pump|booster|system).", "source",
           title="Flow temperature {source}",
           words={"source": {"heat_pump": "heat pump", "booster": "booster", "system": ""}}),
    family("return_temperature_celsius", "Return temperature.", title="Return temperature"),
    family("fixed_value_set_temperature_celsius", "Set temperature of fixed-value operation.",
           title="Fixed-value set temperature"),
    family("buffer_temperature_celsius", "Buffer cylinder temperature (type=actual|set).", "type",
           title="Buffer {type} temperature"),
    family("heating_pressure_pascals", "Heating circuit water pressure.", title="Heating pressure"),
    family("heating_flow_rate_cubic_meters_per_second", "Heating water flow rate.", title="Heating flow rate"),
    family("dhw_temperature_celsius", "Domestic hot water temperature (type=actual|set).", "type",
           title="Hot water {type} temperature"),
    family("cooling_temperature_celsius", "Cooling temperature (circuit=fan|area, type=actual|set).",
           "circuit", "type", title="Cooling {circuit} {type} temperature"),
    family("solar_collector_temperature_celsius", "Solar collector temperature.", title="Solar collector temperature"),
    family("solar_cylinder_temperature_celsius", "Solar cylinder temperature.", title="Solar cylinder temperature"),
    family("solar_runtime_seconds_total", "Solar pump runtime.", title="Solar runtime", integer=True),
    family("external_heat_source_temperature_celsius", "External heat source temperature (type=actual|set).",
           "type", title="External heat source {type} temperature"),
    family("external_heat_source_runtime_seconds_total", "External heat source runtime.",
           title="External heat source runtime", integer=True),
    family("application_limit_temperature_celsius", "Lower application limit (use=heating|dhw).", "use",
           title="Application limit {use}", words=_USE),
    family("source_temperature_celsius", "Heat source temperature.", title="Source temperature"),
    family("source_minimum_temperature_celsius", "Minimum source temperature.", title="Minimum source temperature"),
    family("source_pressure_pascals", "Heat source pressure.", title="Source pressure"),
    family("hot_gas_temperature_celsius", "Hot gas temperature.", title="Hot gas temperature"),
    family("refrigerant_pressure_pascals", "Refrigerant pressure (side=high|low).", "side",
           title="Refrigerant {side} pressure"),
    family("heat_pump_return_temperature_celsius", "Return temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} return temperature"),
    family("heat_pump_flow_temperature_celsius", "Flow temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} flow temperature"),
    family("heat_pump_hot_gas_temperature_celsius", "Hot gas temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} hot gas temperature"),
    family("heat_pump_refrigerant_pressure_pascals", "Refrigerant pressure of one heat pump (side=low|mean|high).",
           "heat_pump", "side", title="Heat pump {heat_pump} {side} pressure"),
    family("heat_pump_water_flow_rate_cubic_meters_per_second", "Water flow rate through one heat pump.",
           "heat_pump", title="Heat pump {heat_pump} water flow"),
    family("room_temperature_celsius", "Room temperature of a heating circuit (type=actual|set).", "circuit",
           "type", title="Room {circuit} {type} temperature"),
    family("room_humidity_ratio", "Relative humidity in the room of a heating circuit.", "circuit",
           title="Room {circuit} humidity"),
    family("room_dew_point_celsius", "Dew point in the room of a heating circuit.", "circuit",
           title="Room {circuit} dew point"),
    family("room_cooling_set_temperature_celsius", "Room set temperature of a cooling circuit.", "circuit",
           title="Cooling circuit {circuit} room set temperature"),
    family("operating_mode", "Operating mode of the controller (WPM: emergency, standby, automatic, comfort, eco, "
           "dhw; LWZ adds day, setback, manual).", states=OPERATING_MODES, title="Operating mode"),
    family("heating_circuit_room_setting_celsius", "Room temperature setting of a heating circuit (mode).",
           "circuit", "mode", title="Heating circuit {circuit} {mode} setting"),
    family("heating_circuit_manual_setting_celsius", "Manual flow setting of a heating circuit.", "circuit",
           title="Heating circuit {circuit} manual setting"),
    family("heating_circuit_cooling_setting_celsius", "Room cooling setting of a heating circuit (mode=day|night).",
           "circuit", "mode", title="Heating circuit {circuit} cooling {mode} setting"),
    family("heating_curve_rise", "Heating curve gradient of a heating circuit.", "circuit",
           title="Heating curve {circuit} gradient", precision=2),
    family("heating_curve_low_end_celsius", "Heating curve low end of a heating circuit.", "circuit",
           title="Heating curve {circuit} low end"),
    family("fixed_value_operation_temperature_celsius", "Fixed-value operation temperature; absent while it "
           "is off (raw 0x9000).", title="Fixed-value operation temperature"),
    family("fixed_value_operation_on", "1 while fixed-value operation is on, 0 while off (raw 0x9000).",
           integer=True, title="Fixed-value operation", binary=""),
    family("dual_mode_temperature_celsius", "Dual-mode (bivalence) temperature (use=heating|dhw).", "use",
           title="Dual-mode temperature {use}", words=_USE),
    family("dhw_setting_celsius", "Hot water temperature setting (mode).", "mode",
           title="Hot water {mode} setting"),
    family("dhw_stages", "Hot water stages (0-6).", integer=True, title="Hot water stages"),
    family("cooling_flow_setting_celsius", "Cooling flow temperature setting (circuit).", "circuit",
           title="Cooling {circuit} flow setting"),
    family("cooling_flow_hysteresis_celsius", "Cooling flow temperature hysteresis (K) (circuit).", "circuit",
           title="Cooling {circuit} hysteresis", unit="K"),
    family("cooling_room_setting_celsius", "Cooling room temperature setting (circuit).", "circuit",
           title="Cooling {circuit} room setting"),
    family("summer_mode_auto", "Summer mode automatic (raw).", integer=True, title="Summer mode automatic"),
    family("summer_mode_outside_temperature_celsius", "Outside temperature that switches summer mode.",
           title="Summer mode outside temperature"),
    family("summer_mode_building_attenuation_celsius", "Summer mode building heat buffer.",
           title="Summer mode building attenuation"),
    _status_flag(),
    family("fault", "1 while the controller reports a system fault.", integer=True, binary="problem",
           title="Fault"),
    family("bus_status", "CAN bus status: 0 ok, -1 status error, -2 error passive, -3 bus off, -4 physical error.",
           integer=True, title="Bus status", diagnostic=True),
    family("defrost", "1 while a defrost is initiated.", integer=True, binary="running", title="Defrost"),
    family("active_fault_code", "Number of the active fault (0: none).", integer=True, title="Active fault"),
    family("message_number", "Number of the current controller message.", integer=True, title="Message number",
           diagnostic=True),
    family("output_active", "1 while a pump, mixer, booster or compressor output is on (output).", "output",
           integer=True, binary="running", title="{output}", words={"output": _FLAG_WORDS}),
    family("isg_version_part", "ISG software version, one part per sample (part).", "part", integer=True,
           title="ISG version {part}", diagnostic=True, enabled=False),
    family("heat_today_joules", "Heat produced today by all heat pumps; resets at midnight (use).", "use",
           title="Heat today {use}", words=_USE, state_class="total_increasing"),
    family("heat_joules_total", "Heat produced by all heat pumps (LOW + 1000 x HIGH kWh; lags up to a day) (use).",
           "use", title="Heat {use}", words=_USE, integer=True),
    family("booster_heat_joules_total", "Heat produced by the electric booster (use).", "use",
           title="Booster heat {use}", words=_USE, integer=True),
    family("electricity_today_joules", "Electricity used today by the heat pumps; resets at midnight (use).",
           "use", title="Electricity today {use}", words=_USE, state_class="total_increasing"),
    family("electricity_joules_total", "Electricity used by the heat pumps (lags up to a day) (use).", "use",
           title="Electricity {use}", words=_USE, integer=True),
    family("compressor_runtime_seconds_total", "Compressor runtime (use).", "use",
           title="Compressor runtime {use}", words=_USE, integer=True),
    family("booster_runtime_seconds_total", "Electric booster runtime (use).", "use",
           title="Booster runtime {use}", words=_USE, integer=True),
    family("booster_stage_runtime_seconds_total", "Electric booster runtime per stage (stage=1|2|1_2).", "stage",
           title="Booster stage {stage} runtime", integer=True),
    family("heat_pump_heat_today_joules", "Heat produced today by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} heat today {use}", words=_USE, state_class="total_increasing"),
    family("heat_pump_heat_joules_total", "Heat produced by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} heat {use}", words=_USE, integer=True),
    family("heat_pump_booster_heat_joules_total", "Booster heat of one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} booster heat {use}", words=_USE, integer=True),
    family("heat_pump_electricity_today_joules", "Electricity used today by one heat pump (use).", "heat_pump",
           "use", title="Heat pump {heat_pump} electricity today {use}", words=_USE,
           state_class="total_increasing"),
    family("heat_pump_electricity_joules_total", "Electricity used by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} electricity {use}", words=_USE, integer=True),
    family("heat_pump_compressor_runtime_seconds_total", "Compressor runtime of one heat pump (compressor=1|2|1_2, "
           "use).", "heat_pump", "compressor", "use", title="Heat pump {heat_pump} compressor {compressor} {use}",
           words=_USE, integer=True),
    family("heat_pump_cooling_runtime_seconds_total", "Cooling runtime of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} cooling runtime", integer=True),
    family("heat_pump_runtime_seconds_total", "Runtime of one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} runtime {use}", words=_USE, integer=True),
    family("inverter_power_watts", "Inverter power (inverter=IWS number).", "inverter",
           title="Inverter {inverter} power"),
    family("heat_period_joules", "Heat produced over a rolling period (period=24h|12m|13_24m, use).", "use",
           "period", title="Heat {use} {period}", words=_USE, integer=True),
    family("electricity_period_joules", "Electricity used over a rolling period (period=24h|12m|13_24m, use).",
           "use", "period", title="Electricity {use} {period}", words=_USE, integer=True),
    family("efficiency_raw", "Efficiency (COP) over a rolling period as the controller gives it; the manual "
           "documents no scale.", "use", "period", integer=True, title="Efficiency {use} {period}", enabled=False),
    family("sgready_switch", "SG Ready on (1) or off (0) (holding 4001).", integer=True, binary="",
           title="SG Ready"),
    family("sgready_input", "SG Ready input (1|2): 1 switched, 0 open (holding 4002/4003).", "input",
           integer=True, binary="", title="SG Ready input {input}"),
    family("sgready_state", "SG Ready operating state 1-4 (input 5001).", integer=True,
           title="SG Ready state"),
    family("controller_id", "Controller identification (input 5002: 103/104/551 LWZ, 390 WPM 3, 391 WPM 3i, "
           "449 WPMsystem).", integer=True, title="Controller id", diagnostic=True),
    family("sgready_enabled_setting", "SG Ready enabled (newer firmware, raw).", integer=True,
           title="SG Ready enabled setting", diagnostic=True),
    family("sgready_input_setting", "SG Ready input source (newer firmware, raw).", integer=True,
           title="SG Ready input setting", diagnostic=True),
    family("heating_buffer_setting", "Heating buffer setting (raw).", integer=True, title="Heating buffer setting",
           diagnostic=True),
    family("load_temperature_setting_celsius", "SG Ready load temperature (target).", "target",
           title="Load temperature {target}"),
    family("power_consumption_control_setting", "Power consumption control (0/1).", integer=True,
           title="Power consumption control", diagnostic=True),
    family("input_mode_setting", "SG Ready input mode (raw).", integer=True, title="Input mode",
           diagnostic=True),
    family("power_limit_setting", "Power limit setting (raw).", integer=True, title="Power limit setting",
           diagnostic=True),
    family("sgready_inputs_active", "1 while the SG Ready inputs are active (newer firmware).", integer=True,
           binary="", title="SG Ready inputs active"),
    family("sgready_bit", "SG Ready bit (1|2) as the controller sees it.", "bit", integer=True, binary="",
           title="SG Ready bit {bit}"),
    family("power_limit_watts", "Electrical power limit (limit=user|requested).", "limit",
           title="Power limit {limit}"),
    family("fan_speed_hertz", "Fan speed (air=supply|extract).", "air", title="{air} fan speed",
           words={"air": {"supply": "Supply air", "extract": "Extract air"}}),
    family("air_flow_setting_cubic_meters_per_second", "Set air flow (air=supply|extract).", "air",
           title="{air} set flow", unit="m³/h", words={"air": {"supply": "Supply air", "extract": "Extract air"}}),
    family("extract_air_humidity_ratio", "Extract air humidity.", title="Extract air humidity"),
    family("extract_air_temperature_celsius", "Extract air temperature.", title="Extract air temperature"),
    family("extract_air_dew_point_celsius", "Extract air dew point.", title="Extract air dew point"),
    family("compressor_speed_hertz", "Compressor speed.", title="Compressor speed"),
    family("mixed_water_volume_cubic_meters", "Mixed water amount.", title="Mixed water amount"),
    family("compressor_starts_total", "Compressor starts (1000 x register 31 + register 34).", integer=True,
           title="Compressor starts"),
    family("mixed_water_setting_cubic_meters", "Mixed water amount setting (mode).", "mode",
           title="Mixed water {mode} setting"),
    family("ventilation_stage_setting", "Ventilation stage 0-3 (mode=day|night|party|manual).", "mode",
           integer=True, title="Ventilation stage {mode}"),
    family("heat_recovery_today_joules", "Heat recovered today; resets at midnight.",
           title="Heat recovery today", state_class="total_increasing"),
    family("heat_recovery_joules_total", "Heat recovered.", integer=True, title="Heat recovery"),
    family("solar_heat_today_joules", "Solar heat today (use).", "use", title="Solar heat today {use}",
           words=_USE, state_class="total_increasing"),
    family("solar_heat_joules_total", "Solar heat (use).", "use", title="Solar heat {use}", words=_USE,
           integer=True),
    family("sensor_fault", "Temperature sensor fault (LWZ replacement values): 1 lead open (-60), 2 short "
           "circuit (-50), 0 ok; the temperature itself is left out (register = manual address).", "register",
           integer=True, title="Sensor fault, register {register}", diagnostic=True),
)
MODBUS_BY_STEM: dict[str, MetricDef] = {d.name[len(P):]: d for d in MODBUS}

#: For user map entries (the seed's modbus-mapping.yaml format): one family per raw name,
#: made when the file is read (see catalogue.py).

# --- Modbus diagnostics -----------------------------------------------------------------------
BLOCK_OK = family("modbus_block_ok", "1 if the last read of this register block succeeded, 0 if it failed "
                  "(block).", "block", integer=True, title="Block {block} read", diagnostic=True, binary="")
BLOCK_SUPPORTED = family(
    "modbus_block_supported", "0 once an optional register block answered exception 02 (the firmware lacks it; "
    "it is not read again), else 1 (block).", "block", integer=True, title="Block {block} supported",
    diagnostic=True, binary="")
CONTROLLER_INFO = MetricDef(P + "controller_info", "The controller the register map was chosen for.",
                            kind=Kind.INFO, label_names=("family", "controller", "id"),
                            display=Display(hidden=True))

# --- Web families -----------------------------------------------------------------------------
WEB_LABELS = ("name", "section")

#: Display names of the labels seen on real ISG pages (German and English UIs); other labels are
#: shown as written.
WEB_TITLES: dict[str, str] = {
    "aussentemperatur": "Outside temperature", "isttemperatur_hk_1": "Heating circuit 1 actual temperature",
    "solltemperatur_hk_1": "Heating circuit 1 set temperature", "isttemperatur_hk_2": "Heating circuit 2 actual "
    "temperature", "solltemperatur_hk_2": "Heating circuit 2 set temperature",
    "vorlaufisttemperatur_wp": "Heat pump flow temperature", "vorlaufisttemperatur_nhz": "Booster flow temperature",
    "ruecklaufisttemperatur_wp": "Heat pump return temperature", "festwertbetrieb": "Fixed-value operation",
    "pufferisttemperatur": "Buffer actual temperature", "puffersolltemperatur": "Buffer set temperature",
    "heizungsdruck": "Heating pressure", "volumenstrom": "Flow rate", "frostschutz": "Frost protection",
    "isttemperatur": "Actual temperature", "solltemperatur": "Set temperature",
    "bivalenztemperatur_hzg": "Dual-mode temperature heating", "bivalenztemperatur_ww": "Dual-mode temperature "
    "hot water", "untere_einsatzgrenze_hzg": "Lower application limit heating",
    "untere_einsatzgrenze_ww": "Lower application limit hot water", "sg_ready_1": "SG Ready input 1",
    "sg_ready_2": "SG Ready input 2", "heissgastemp": "Hot gas temperature", "hochdruck": "High pressure",
    "niederdruck": "Low pressure", "verdampfertemp": "Evaporator temperature",
    "verfluessigertemp": "Condenser temperature", "fortluft_ist_luefterdrehzahl": "Exhaust air fan speed",
    "fortluft_soll_volumenstrom": "Exhaust air set flow", "wm_heizen_tag": "Heat today heating",
    "wm_heizen_summe": "Heat heating", "wm_ww_tag": "Heat today hot water", "wm_ww_summe": "Heat hot water",
    "wm_ne_heizen_summe": "Booster heat heating", "wm_ne_ww_summe": "Booster heat hot water",
    "wm_wrg_tag": "Heat recovery today", "wm_wrg_summe": "Heat recovery", "p_heizung_tag": "Electricity today "
    "heating", "p_heizung_summe": "Electricity heating", "p_ww_tag": "Electricity today hot water",
    "p_ww_summe": "Electricity hot water", "verdichter_heizen": "Compressor runtime heating",
    "verdichter_ww": "Compressor runtime hot water", "elektr_ne_heizen": "Electric booster runtime heating",
    "elektr_ne_ww": "Electric booster runtime hot water", "vorlauftemp": "Flow temperature",
    "ruecklauftemp": "Return temperature", "raumisttemp_hk1": "Room 1 actual temperature",
    "raumsolltemp_hk1": "Room 1 set temperature", "ww_isttemp": "Hot water actual temperature",
    "ww_solltemp": "Hot water set temperature", "verdichterdrehzahl": "Compressor speed",
    "motorstrom": "Motor current", "motorleistung": "Motor power", "motorspannung": "Motor voltage",
    "aktuelle_zeit": "Current time", "wpm_type": "Controller type", "winter": "Winter",
    "betriebszustand_2": "Operating state 2", "letzte_laufzeit": "Last runtime",
    "set_superheating": "Set superheating", "actual_superheating_v": "Actual superheating",
    "motor_current": "Motor current", "compressor_speed_limit": "Compressor speed limit",
    "opening_exv": "Expansion valve opening", "pre_ctrl_opening_exv": "Expansion valve pre-control opening",
}


def _human(name: str) -> str:
    if name in WEB_TITLES:
        return WEB_TITLES[name]
    for known, title in WEB_TITLES.items():  # with a section prefix
        if name.endswith("_" + known):
            return f"{name[: -len(known) - 1].replace('_', ' ')} {title[:1].lower()}{title[1:]}"
    text = re.sub(r"_+", " ", name).strip()
    return text[:1].upper() + text[1:]


def _web_display(unit: str | None, precision: int | None, binary: str | None = None,
                 state_class: str | None = None, diagnostic: bool = False):  # noqa: ANN202
    def hint(labels: Mapping[str, str]) -> Display:
        return Display(name=_human(labels.get("name", "")), unit=unit, precision=precision, binary=binary,
                       state_class=state_class, diagnostic=diagnostic)
    return hint


def _web(stem: str, help: str, unit: str | None, precision: int | None, *, integer: bool = False,  # noqa: A002
         binary: str | None = None, labels: tuple[str, ...] = WEB_LABELS, state_class: str | None = None
         ) -> MetricDef:
    name = P + "web_" + stem
    kind = Kind.COUNTER if stem.endswith("_total") else Kind.GAUGE
    return MetricDef(name, help, kind=kind, unit=_unit_of(stem), integer=integer, label_names=labels,
                     display=_web_display(unit, precision, binary, state_class))


_ROW = " (name = the row's normalised label, section = its table)."
WEB_TEMPERATURE = _web("temperature_celsius", "Temperature shown on an ISG page" + _ROW, "°C", 1)
WEB_TEMPERATURE_DIFFERENCE = _web("temperature_difference_celsius", "Temperature difference (K, mK)" + _ROW,
                                  "K", 2)
WEB_PRESSURE = _web("pressure_pascals", "Pressure (bar)" + _ROW, "bar", 2)
WEB_FREQUENCY = _web("frequency_hertz", "Frequency, fan or compressor speed (Hz)" + _ROW, "Hz", 0)
WEB_RATIO = _web("ratio", "Percentage as a ratio 0-1 (%)" + _ROW, "%", 0)
WEB_ENERGY = _web("energy_joules", "Energy of a day or other period (kWh, MWh)" + _ROW, "kWh", 3,
                  state_class="total_increasing")
WEB_ENERGY_TOTAL = _web("energy_joules_total", "Energy total (a row whose label says SUMME/TOTAL; kWh, MWh)" + _ROW,
                        "kWh", 3)
WEB_POWER = _web("power_watts", "Power (kW, W)" + _ROW, "kW", 2)
WEB_RUNTIME = _web("runtime_seconds_total", "Runtime counter (h)" + _ROW, "h", 0)
WEB_DURATION = _web("duration_seconds", "Duration (min, s)" + _ROW, "min", 1)
WEB_CURRENT = _web("current_amperes", "Electric current (A)" + _ROW, "A", 1)
WEB_VOLTAGE = _web("voltage_volts", "Voltage (V)" + _ROW, "V", 0)
WEB_FLOW = _web("flow_cubic_meters_per_second", "Volume flow (l/min, m³/h)" + _ROW, "L/min", 2)
WEB_VOLUME = _web("volume_cubic_meters", "Volume (l, m³)" + _ROW, "L", 0)
WEB_TIME_OF_DAY = _web("time_of_day_seconds", "Clock time shown as H.M, in seconds after midnight (the ISG "
                       "writes decimal hours: 21,88 = 21:52:48)" + _ROW, "h", 2)  # shown as the ISG shows it
WEB_VALUE = _web("value", "A number without a unit" + _ROW, None, 2)
WEB_SWITCH = _web("switch", "A value shown as a word: 1 for Ein/On, 0 for Aus/Off" + _ROW, None, None,
                  integer=True, binary="")
WEB_FLAG = _web("flag", "A status icon row: 1 while shown, 0 once it disappeared (kept for the life of the "
                "process)" + _ROW, None, None, integer=True, binary="running")
WEB_OTHER = _web("other_value", "A number with a unit gridtap does not convert (unit label)" + _ROW, None, 2,
                 labels=(*WEB_LABELS, "unit"))

WEB_PAGE_OK = family("web_page_ok", "1 if the last read of this ISG page (page = the ?s= id) gave data, 0 if "
                     "it failed.", "page", integer=True, title="Page {page} read", diagnostic=True, binary="")
WEB_LOGINS = family("web_logins_total", "Logins into the ISG web UI (first, rollover and after an expired "
                    "session).", integer=True, title="Web logins", diagnostic=True)

WEB: tuple[MetricDef, ...] = (
    WEB_TEMPERATURE, WEB_TEMPERATURE_DIFFERENCE, WEB_PRESSURE, WEB_FREQUENCY, WEB_RATIO, WEB_ENERGY,
    WEB_ENERGY_TOTAL, WEB_POWER, WEB_RUNTIME, WEB_DURATION, WEB_CURRENT, WEB_VOLTAGE, WEB_FLOW, WEB_VOLUME,
    WEB_TIME_OF_DAY, WEB_VALUE, WEB_SWITCH, WEB_FLAG, WEB_OTHER,
)

# --- SGReady --------------------------------------------------------------------------------
SGREADY_ACTION = family("sgready_action_total", "SGReady requests carried out through the Alertmanager "
                        "webhook (action=lock|normal|active|force|unknown).", "action", integer=True,
                        title="SGReady {action} requests", diagnostic=True)
SGREADY_ERROR = family("sgready_error_total", "SGReady webhook requests that failed (bad payload or a write "
                       "the device did not take).", integer=True, title="SGReady errors", diagnostic=True)
SGREADY_REQUESTED = family("sgready_requested_state", "The SGReady state (1-4) this process keeps asserting; "
                           "absent while nothing was requested.", integer=True, title="SGReady requested state",
                           diagnostic=True)
SGREADY_WRITES = family("sgready_writes_total", "SGReady input writes that the device acknowledged (requests "
                        "and periodic re-assertions).", integer=True, title="SGReady writes", diagnostic=True)

DIAGNOSTICS: tuple[MetricDef, ...] = (
    BLOCK_OK, BLOCK_SUPPORTED, CONTROLLER_INFO, WEB_PAGE_OK, WEB_LOGINS, SGREADY_ACTION, SGREADY_ERROR,
    SGREADY_REQUESTED, SGREADY_WRITES,
)

ALL: tuple[MetricDef, ...] = MODBUS + WEB + DIAGNOSTICS
