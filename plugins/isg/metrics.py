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
           hidden: bool = False, device_class: str | None = None, codes: Mapping[int, str] | None = None,
           by: tuple[str, Mapping[str, Mapping[str, object]]] | None = None) -> MetricDef:
    """A MetricDef named ``isg_<stem>``: the unit from the name, counter if it ends ``_total``.

    The keywords make its :class:`Display`; ``by=(label, {value: {field: ...}})`` changes fields
    of it for some values of one label (the set temperature of a circuit is a diagnostic, its
    actual temperature is not)."""
    name = P + stem
    base = _unit_of(stem)
    shown, digits = _DISPLAY_UNITS.get(base, (None, None))
    kind = Kind.COUNTER if stem.endswith("_total") else Kind.STATESET if states else Kind.GAUGE
    display: Display | DisplayByLabel = Display(
        name=title, unit=unit or shown, precision=precision if precision is not None else digits, binary=binary,
        diagnostic=diagnostic, enabled=enabled, state_class=state_class, words=words or {}, hidden=hidden,
        device_class=device_class, codes=codes or {})
    if by is not None:
        label, changes = by
        display = DisplayByLabel(label, {v: dataclasses.replace(display, **c) for v, c in changes.items()},
                                 default=display)
    return MetricDef(name, help, kind=kind, unit=base, integer=integer, states=states, label_names=labels,
                     display=display)


# --- Modbus (catalogue) families -------------------------------------------------------------
# Home Assistant (README "Home Assistant"): what a heat pump owner watches is an entity on the
# dashboard; the refrigerant circuit, per-heat-pump and per-output detail, settings (holding
# registers, named "(setting)", without statistics) and the ISG's internals are diagnostics; raw
# codes, rolling-period values and detail that repeats another entity are disabled until enabled.
_DIAG = {"diagnostic": True}
#: SG Ready states 1-4 as the sgready CLI and the webhook name them (Home Assistant shows the words).
SGREADY_STATE_WORDS = {1: "Lock", 2: "Normal", 3: "Active", 4: "Force"}
_BUS_STATUS_WORDS = {0: "OK", -1: "Status error", -2: "Error passive", -3: "Bus off", -4: "Physical error"}
_RARE = {"diagnostic": True, "enabled": False}
_SETTING = {"diagnostic": True, "state_class": ""}
_USE = {"use": {"heating": "for heating", "dhw": "for hot water", "cooling": "for cooling"}}
#: ``type`` = actual|set as a person says it: "Hot water temperature", "Hot water set temperature".
_TYPE_T = {"type": {"actual": "temperature", "set": "set temperature"}}
_SET_IS_DIAGNOSTIC = ("type", {"set": _DIAG})
_CIRCUIT = {"circuit": {"area": "area", "fan": "fan", "fan_cooling": "fan cooling",
                        **{f"cooling_{n}": f"cooling circuit {n}" for n in range(1, 6)},
                        **{str(n): f"circuit {n}" for n in range(1, 6)}}}
_PERIOD = {"period": {"24h": "last 24 h", "12m": "last 12 months", "13_24m": "13-24 months ago"}}
_MODE = {"mode": {"comfort": "comfort", "eco": "eco", "day": "day", "night": "night", "party": "party",
                  "manual": "manual"}}


def _flag(title: str, binary: str = "running", **kw: object) -> dict[str, object]:
    return {"name": title, "binary": binary, "diagnostic": False, "enabled": True, **kw}


#: The controller's status bits (WPM 2501-2503, LWZ 2001/2005): what Home Assistant calls each, and
#: whether it is on the dashboard. What the heat pump is doing (compressor, heating, hot water,
#: defrost, electric booster) and what asks for action (a filter change) are; pumps, programmes,
#: modes and the WPM 3's per-compressor bits are diagnostics.
_STATUS_FLAGS: dict[str, dict[str, object]] = {
    # WPM 2501
    "hc1_pump": _flag("Heating circuit 1 pump", **_DIAG), "hc2_pump": _flag("Heating circuit 2 pump", **_DIAG),
    "heat_up_program": _flag("Heat-up program", "", **_DIAG), "booster_stages": _flag("Electric booster"),
    "heating": _flag("Heating"), "dhw": _flag("Hot water heating"), "compressor": _flag("Compressor"),
    "summer_mode": _flag("Summer mode", "", **_DIAG), "cooling": _flag("Cooling", **_DIAG),
    "defrost": _flag("Defrost"), "silent_mode_1": _flag("Silent mode 1", "", **_DIAG),
    "silent_mode_2": _flag("Silent mode 2 (heat pump off)", "", **_DIAG),
    # WPM 2502: the utility's power-off signal (EVU-Sperre)
    "power_off": _flag("Utility lock", "", **_DIAG),
    # WPM 3 2503: one bit per compressor, buffer charging pump and booster stage (cascades)
    **{f"compressor_{n}": _flag(f"Compressor {n}", **(_DIAG if n == 1 else _RARE)) for n in range(1, 7)},
    **{f"buffer_charging_pump_{n}": _flag(f"Buffer charging pump {n}", **(_DIAG if n == 1 else _RARE))
       for n in range(1, 7)},
    "booster_1": _flag("Booster stage 1", **_DIAG), "booster_2": _flag("Booster stage 2", **_DIAG),
    # LWZ 2001 / 2005
    "switching_program": _flag("Switching program", "", **_DIAG), "electric_reheating": _flag("Electric booster"),
    "service": _flag("Service", "problem", **_DIAG), "utility_lock": _flag("Utility lock", "", **_DIAG),
    "filter_change": _flag("Filter change", "problem"), "ventilation": _flag("Ventilation", **_DIAG),
    "heating_circuit_pump": _flag("Heating circuit pump", **_DIAG), "evaporator_defrost": _flag("Defrost"),
    "filter_change_extract_air": _flag("Extract air filter change", "problem", **_DIAG),
    "filter_change_supply_air": _flag("Supply air filter change", "problem", **_DIAG),
    "stove_fireplace": _flag("Stove or fireplace", "", **_DIAG),
}

#: WPMsystem's individual outputs (2509-2566). "(output)" keeps them apart from the status bits of
#: the same pump or compressor; the ones that matter in a single-heat-pump house are enabled.
_OUTPUT_NAMES = {
    **{f"heating_circuit_pump_{n}": f"Heating circuit pump {n}" for n in range(1, 6)},
    **{f"buffer_charging_pump_{n}": f"Buffer charging pump {n}" for n in range(1, 7)},
    "dhw_charging_pump": "Hot water charging pump", "source_pump": "Source pump", "fault_output": "Fault output",
    "dhw_circulation_pump": "Hot water circulation pump",
    "second_heat_generator_dhw": "Second heat generator hot water",
    "second_heat_generator_heating": "Second heat generator heating", "cooling_mode": "Cooling mode",
    **{f"mixer_{d}_hc{n}": f"Mixer heating circuit {n} {d}" for n in range(2, 6) for d in ("open", "close")},
    "booster_1": "Booster stage 1", "booster_2": "Booster stage 2", "booster_1_2": "Booster stages 1+2",
    "diff_controller_pump_1": "Differential controller pump 1",
    "diff_controller_pump_2": "Differential controller pump 2",
    "pool_pump_primary": "Pool pump primary", "pool_pump_secondary": "Pool pump secondary",
    **{f"compressor_{n}": f"Compressor {n}" for n in range(1, 7)},
    **{f"source_pump_{n}": f"Source pump {n}" for n in range(1, 7)},
}
_OUTPUTS_ENABLED = frozenset({"heating_circuit_pump_1", "buffer_charging_pump_1", "dhw_charging_pump", "source_pump",
                              "fault_output", "dhw_circulation_pump", "second_heat_generator_dhw",
                              "second_heat_generator_heating", "booster_1", "booster_2", "booster_1_2", "compressor_1"})


def _status_flag() -> MetricDef:
    d = family("status_flag", "Operating status bit of the controller, 0 or 1 (flag), each from its own register.",
               "flag", integer=True, binary="running", title="{flag}", diagnostic=True)
    base = display_of(d, {})
    by_flag = {flag: dataclasses.replace(base, **spec) for flag, spec in _STATUS_FLAGS.items()}
    return dataclasses.replace(d, display=DisplayByLabel("flag", by_flag, default=base))


def _output_active() -> MetricDef:
    d = family("output_active", "1 while a pump, mixer, booster or compressor output is on (output).", "output",
               integer=True, binary="running", title="{output} (output)", **_RARE)
    base = display_of(d, {})
    by_output = {o: dataclasses.replace(base, name=f"{title} (output)", enabled=o in _OUTPUTS_ENABLED)
                 for o, title in _OUTPUT_NAMES.items()}
    return dataclasses.replace(d, display=DisplayByLabel("output", by_output, default=base))


OPERATING_MODES = ("emergency", "standby", "automatic", "comfort", "eco", "dhw", "day", "setback", "manual",
                   "unknown")
_OPERATING_MODE_WORDS = {"state": {"emergency": "Emergency", "standby": "Standby", "automatic": "Automatic",
                                   "comfort": "Comfort", "eco": "Eco", "dhw": "Hot water", "day": "Day",
                                   "setback": "Setback", "manual": "Manual", "unknown": "Unknown"}}
#: SG Ready load temperatures worth seeing without enabling them.
_LOAD_TARGETS = {"target": {"hc1": "heating circuit 1", "hc2": "heating circuit 2", "dhw": "hot water",
                            "hc1_2": "heating circuit 1, second", "hc2_2": "heating circuit 2, second",
                            "hc3": "heating circuit 3", "hc4": "heating circuit 4", "hc5": "heating circuit 5",
                            "buffer": "buffer", "dhw_2": "hot water, second"}}

#: The LWZ's temperature sensors by manual address (sensor faults name the sensor, not the register).
_LWZ_SENSORS = {"register": {
    "1": "room temperature circuit 1", "2": "room set temperature circuit 1", "4": "room temperature circuit 2",
    "5": "room set temperature circuit 2", "7": "outside temperature", "8": "heating circuit 1 temperature",
    "9": "heating circuit 1 set temperature", "10": "heating circuit 2 temperature",
    "11": "heating circuit 2 set temperature", "12": "flow temperature", "13": "return temperature",
    "16": "hot water temperature", "17": "hot water set temperature", "23": "extract air temperature",
    "24": "extract air dew point", "25": "dew point circuit 1", "26": "dew point circuit 2",
    "27": "solar collector temperature", "28": "hot gas temperature"}}

MODBUS: tuple[MetricDef, ...] = (
    family("outside_temperature_celsius", "Outside temperature.", title="Outside temperature"),
    family("remote_control_temperature_celsius", "Room temperature at a remote control (FE7, FEK): actual or set.",
           "remote", "type", title="{remote} {type}", words={"remote": {"fe7": "FE7", "fek": "FEK"}, **_TYPE_T},
           by=_SET_IS_DIAGNOSTIC),
    family("remote_control_humidity_ratio", "Relative humidity at the FEK remote control.", "remote",
           title="{remote} humidity", words={"remote": {"fek": "FEK"}}, device_class="humidity"),
    family("remote_control_dew_point_celsius", "Dew point at the FEK remote control.", "remote",
           title="{remote} dew point", words={"remote": {"fek": "FEK"}}, **_DIAG),
    family("heating_circuit_temperature_celsius", "Heating circuit temperature (circuit, type=actual|set).",
           "circuit", "type", title="Heating circuit {circuit} {type}", words=_TYPE_T, by=_SET_IS_DIAGNOSTIC),
    family("flow_temperature_celsius", "Flow temperature (source=heat_pump|booster|system).", "source",
           title="{source}flow temperature",
           words={"source": {"heat_pump": "Heat pump ", "booster": "Booster ", "system": ""}},
           by=("source", {"heat_pump": _DIAG, "booster": _DIAG})),
    family("return_temperature_celsius", "Return temperature.", title="Return temperature"),
    family("fixed_value_set_temperature_celsius", "Set temperature of fixed-value operation.",
           title="Fixed-value set temperature", **_DIAG),
    family("buffer_temperature_celsius", "Buffer cylinder temperature (type=actual|set).", "type",
           title="Buffer {type}", words=_TYPE_T, **_DIAG),
    family("heating_pressure_pascals", "Heating circuit water pressure.", title="Heating pressure"),
    family("heating_flow_rate_cubic_meters_per_second", "Heating water flow rate.", title="Heating flow rate",
           **_DIAG),
    family("dhw_temperature_celsius", "Domestic hot water temperature (type=actual|set).", "type",
           title="Hot water {type}", words=_TYPE_T),
    family("cooling_temperature_celsius", "Cooling temperature (circuit=fan|area, type=actual|set).",
           "circuit", "type", title="Cooling {circuit} {type}", words={**_CIRCUIT, **_TYPE_T}, **_DIAG),
    family("solar_collector_temperature_celsius", "Solar collector temperature.", title="Solar collector temperature"),
    family("solar_cylinder_temperature_celsius", "Solar cylinder temperature.", title="Solar cylinder temperature",
           **_DIAG),
    family("solar_runtime_seconds_total", "Solar pump runtime.", title="Solar pump runtime", integer=True, **_DIAG),
    family("external_heat_source_temperature_celsius", "External heat source temperature (type=actual|set).",
           "type", title="External heat source {type}", words=_TYPE_T, **_DIAG),
    family("external_heat_source_runtime_seconds_total", "External heat source runtime.",
           title="External heat source runtime", integer=True, **_DIAG),
    family("application_limit_temperature_celsius", "Lower application limit (use=heating|dhw).", "use",
           title="Lower application limit {use} (setting)", words=_USE, **_SETTING),
    family("source_temperature_celsius", "Heat source temperature.", title="Source temperature", **_DIAG),
    family("source_minimum_temperature_celsius", "Minimum source temperature.", title="Minimum source temperature",
           **_DIAG),
    family("source_pressure_pascals", "Heat source pressure.", title="Source pressure", **_DIAG),
    family("hot_gas_temperature_celsius", "Hot gas temperature.", title="Hot gas temperature", **_DIAG),
    family("refrigerant_pressure_pascals", "Refrigerant pressure (side=high|low).", "side",
           title="Refrigerant {side} pressure", **_DIAG),
    family("heat_pump_return_temperature_celsius", "Return temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} return temperature", **_DIAG),
    family("heat_pump_flow_temperature_celsius", "Flow temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} flow temperature", **_DIAG),
    family("heat_pump_hot_gas_temperature_celsius", "Hot gas temperature of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} hot gas temperature", **_DIAG),
    family("heat_pump_refrigerant_pressure_pascals", "Refrigerant pressure of one heat pump (side=low|mean|high).",
           "heat_pump", "side", title="Heat pump {heat_pump} {side} pressure", **_DIAG),
    family("heat_pump_water_flow_rate_cubic_meters_per_second", "Water flow rate through one heat pump.",
           "heat_pump", title="Heat pump {heat_pump} water flow", **_DIAG),
    family("room_temperature_celsius", "Room temperature of a heating circuit (type=actual|set).", "circuit",
           "type", title="Room {type} ({circuit})", words={**_CIRCUIT, **_TYPE_T}, by=_SET_IS_DIAGNOSTIC),
    family("room_humidity_ratio", "Relative humidity in the room of a heating circuit.", "circuit",
           title="Room humidity ({circuit})", words=_CIRCUIT, device_class="humidity"),
    family("room_dew_point_celsius", "Dew point in the room of a heating circuit.", "circuit",
           title="Room dew point ({circuit})", words=_CIRCUIT, **_DIAG),
    family("room_cooling_set_temperature_celsius", "Room set temperature of a cooling circuit.", "circuit",
           title="Room cooling set temperature ({circuit})", words=_CIRCUIT, **_DIAG),
    family("operating_mode", "Operating mode of the controller (WPM: emergency, standby, automatic, comfort, eco, "
           "dhw; LWZ adds day, setback, manual).", states=OPERATING_MODES, title="Operating mode",
           words=_OPERATING_MODE_WORDS),
    family("heating_circuit_room_setting_celsius", "Room temperature setting of a heating circuit (mode).",
           "circuit", "mode", title="Heating circuit {circuit} {mode} temperature (setting)", words=_MODE,
           **_SETTING),
    family("heating_circuit_manual_setting_celsius", "Manual flow setting of a heating circuit.", "circuit",
           title="Heating circuit {circuit} manual temperature (setting)", **_SETTING),
    family("heating_circuit_cooling_setting_celsius", "Room cooling setting of a heating circuit (mode=day|night).",
           "circuit", "mode", title="Heating circuit {circuit} cooling {mode} temperature (setting)", **_SETTING),
    family("heating_curve_rise", "Heating curve gradient of a heating circuit.", "circuit",
           title="Heating circuit {circuit} curve gradient (setting)", precision=2, **_SETTING),
    family("heating_curve_low_end_celsius", "Heating curve low end of a heating circuit.", "circuit",
           title="Heating circuit {circuit} curve low end (setting)", **_SETTING),
    family("fixed_value_operation_temperature_celsius", "Fixed-value operation temperature; absent while it "
           "is off (raw 0x9000).", title="Fixed-value temperature (setting)", **_SETTING),
    family("fixed_value_operation_on", "1 while fixed-value operation is on, 0 while off (raw 0x9000).",
           integer=True, title="Fixed-value operation", binary="", **_DIAG),
    family("dual_mode_temperature_celsius", "Dual-mode (bivalence) temperature (use=heating|dhw).", "use",
           title="Dual-mode temperature {use} (setting)", words=_USE, **_SETTING),
    family("dhw_setting_celsius", "Hot water temperature setting (mode).", "mode",
           title="Hot water {mode} temperature (setting)", words=_MODE, **_SETTING),
    family("dhw_stages", "Hot water stages (0-6).", integer=True, title="Hot water stages (setting)", **_SETTING),
    family("cooling_flow_setting_celsius", "Cooling flow temperature setting (circuit).", "circuit",
           title="Cooling flow temperature {circuit} (setting)", words=_CIRCUIT, **_SETTING),
    family("cooling_flow_hysteresis_celsius", "Cooling flow temperature hysteresis (K) (circuit).", "circuit",
           title="Cooling flow hysteresis {circuit} (setting)", unit="K", words=_CIRCUIT, **_SETTING),
    family("cooling_room_setting_celsius", "Cooling room temperature setting (circuit).", "circuit",
           title="Cooling room temperature {circuit} (setting)", words=_CIRCUIT, **_SETTING),
    family("summer_mode_auto", "Summer mode automatic (raw).", integer=True, title="Summer mode automatic (setting)",
           **_SETTING),
    family("summer_mode_outside_temperature_celsius", "Outside temperature that switches summer mode.",
           title="Summer mode outside temperature (setting)", **_SETTING),
    family("summer_mode_building_attenuation_celsius", "Summer mode building heat buffer.",
           title="Summer mode building attenuation (setting)", **_SETTING),
    _status_flag(),
    family("fault", "1 while the controller reports a system fault.", integer=True, binary="problem",
           title="Fault"),
    family("bus_status", "CAN bus status: 0 ok, -1 status error, -2 error passive, -3 bus off, -4 physical error.",
           integer=True, title="Bus status", diagnostic=True, state_class="", codes=_BUS_STATUS_WORDS),
    family("defrost", "1 while a defrost is initiated.", integer=True, binary="", title="Defrost initiated",
           **_DIAG),
    family("active_fault_code", "Number of the active fault (0: none).", integer=True, title="Fault code",
           diagnostic=True, state_class=""),
    family("message_number", "Number of the current controller message.", integer=True, title="Message number",
           diagnostic=True, state_class=""),
    _output_active(),
    family("isg_version_part", "ISG software version, one part per sample (part).", "part", integer=True,
           title="ISG version {part}", state_class="", **_RARE),
    family("heat_today_joules", "Heat produced today by all heat pumps; resets at midnight (use).", "use",
           title="Heat produced today {use}", words=_USE, state_class="total_increasing"),
    family("heat_joules_total", "Heat produced by all heat pumps (LOW + 1000 x HIGH kWh; lags up to a day) (use).",
           "use", title="Heat produced {use}", words=_USE, integer=True, **_DIAG),
    family("booster_heat_joules_total", "Heat produced by the electric booster (use).", "use",
           title="Booster heat {use}", words=_USE, integer=True, **_DIAG),
    family("electricity_today_joules", "Electricity used today by the heat pumps; resets at midnight (use).",
           "use", title="Electricity used today {use}", words=_USE, state_class="total_increasing"),
    family("electricity_joules_total", "Electricity used by the heat pumps (lags up to a day) (use).", "use",
           title="Electricity used {use}", words=_USE, integer=True, **_DIAG),
    family("compressor_runtime_seconds_total", "Compressor runtime (use).", "use",
           title="Compressor runtime {use}", words=_USE, integer=True, **_DIAG),
    family("booster_runtime_seconds_total", "Electric booster runtime (use).", "use",
           title="Booster runtime {use}", words=_USE, integer=True, **_DIAG),
    family("booster_stage_runtime_seconds_total", "Electric booster runtime per stage (stage=1|2|1_2).", "stage",
           title="Booster stage {stage} runtime", words={"stage": {"1_2": "1+2"}}, integer=True, **_DIAG),
    family("heat_pump_heat_today_joules", "Heat produced today by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} heat produced today {use}", words=_USE, state_class="total_increasing",
           **_RARE),
    family("heat_pump_heat_joules_total", "Heat produced by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} heat produced {use}", words=_USE, integer=True, **_RARE),
    family("heat_pump_booster_heat_joules_total", "Booster heat of one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} booster heat {use}", words=_USE, integer=True, **_RARE),
    family("heat_pump_electricity_today_joules", "Electricity used today by one heat pump (use).", "heat_pump",
           "use", title="Heat pump {heat_pump} electricity used today {use}", words=_USE,
           state_class="total_increasing", **_RARE),
    family("heat_pump_electricity_joules_total", "Electricity used by one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} electricity used {use}", words=_USE, integer=True, **_RARE),
    family("heat_pump_compressor_runtime_seconds_total", "Compressor runtime of one heat pump (compressor=1|2|1_2, "
           "use).", "heat_pump", "compressor", "use", title="Heat pump {heat_pump} compressor {compressor} runtime "
           "{use}", words={**_USE, "compressor": {"1_2": "1+2"}}, integer=True, **_DIAG),
    family("heat_pump_cooling_runtime_seconds_total", "Cooling runtime of one heat pump.", "heat_pump",
           title="Heat pump {heat_pump} cooling runtime", integer=True, **_DIAG),
    family("heat_pump_runtime_seconds_total", "Runtime of one heat pump (use).", "heat_pump", "use",
           title="Heat pump {heat_pump} runtime {use}", words=_USE, integer=True, **_DIAG),
    family("inverter_power_watts", "Inverter power (inverter=IWS number).", "inverter",
           title="Inverter {inverter} power"),
    family("heat_period_joules", "Heat produced over a rolling period (period=24h|12m|13_24m, use).", "use",
           "period", title="Heat produced {use}, {period}", words={**_USE, **_PERIOD}, integer=True,
           state_class="", **_RARE),
    family("electricity_period_joules", "Electricity used over a rolling period (period=24h|12m|13_24m, use).",
           "use", "period", title="Electricity used {use}, {period}", words={**_USE, **_PERIOD}, integer=True,
           state_class="", **_RARE),
    family("efficiency_raw", "Efficiency (COP) over a rolling period as the controller gives it; the manual "
           "documents no scale.", "use", "period", integer=True, title="Efficiency {use}, {period} (raw)",
           words={**_USE, **_PERIOD}, state_class="", **_RARE),
    family("sgready_switch", "SG Ready on (1) or off (0) (holding 4001).", integer=True, binary="",
           title="SG Ready", **_DIAG),
    family("sgready_input", "SG Ready input (1|2): 1 switched, 0 open (holding 4002/4003).", "input",
           integer=True, binary="", title="SG Ready input {input}", **_DIAG),
    family("sgready_state", "SG Ready operating state 1-4 (input 5001).", integer=True,
           title="SG Ready state", state_class="", codes=SGREADY_STATE_WORDS),
    family("controller_id", "Controller identification (input 5002: 103/104/551 LWZ, 390 WPM 3, 391 WPM 3i, "
           "449 WPMsystem).", integer=True, title="Controller id", state_class="", **_RARE),
    family("sgready_enabled_setting", "SG Ready enabled (newer firmware, raw).", integer=True,
           title="SG Ready enabled (setting)", state_class="", **_RARE),
    family("sgready_input_setting", "SG Ready input source (newer firmware, raw).", integer=True,
           title="SG Ready input source (setting)", state_class="", **_RARE),
    family("heating_buffer_setting", "Heating buffer setting (raw).", integer=True, title="Heating buffer (setting)",
           state_class="", **_RARE),
    family("load_temperature_setting_celsius", "SG Ready load temperature (target).", "target",
           title="SG Ready load temperature {target} (setting)", words=_LOAD_TARGETS, state_class="", **_RARE,
           by=("target", {"hc1": {"enabled": True}, "dhw": {"enabled": True}})),
    family("power_consumption_control_setting", "Power consumption control (0/1).", integer=True,
           title="Power consumption control (setting)", binary="", **_RARE),
    family("input_mode_setting", "SG Ready input mode (raw).", integer=True, title="SG Ready input mode (setting)",
           state_class="", **_RARE),
    family("power_limit_setting", "Power limit setting (raw).", integer=True, title="Power limit (setting)",
           state_class="", **_RARE),
    family("sgready_inputs_active", "1 while the SG Ready inputs are active (newer firmware).", integer=True,
           binary="", title="SG Ready inputs active", **_DIAG),
    family("sgready_bit", "SG Ready bit (1|2) as the controller sees it.", "bit", integer=True, binary="",
           title="SG Ready bit {bit}", **_RARE),
    family("power_limit_watts", "Electrical power limit (limit=user|requested).", "limit",
           title="Power limit {limit}", **_DIAG),
    family("fan_speed_hertz", "Fan speed (air=supply|extract).", "air", title="{air} fan speed",
           words={"air": {"supply": "Supply air", "extract": "Extract air"}}, **_DIAG),
    family("air_flow_setting_cubic_meters_per_second", "Set air flow (air=supply|extract).", "air",
           title="{air} flow (setting)", unit="m³/h", words={"air": {"supply": "Supply air", "extract": "Extract air"}},
           **_SETTING),
    family("extract_air_humidity_ratio", "Extract air humidity.", title="Extract air humidity",
           device_class="humidity"),
    family("extract_air_temperature_celsius", "Extract air temperature.", title="Extract air temperature"),
    family("extract_air_dew_point_celsius", "Extract air dew point.", title="Extract air dew point", **_DIAG),
    family("compressor_speed_hertz", "Compressor speed.", title="Compressor speed", **_DIAG),
    family("mixed_water_volume_cubic_meters", "Mixed water amount.", title="Mixed water amount", state_class="",
           **_DIAG),
    family("compressor_starts_total", "Compressor starts (1000 x register 31 + register 34).", integer=True,
           title="Compressor starts", **_DIAG),
    family("mixed_water_setting_cubic_meters", "Mixed water amount setting (mode).", "mode",
           title="Mixed water amount {mode} (setting)", words=_MODE, **_SETTING),
    family("ventilation_stage_setting", "Ventilation stage 0-3 (mode=day|night|party|manual).", "mode",
           integer=True, title="Ventilation stage {mode} (setting)", words=_MODE, **_SETTING),
    family("heat_recovery_today_joules", "Heat recovered today; resets at midnight.",
           title="Heat recovered today", state_class="total_increasing", **_DIAG),
    family("heat_recovery_joules_total", "Heat recovered.", integer=True, title="Heat recovered", **_DIAG),
    family("solar_heat_today_joules", "Solar heat today (use).", "use", title="Solar heat today {use}",
           words=_USE, state_class="total_increasing", **_DIAG),
    family("solar_heat_joules_total", "Solar heat (use).", "use", title="Solar heat {use}", words=_USE,
           integer=True, **_DIAG),
    family("sensor_fault", "Temperature sensor fault (LWZ replacement values): 1 lead open (-60), 2 short "
           "circuit (-50), 0 ok; the temperature itself is left out (register = manual address).", "register",
           integer=True, title="Sensor fault ({register})", words=_LWZ_SENSORS, diagnostic=True, state_class=""),
)
MODBUS_BY_STEM: dict[str, MetricDef] = {d.name[len(P):]: d for d in MODBUS}

#: For user map entries (the seed's modbus-mapping.yaml format): one family per raw name,
#: made when the file is read (see catalogue.py).

# --- Modbus diagnostics -----------------------------------------------------------------------
BLOCK_OK = family("modbus_block_ok", "1 if the last read of this register block succeeded, 0 if it failed "
                  "(block).", "block", integer=True, title="Block {block} read", binary="", **_RARE)
BLOCK_SUPPORTED = family(
    "modbus_block_supported", "0 once an optional register block answered exception 02 (the firmware lacks it; "
    "it is not read again), else 1 (block).", "block", integer=True, title="Block {block} supported",
    binary="", **_RARE)
CONTROLLER_INFO = MetricDef(P + "controller_info", "The controller the register map was chosen for (manufacturer "
                            "and model name the Home Assistant device).", kind=Kind.INFO,
                            label_names=("family", "controller", "id", "manufacturer", "model"),
                            display=Display(hidden=True))

# --- Web families -----------------------------------------------------------------------------
WEB_LABELS = ("name", "section")

#: Home Assistant names of the rows seen on real ISG pages (German and English UIs), and which of
#: them a heat pump owner puts on a dashboard ("dash"); every other known row is a diagnostic.
#: Rows gridtap does not know are diagnostics named "<label> (<section>)", so two rows of one label
#: in two sections never share a name. Keys are normalised labels; a (label, section) key wins
#: over the label alone (``isttemperatur`` is the hot water temperature in WARMWASSER).
_DASH, _DIAG_ROW = "dash", "diag"
WEB_ROWS: dict[str | tuple[str, str], tuple[str, str]] = {
    "aussentemperatur": ("Outside temperature", _DASH),
    "isttemperatur_hk_1": ("Heating circuit 1 temperature", _DASH),
    "isttemperatur_hk1": ("Heating circuit 1 temperature", _DASH),
    "isttemperatur_hk_2": ("Heating circuit 2 temperature", _DASH),
    "isttemperatur_hk2": ("Heating circuit 2 temperature", _DASH),
    "solltemperatur_hk_1": ("Heating circuit 1 set temperature", _DIAG_ROW),
    "solltemperatur_hk1": ("Heating circuit 1 set temperature", _DIAG_ROW),
    "solltemperatur_hk_2": ("Heating circuit 2 set temperature", _DIAG_ROW),
    "solltemperatur_hk2": ("Heating circuit 2 set temperature", _DIAG_ROW),
    "vorlaufisttemperatur_wp": ("Flow temperature", _DASH),
    "vorlaufisttemperatur_nhz": ("Booster flow temperature", _DIAG_ROW),
    "ruecklaufisttemperatur_wp": ("Return temperature", _DASH),
    "vorlauftemp": ("Flow temperature", _DASH), "ruecklauftemp": ("Return temperature", _DASH),
    "festwertbetrieb": ("Fixed-value operation", _DIAG_ROW),
    "pufferisttemperatur": ("Buffer temperature", _DIAG_ROW),
    "puffersolltemperatur": ("Buffer set temperature", _DIAG_ROW),
    "heizungsdruck": ("Heating pressure", _DASH),
    ("volumenstrom", "heizung"): ("Heating flow rate", _DIAG_ROW),
    ("volumenstrom", "warmwasser"): ("Hot water flow rate", _DIAG_ROW),
    "frostschutz": ("Frost protection temperature (setting)", _DIAG_ROW),
    ("isttemperatur", "warmwasser"): ("Hot water temperature", _DASH),
    ("solltemperatur", "warmwasser"): ("Hot water set temperature", _DASH),
    "ww_isttemp": ("Hot water temperature", _DASH), "ww_solltemp": ("Hot water set temperature", _DASH),
    "raumisttemp_hk1": ("Room temperature (circuit 1)", _DASH),
    "raumsolltemp_hk1": ("Room set temperature (circuit 1)", _DIAG_ROW),
    "bivalenztemperatur_hzg": ("Dual-mode temperature for heating (setting)", _DIAG_ROW),
    "bivalenztemperatur_ww": ("Dual-mode temperature for hot water (setting)", _DIAG_ROW),
    "untere_einsatzgrenze_hzg": ("Lower application limit for heating (setting)", _DIAG_ROW),
    "untere_einsatzgrenze_ww": ("Lower application limit for hot water (setting)", _DIAG_ROW),
    "sg_ready_1": ("SG Ready input 1", _DIAG_ROW), "sg_ready_2": ("SG Ready input 2", _DIAG_ROW),
    "heissgastemp": ("Hot gas temperature", _DIAG_ROW), "hochdruck": ("Refrigerant high pressure", _DIAG_ROW),
    "niederdruck": ("Refrigerant low pressure", _DIAG_ROW), "verdampfertemp": ("Evaporator temperature", _DIAG_ROW),
    "verfluessigertemp": ("Condenser temperature", _DIAG_ROW),
    "fortluft_ist_luefterdrehzahl": ("Exhaust air fan speed", _DIAG_ROW),
    "fortluft_soll_volumenstrom": ("Exhaust air set flow", _DIAG_ROW),
    "wm_heizen_tag": ("Heat produced today for heating", _DASH),
    "wm_ww_tag": ("Heat produced today for hot water", _DASH),
    "wm_heizen_summe": ("Heat produced for heating", _DIAG_ROW),
    "wm_ww_summe": ("Heat produced for hot water", _DIAG_ROW),
    "wm_ne_heizen_summe": ("Booster heat for heating", _DIAG_ROW),
    "wm_ne_ww_summe": ("Booster heat for hot water", _DIAG_ROW),
    "wm_wrg_tag": ("Heat recovered today", _DIAG_ROW), "wm_wrg_summe": ("Heat recovered", _DIAG_ROW),
    "p_heizung_tag": ("Electricity used today for heating", _DASH),
    "p_ww_tag": ("Electricity used today for hot water", _DASH),
    "p_heizung_summe": ("Electricity used for heating", _DIAG_ROW),
    "p_ww_summe": ("Electricity used for hot water", _DIAG_ROW),
    "verdichter_heizen": ("Compressor runtime for heating", _DIAG_ROW),
    "verdichter_ww": ("Compressor runtime for hot water", _DIAG_ROW),
    "elektr_ne_heizen": ("Booster runtime for heating", _DIAG_ROW),
    "elektr_ne_ww": ("Booster runtime for hot water", _DIAG_ROW),
    "verdichterdrehzahl": ("Compressor speed", _DIAG_ROW), "quellentemperatur": ("Source temperature", _DIAG_ROW),
    "verdichterstarts": ("Compressor starts", _DIAG_ROW), "letzte_laufzeit": ("Last runtime", _DIAG_ROW),
    "motorstrom": ("Motor current", _DIAG_ROW), "motor_current": ("Motor current", _DIAG_ROW),
    "motorleistung": ("Motor power", _DIAG_ROW), "motorspannung": ("Motor voltage", _DIAG_ROW),
    "oeffnung_exv": ("Expansion valve opening", _DIAG_ROW), "opening_exv": ("Expansion valve opening", _DIAG_ROW),
    "pre_ctrl_opening_exv": ("Expansion valve pre-control opening", _DIAG_ROW),
    "soll_ueberhitzung": ("Set superheating", _DIAG_ROW), "set_superheating": ("Set superheating", _DIAG_ROW),
    "actual_superheating_v": ("Actual superheating", _DIAG_ROW),
    "verdichterdrehzahl_grenze": ("Compressor speed limit", _DIAG_ROW),
    "compressor_speed_limit": ("Compressor speed limit", _DIAG_ROW),
    "wpm_type": ("Controller type", _DIAG_ROW), "aktuelle_zeit": ("ISG clock", _DIAG_ROW),
    ("zieltemperatur", "heizung"): ("Energy management target temperature for heating", _DIAG_ROW),
    ("zieltemperatur", "warmwasser"): ("Energy management target temperature for hot water", _DIAG_ROW),
    # icon rows (DIAGNOSE -> STATUS and the like)
    "verdichter": ("Compressor", _DASH), "heizen": ("Heating", _DASH),
    "warmwasserbereitung": ("Hot water heating", _DASH), "warmwasser": ("Hot water heating", _DASH),
    "abtauen": ("Defrost", _DASH), "verdampferabtauung": ("Defrost", _DASH),
    "elektrische_nacherwaermung": ("Electric booster", _DASH), "filterwechsel": ("Filter change", _DASH),
    "kuehlen": ("Cooling", _DIAG_ROW), "heizkreispumpe": ("Heating circuit pump", _DIAG_ROW),
    "evu_sperre": ("Utility lock", _DIAG_ROW), "sommerbetrieb": ("Summer mode", _DIAG_ROW),
    "schaltprogramm_aktiv": ("Switching program", _DIAG_ROW), "status_ok": ("Status OK", _DIAG_ROW),
    "winter": ("Winter", _DIAG_ROW), "betriebszustand_2": ("Operating state 2", _DIAG_ROW),
}
#: Icon rows that ask for action (problem), or state something rather than run (no device class).
_WEB_FLAG_CLASSES = {"filterwechsel": "problem", "evu_sperre": "", "sommerbetrieb": "", "schaltprogramm_aktiv": "",
                     "status_ok": "", "winter": "", "betriebszustand_2": ""}
#: Section titles in words (for rows gridtap does not know).
WEB_SECTIONS = {
    "heizung": "heating", "warmwasser": "hot water", "kuehlen": "cooling", "prozesswerte": "process values",
    "waermemenge": "heat", "leistungsaufnahme": "power consumption", "laufzeiten": "runtimes",
    "energiemanagement": "energy management", "elektrische_nacherwaermung": "electric booster",
    "fachmann": "installer", "waermepumpe_analyse": "heat pump analysis", "allgemein": "general",
    "inverter_heizung": "inverter heating", "inverter_warmwasser": "inverter hot water",
}


def _web_row(labels: Mapping[str, str]) -> tuple[str, str | None, str]:
    """(Home Assistant name, the known row's key or None, its role) of one web sample."""
    name, section = labels.get("name", ""), labels.get("section", "")
    keys = [name]
    if section and name.startswith(section + "_"):  # section_prefix: "<section>_<label>"
        keys.append(name[len(section) + 1:])
    for own in keys:
        for key in ((own, section), own):
            if key in WEB_ROWS:
                title, role = WEB_ROWS[key]
                return title, own, role
    text = re.sub(r"_+", " ", keys[-1]).strip()
    where = WEB_SECTIONS.get(section, re.sub(r"_+", " ", section).strip())
    title = f"{text} ({where})" if where else text
    return title[:1].upper() + title[1:], None, _DIAG_ROW


def _web_display(unit: str | None, precision: int | None, binary: str | None = None,
                 state_class: str | None = None, rare: bool = False):  # noqa: ANN202
    def hint(labels: Mapping[str, str]) -> Display:
        title, known, role = _web_row(labels)
        shown = binary
        if binary == "running" and known in _WEB_FLAG_CLASSES:
            shown = _WEB_FLAG_CLASSES[known]
        return Display(name=title, unit=unit, precision=precision, binary=shown, state_class=state_class,
                       diagnostic=rare or role != _DASH, enabled=not rare)
    return hint


def _web(stem: str, help: str, unit: str | None, precision: int | None, *, integer: bool = False,  # noqa: A002
         binary: str | None = None, labels: tuple[str, ...] = WEB_LABELS, state_class: str | None = None,
         rare: bool = False) -> MetricDef:
    name = P + "web_" + stem
    kind = Kind.COUNTER if stem.endswith("_total") else Kind.GAUGE
    return MetricDef(name, help, kind=kind, unit=_unit_of(stem), integer=integer, label_names=labels,
                     display=_web_display(unit, precision, binary, state_class, rare))


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
# A clock time is no quantity (Home Assistant has no time-of-day sensor): shown in hours as the ISG
# shows it, without statistics, disabled until someone wants it.
WEB_TIME_OF_DAY = _web("time_of_day_seconds", "Clock time shown as H.M, in seconds after midnight (the ISG "
                       "writes decimal hours: 21,88 = 21:52:48)" + _ROW, "h", 2, state_class="", rare=True)
WEB_VALUE = _web("value", "A number without a unit" + _ROW, None, 2, state_class="")
WEB_SWITCH = _web("switch", "A value shown as a word: 1 for Ein/On, 0 for Aus/Off" + _ROW, None, None,
                  integer=True, binary="")
WEB_FLAG = _web("flag", "A status icon row: 1 while shown, 0 once it disappeared (kept for the life of the "
                "process)" + _ROW, None, None, integer=True, binary="running")
WEB_OTHER = _web("other_value", "A number with a unit gridtap does not convert (unit label)" + _ROW, None, 2,
                 labels=(*WEB_LABELS, "unit"), state_class="", rare=True)
WEB_INFO = MetricDef(P + "web_info", "The brand of the ISG's web UI, from its status icons (ste-symbol: Stiebel "
                     "Eltron, tec-symbol: Tecalor); it names the Home Assistant device's manufacturer.",
                     kind=Kind.INFO, label_names=("manufacturer",), display=Display(hidden=True))

WEB_PAGE_OK = family("web_page_ok", "1 if the last read of this ISG page (page = the ?s= id) gave data, 0 if "
                     "it failed.", "page", integer=True, title="Page {page} read", binary="", **_RARE)
WEB_LOGINS = family("web_logins_total", "Logins into the ISG web UI (first, rollover and after an expired "
                    "session).", integer=True, title="Web logins", diagnostic=True)

WEB: tuple[MetricDef, ...] = (
    WEB_TEMPERATURE, WEB_TEMPERATURE_DIFFERENCE, WEB_PRESSURE, WEB_FREQUENCY, WEB_RATIO, WEB_ENERGY,
    WEB_ENERGY_TOTAL, WEB_POWER, WEB_RUNTIME, WEB_DURATION, WEB_CURRENT, WEB_VOLTAGE, WEB_FLOW, WEB_VOLUME,
    WEB_TIME_OF_DAY, WEB_VALUE, WEB_SWITCH, WEB_FLAG, WEB_OTHER, WEB_INFO,
)

# --- SGReady --------------------------------------------------------------------------------
SGREADY_ACTION = family("sgready_action_total", "SGReady requests carried out through the Alertmanager "
                        "webhook (action=lock|normal|active|force|unknown).", "action", integer=True,
                        title="SG Ready {action} requests", **_RARE)
SGREADY_ERROR = family("sgready_error_total", "SGReady webhook requests that failed (bad payload or a write "
                       "the device did not take).", integer=True, title="SG Ready errors", **_DIAG)
SGREADY_REQUESTED = family("sgready_requested_state", "The SGReady state (1-4) this process keeps asserting; "
                           "absent while nothing was requested.", integer=True, title="SG Ready requested state",
                           state_class="", codes=SGREADY_STATE_WORDS, **_DIAG)
SGREADY_WRITES = family("sgready_writes_total", "SGReady input writes that the device acknowledged (requests "
                        "and periodic re-assertions).", integer=True, title="SG Ready writes", **_DIAG)

DIAGNOSTICS: tuple[MetricDef, ...] = (
    BLOCK_OK, BLOCK_SUPPORTED, CONTROLLER_INFO, WEB_PAGE_OK, WEB_LOGINS, SGREADY_ACTION, SGREADY_ERROR,
    SGREADY_REQUESTED, SGREADY_WRITES,
)

ALL: tuple[MetricDef, ...] = MODBUS + WEB + DIAGNOSTICS
