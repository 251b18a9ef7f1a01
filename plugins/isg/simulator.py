"""A simulated ISG: its web UI (German SERVICEWELT pages behind the login) and its Modbus TCP
service (the WPM or LWZ register tables), fed by one heat-pump model so both agree.

What it reproduces, because the plugin must cope with it:

* web: the login form (a wrong password is answered 200 with the login screen again), PHP
  sessions that expire on demand (``POST /_simulator/expire``) or after N page loads, lighttpd's
  keep-alive reset (a request on a connection idle longer than ``idle_reset`` is answered with a
  TCP reset), decimal commas, MWh totals, icon-only status rows, ``<tbody>`` on some pages;
* Modbus: reads outside the documented ranges and of "missing" optional blocks answer exception
  02; unavailable objects read 0x8000; fixed-value operation reads 0x9000 (off); one energy total
  has its HIGH half unavailable; SGReady writes are honoured (the operating state follows) and
  fall back to "normal" after ``sgready_revert`` seconds, as the real ISG does.

Tests read its counters and register store in-process (:class:`IsgSimulator`) or over HTTP:
``GET /_simulator/state`` (JSON: logins, page loads, resets, Modbus writes, the SGReady
registers) and ``GET /_simulator/registers?table=holding&address=4000&count=3`` (wire addresses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import math
import re
import secrets
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gridtap.config import parse_host_port
from gridtap.errors import ConfigError, InputError
from gridtap.simulate import run_in_foreground

from . import catalogue

NOT_AVAILABLE = 0x8000
OFF = 0x9000
SGREADY_IN = {1: (0, 1), 2: (0, 0), 3: (1, 0), 4: (1, 1)}
STATE_OF_INPUTS = {v: k for k, v in SGREADY_IN.items()}
DEFAULT_IDS = {"wpm": 390, "lwz": 103}


# --- the heat pump ---------------------------------------------------------------------------
class HeatPumpModel:
    """Physical values (device units: °C, bar, l/min, kWh, h) that move with time."""

    def __init__(self, family: str = "wpm", start: float | None = None) -> None:
        self.family = family
        self.start = time.time() if start is None else start

    def values(self, now: float | None = None) -> dict[str, float]:
        t = (time.time() if now is None else now) - self.start
        wave = math.sin(2 * math.pi * t / 600)
        slow = math.sin(2 * math.pi * t / 3600)
        hours = t / 3600
        compressor = 1.0 if int(t // 300) % 3 != 2 else 0.0
        v: dict[str, float] = {
            "outside": round(4.0 + 3.0 * slow, 1),
            "flow": round(35.0 + 3.0 * wave, 1), "flow_hp": round(35.4 + 3.0 * wave, 1),
            "flow_booster": round(35.2 + 3.0 * wave, 1), "return": round(30.0 + 2.0 * wave, 1),
            "hc1_actual": round(33.0 + 0.5 * wave, 1), "hc1_set": 31.8, "hc2_actual": 28.4, "hc2_set": 28.0,
            "buffer_actual": round(33.2 + 0.4 * wave, 1), "buffer_set": 31.8,
            "dhw_actual": round(48.5 + 1.0 * slow, 1), "dhw_set": 48.0, "pressure": 1.21, "flow_rate": 8.98,
            "hot_gas": round(58.6 + 5 * wave * compressor, 1), "high_pressure": round(18.0 + 2 * wave, 2),
            "low_pressure": round(6.2 + 0.5 * wave, 2), "source": round(4.5 + slow, 1), "source_min": -5.0,
            "evaporator": round(2.0 + wave, 1), "condenser": round(36.0 + 2 * wave, 1),
            "room1_actual": round(21.2 + 0.2 * wave, 1), "room1_set": 21.0, "room1_humidity": 45.0,
            "compressor": compressor, "heating": compressor, "dhw_heating": 0.0, "hc1_pump": 1.0,
            "summer": 0.0, "fault": 0.0, "defrost": 0.0, "bus_status": 0,
            "heat_heating_day": 23.972 + 2.0 * hours, "heat_dhw_day": 20.398 + 0.5 * hours,
            "heat_heating_total": 44341 + int(2.0 * hours), "heat_dhw_total": 11314 + int(0.5 * hours),
            "booster_heating_total": 6184, "booster_dhw_total": 379,
            "el_heating_day": 6.539 + 0.5 * hours, "el_dhw_day": 5.918 + 0.1 * hours,
            "el_heating_total": 11112 + int(0.5 * hours), "el_dhw_total": 4225 + int(0.1 * hours),
            "runtime_heating": 6157 + int(hours), "runtime_dhw": 1742, "runtime_booster_heating": 810,
            "runtime_booster_dhw": 40, "compressor_starts": 12345 + int(t // 900),
            "fixed_value": 0.0,  # off
            "supply_fan": 40.0 if compressor else 30.0, "extract_fan": 42.0 if compressor else 31.0,
            "supply_flow": 150.0, "extract_flow": 160.0, "extract_humidity": 52.0,
            "heat_recovery_day": 13.068 + hours, "heat_recovery_total": 21336 + int(hours),
            "inverter_power": round(1.2 + 0.3 * wave, 2) if compressor else 0.0,
        }
        return v


# --- Modbus registers from the model ---------------------------------------------------------
#: (metric stem, labels) -> model key; catalogue registers not listed read 0x8000 (unavailable).
_MODBUS_SOURCES: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {
    ("outside_temperature_celsius", ()): "outside",
    ("heating_circuit_temperature_celsius", (("circuit", "1"), ("type", "actual"))): "hc1_actual",
    ("heating_circuit_temperature_celsius", (("circuit", "1"), ("type", "set"))): "hc1_set",
    ("heating_circuit_temperature_celsius", (("circuit", "2"), ("type", "actual"))): "hc2_actual",
    ("heating_circuit_temperature_celsius", (("circuit", "2"), ("type", "set"))): "hc2_set",
    ("flow_temperature_celsius", (("source", "heat_pump"),)): "flow_hp",
    ("flow_temperature_celsius", (("source", "booster"),)): "flow_booster",
    ("flow_temperature_celsius", (("source", "system"),)): "flow",
    ("return_temperature_celsius", ()): "return",
    ("buffer_temperature_celsius", (("type", "actual"),)): "buffer_actual",
    ("buffer_temperature_celsius", (("type", "set"),)): "buffer_set",
    ("heating_pressure_pascals", ()): "pressure",
    ("heating_flow_rate_cubic_meters_per_second", ()): "flow_rate",
    ("dhw_temperature_celsius", (("type", "actual"),)): "dhw_actual",
    ("dhw_temperature_celsius", (("type", "set"),)): "dhw_set",
    ("source_temperature_celsius", ()): "source",
    ("source_minimum_temperature_celsius", ()): "source_min",
    ("hot_gas_temperature_celsius", ()): "hot_gas",
    ("refrigerant_pressure_pascals", (("side", "high"),)): "high_pressure",
    ("refrigerant_pressure_pascals", (("side", "low"),)): "low_pressure",
    ("heat_pump_return_temperature_celsius", (("heat_pump", "1"),)): "return",
    ("heat_pump_flow_temperature_celsius", (("heat_pump", "1"),)): "flow_hp",
    ("heat_pump_hot_gas_temperature_celsius", (("heat_pump", "1"),)): "hot_gas",
    ("heat_pump_refrigerant_pressure_pascals", (("heat_pump", "1"), ("side", "high"))): "high_pressure",
    ("heat_pump_refrigerant_pressure_pascals", (("heat_pump", "1"), ("side", "low"))): "low_pressure",
    ("room_temperature_celsius", (("circuit", "1"), ("type", "actual"))): "room1_actual",
    ("room_temperature_celsius", (("circuit", "1"), ("type", "set"))): "room1_set",
    ("room_humidity_ratio", (("circuit", "1"),)): "room1_humidity",
    ("heating_circuit_room_setting_celsius", (("circuit", "1"), ("mode", "comfort"))): "room1_set",
    ("heating_circuit_room_setting_celsius", (("circuit", "1"), ("mode", "eco"))): "room_eco",
    ("heating_circuit_room_setting_celsius", (("circuit", "1"), ("mode", "day"))): "room1_set",
    ("heating_circuit_room_setting_celsius", (("circuit", "1"), ("mode", "night"))): "room_eco",
    ("heating_curve_rise", (("circuit", "1"),)): "curve",
    ("dhw_setting_celsius", (("mode", "comfort"),)): "dhw_set",
    ("dhw_setting_celsius", (("mode", "eco"),)): "dhw_eco",
    ("dhw_setting_celsius", (("mode", "day"),)): "dhw_set",
    ("dhw_setting_celsius", (("mode", "night"),)): "dhw_eco",
    ("fixed_value_operation_temperature_celsius", ()): "fixed_value",
    ("fault", ()): "fault",
    ("defrost", ()): "defrost",
    ("bus_status", ()): "bus_status",
    ("active_fault_code", ()): "zero",
    ("heat_today_joules", (("use", "heating"),)): "heat_heating_day",
    ("heat_today_joules", (("use", "dhw"),)): "heat_dhw_day",
    ("heat_joules_total", (("use", "heating"),)): "heat_heating_total",
    ("heat_joules_total", (("use", "dhw"),)): "heat_dhw_total",
    ("booster_heat_joules_total", (("use", "heating"),)): "booster_heating_total",
    # booster DHW total: LOW readable, HIGH unavailable (0x8000) - the pair must be absent.
    ("booster_heat_joules_total", (("use", "dhw"),)): "booster_dhw_total!hi_unavailable",
    ("electricity_today_joules", (("use", "heating"),)): "el_heating_day",
    ("electricity_today_joules", (("use", "dhw"),)): "el_dhw_day",
    ("electricity_joules_total", (("use", "heating"),)): "el_heating_total",
    ("electricity_joules_total", (("use", "dhw"),)): "el_dhw_total",
    ("heat_pump_heat_joules_total", (("heat_pump", "1"), ("use", "heating"))): "heat_heating_total",
    ("heat_pump_heat_joules_total", (("heat_pump", "1"), ("use", "dhw"))): "heat_dhw_total",
    ("heat_pump_compressor_runtime_seconds_total", (("compressor", "1"), ("heat_pump", "1"), ("use", "heating"))):
        "runtime_heating",
    ("heat_pump_compressor_runtime_seconds_total", (("compressor", "1"), ("heat_pump", "1"), ("use", "dhw"))):
        "runtime_dhw",
    ("compressor_runtime_seconds_total", (("use", "heating"),)): "runtime_heating",
    ("compressor_runtime_seconds_total", (("use", "dhw"),)): "runtime_dhw",
    ("booster_runtime_seconds_total", (("use", "heating"),)): "runtime_booster_heating",
    ("booster_runtime_seconds_total", (("use", "dhw"),)): "runtime_booster_dhw",
    ("compressor_starts_total", ()): "compressor_starts",
    ("fan_speed_hertz", (("air", "supply"),)): "supply_fan",
    ("fan_speed_hertz", (("air", "extract"),)): "extract_fan",
    ("air_flow_setting_cubic_meters_per_second", (("air", "supply"),)): "supply_flow",
    ("air_flow_setting_cubic_meters_per_second", (("air", "extract"),)): "extract_flow",
    ("extract_air_humidity_ratio", ()): "extract_humidity",
    ("heat_recovery_today_joules", ()): "heat_recovery_day",
    ("heat_recovery_joules_total", ()): "heat_recovery_total",
    ("inverter_power_watts", (("inverter", "1"),)): "inverter_power",
    ("ventilation_stage_setting", (("mode", "day"),)): "two",
    ("ventilation_stage_setting", (("mode", "night"),)): "one",
}
_CONSTANTS = {"room_eco": 19.0, "dhw_eco": 42.0, "curve": 0.6, "zero": 0.0, "one": 1.0, "two": 2.0}
_STATUS_BITS = {"compressor": "compressor", "heating": "heating", "dhw": "dhw_heating", "hc1_pump": "hc1_pump",
                "summer_mode": "summer", "heating_circuit_pump": "hc1_pump", "ventilation": "one"}


@dataclass
class Write:
    function: int
    address: int  # wire
    values: list[int]
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function, "address": self.address, "values": self.values, "at": self.at}


class RegisterStore:
    """What the ISG's Modbus service answers: model values through the catalogue's encoding,
    0x8000 where the model has nothing, and whatever was written (SGReady: until it reverts)."""

    def __init__(self, model: HeatPumpModel, controller: int, *, missing: set[str], sgready_revert: float,
                 operating_mode: str = "automatic", sgready_on: bool = True, busy: set[str] | None = None,
                 sgready_ignore: bool = False, sgready_unreadable: bool = False) -> None:
        self.model = model
        self.family = catalogue.family_of(controller) or model.family
        self.controller = controller
        self.catalogue = catalogue.load(self.family)
        self.compiled = catalogue.compile_map(self.catalogue, controller, catalogue.Options(sensor_faults=False))
        self.missing = missing
        self.busy = busy or set()
        self.sgready_ignore = sgready_ignore
        self.sgready_unreadable = sgready_unreadable
        self.sgready_revert = sgready_revert
        self.lock = threading.RLock()
        self.written: dict[tuple[str, int], int] = {}
        self.writes: list[Write] = []
        self.reads = 0
        self._revert_at: float | None = None
        wire = catalogue.wire_address
        self.written[("holding", wire(4001))] = 1 if sgready_on else 0
        self.written[("holding", wire(4002))] = 0
        self.written[("holding", wire(4003))] = 0
        modes = next(r.states for r in self.catalogue.registers if r.metric.name == "isg_operating_mode")
        code = next((c for c, n in modes.items() if n == operating_mode), None)
        if code is None:
            raise ConfigError("--operating-mode", f"{self.family} modes are {', '.join(modes.values())}")
        self.written[("holding", wire(1501 if self.family == "wpm" else 1001))] = code

    # --- the documented ranges, for the server's register blocks --------------------------------
    def ranges(self) -> dict[str, list[tuple[int, int]]]:
        """table -> [(first wire, count)] of every block the server answers."""
        out: dict[str, list[tuple[int, int]]] = {"input": [], "holding": []}
        for read in self.compiled.reads:
            if read.block in self.missing:
                continue
            out[read.table].append((read.wire, read.count))
        return out

    # --- values -----------------------------------------------------------------------------------
    def _model_registers(self, now: float) -> dict[tuple[str, int], int]:
        values = self.model.values(now) | _CONSTANTS
        raw: dict[tuple[str, int], int] = {}
        wire = catalogue.wire_address
        for reg in self.compiled.registers:
            key = (reg.metric.name.removeprefix("isg_"), reg.labels)
            if reg.bits is not None:
                word = 0
                for bit, name in reg.bits.items():
                    if values.get(_STATUS_BITS.get(name, ""), 0.0):
                        word |= 1 << bit
                raw[(reg.table, wire(reg.at))] = word
                continue
            if reg.metric.name == "isg_controller_id":
                raw[(reg.table, wire(reg.at))] = self.controller
                continue
            source = _MODBUS_SOURCES.get(key)
            if source is None:
                continue
            hi_unavailable = source.endswith("!hi_unavailable")
            value = values[source.removesuffix("!hi_unavailable")]
            if reg.pair is not None:
                total = int(round(value))
                raw[(reg.table, wire(reg.at))] = total % 1000
                raw[(reg.table, wire(reg.pair))] = NOT_AVAILABLE if hi_unavailable else total // 1000
                continue
            if reg.metric.name == "isg_fixed_value_operation_temperature_celsius" and not value:
                raw[(reg.table, wire(reg.at))] = OFF
                continue
            scale = {2: 10, 7: 100}.get(reg.type, 1)  # type: ignore[call-overload]
            raw[(reg.table, wire(reg.at))] = int(round(value * scale)) & 0xFFFF
        return raw

    def _revert_if_due(self, now: float) -> None:
        if self._revert_at is not None and now >= self._revert_at:
            wire = catalogue.wire_address
            self.written[("holding", wire(4002))] = 0
            self.written[("holding", wire(4003))] = 0
            self._revert_at = None

    def sgready_state(self) -> int:
        wire = catalogue.wire_address
        self._revert_if_due(time.time())
        if not self.written.get(("holding", wire(4001)), 0):
            return 2
        inputs = (self.written.get(("holding", wire(4002)), 0), self.written.get(("holding", wire(4003)), 0))
        return STATE_OF_INPUTS.get(inputs, 2)

    def snapshot(self, table: str, first: int, count: int, now: float | None = None) -> list[int]:
        """Registers ``first..first+count-1`` (wire) as a read would return them now."""
        now = time.time() if now is None else now
        with self.lock:
            self._revert_if_due(now)
            model = self._model_registers(now)
            model[("input", catalogue.wire_address(5001))] = self.sgready_state()
            out = []
            for a in range(first, first + count):
                key = (table, a)
                if self.sgready_unreadable and table == "holding" and a in (4001, 4002):
                    out.append(NOT_AVAILABLE)  # some models: the inputs read 0x8000, writes still work
                    continue
                out.append(self.written.get(key, model.get(key, NOT_AVAILABLE)))
            return out

    def busy_at(self, table: str, first: int, count: int) -> bool:
        """A read touching a block that answers exception 06 (device busy)."""
        return any(r.table == table and r.block in self.busy and first < r.wire + r.count and r.wire < first + count
                   for r in self.compiled.reads)

    def write(self, function: int, address: int, values: list[int], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            self._revert_if_due(now)
            for i, v in enumerate(values):
                if self.sgready_ignore and address + i in (4001, 4002):
                    continue  # acknowledged, not taken (SG Ready's source is not Modbus)
                self.written[("holding", address + i)] = v
            self.writes.append(Write(function, address, list(values), now))
            del self.writes[:-1000]
            if any(address <= a < address + len(values) for a in (4001, 4002)):
                self._revert_at = now + self.sgready_revert


class _ModbusServer:
    """pymodbus' TCP server on its own thread and event loop."""

    def __init__(self, store: RegisterStore, host: str, port: int) -> None:
        self.store = store
        self.host, self.port = host, port
        self.address = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _device(self) -> Any:
        from pymodbus.constants import ExcCodes
        from pymodbus.simulator import DataType, SimData, SimDevice

        store = self.store

        def blocks(table: str) -> list[Any]:
            return [SimData(first, count=count, values=NOT_AVAILABLE, datatype=DataType.REGISTERS)
                    for first, count in store.ranges()[table]] or [SimData(0, datatype=DataType.INVALID)]

        async def action(function: int, start: int, address: int, count: int, registers: list[int],
                         values: list[int] | None) -> Any:
            table = "input" if function == 4 else "holding"
            if values is not None:
                store.write(function, address, list(values))
                return None
            # a read, or the read-back pymodbus does after a write (function 6/16): answer from the store
            if store.busy_at(table, address, count):
                return ExcCodes.DEVICE_BUSY
            store.reads += 1
            registers[address - start: address - start + count] = store.snapshot(table, address, count)
            return None

        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(1, simdata=(bits, list(bits), blocks("holding"), blocks("input")), action=action)

    def start(self) -> None:
        import logging

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

        async def main() -> None:
            from pymodbus.server import ModbusTcpServer

            try:
                self._server = ModbusTcpServer(self._device(), address=(self.host, self.port))
                await self._server.serve_forever(background=True)
                sock = self._server.transport.sockets[0].getsockname()
                self.address = f"{sock[0]}:{sock[1]}"
            except BaseException as e:  # noqa: BLE001 - handed to start()
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.serving

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="isg-sim-modbus", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            self._error = TimeoutError("the server did not start within 10 s")
        if self._error is not None:
            self._thread.join(5)  # its loop has ended: nothing for stop() to shut down
            raise OSError(f"Modbus {self.host}:{self.port}: {self._error}")

    def stop(self) -> None:
        running = self._error is None and self._thread is not None and self._thread.is_alive()
        if running and self._loop is not None and self._server is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError, TimeoutError):
                asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(5)
        if self._thread is not None:
            self._thread.join(5)


# --- web pages ---------------------------------------------------------------------------------
def de(value: float, digits: int = 1) -> str:
    """A number the way the ISG writes it (decimal comma)."""
    return f"{value:.{digits}f}".replace(".", ",")


def _mwh(kwh: float) -> str:
    return de(kwh / 1000, 3) + "MWh"


def page_sections(page: str, v: dict[str, float], family: str, sgready: tuple[int, int, int],
                  controller_id: int = 390) -> list[
        tuple[str, list[tuple[str, str | None]]]]:
    """(section title, [(label, value text or None for an icon row)]) of one page."""
    in1, in2, state = sgready
    if page == "1,0":
        heating: list[tuple[str, str | None]] = [
            ("AUSSENTEMPERATUR", de(v["outside"]) + "°C"),
            ("ISTTEMPERATUR HK 1" if family == "wpm" else "ISTTEMPERATUR HK1", de(v["hc1_actual"]) + "°C"),
            ("SOLLTEMPERATUR HK 1" if family == "wpm" else "SOLLTEMPERATUR HK1", de(v["hc1_set"]) + "°C"),
            ("ISTTEMPERATUR HK 2" if family == "wpm" else "ISTTEMPERATUR HK2", de(v["hc2_actual"]) + "°C"),
            ("VORLAUFISTTEMPERATUR WP", de(v["flow_hp"]) + "°C"),
            ("RÜCKLAUFISTTEMPERATUR WP", de(v["return"]) + "°C"),
            ("FESTWERTBETRIEB", "Aus"),
            ("HEIZUNGSDRUCK", de(v["pressure"], 2) + "bar"),
            ("VOLUMENSTROM", de(v["flow_rate"], 2) + "l/min"),
        ]
        return [
            ("HEIZUNG", heating),
            ("WARMWASSER", [("ISTTEMPERATUR", de(v["dhw_actual"]) + "°C"), ("SOLLTEMPERATUR", de(v["dhw_set"]) + "°C"),
                            ("VOLUMENSTROM", de(v["flow_rate"], 2) + "l/min")]),
            ("ELEKTRISCHE NACHERWÄRMUNG", [("BIVALENZTEMPERATUR HZG", "-25,0°C"), ("UNTERE EINSATZGRENZE WW", "Aus")]),
            ("ENERGIEMANAGEMENT", [("SG READY 1", str(in1)), ("SG READY 2", str(in2)),
                                   (f"Betriebszustand {state}", None)]),
        ]
    if page == "1,1":
        process: list[tuple[str, str | None]] = [
            ("HEISSGASTEMP.", de(v["hot_gas"]) + "°C"), ("HOCHDRUCK", de(v["high_pressure"], 2) + "bar"),
            ("NIEDERDRUCK", de(v["low_pressure"], 2) + "bar "), ("VERDAMPFERTEMP.", de(v["evaporator"]) + "°C"),
            ("VERFLÜSSIGERTEMP.", de(v["condenser"]) + "°C"),
        ]
        if family == "lwz":
            process += [("FORTLUFT IST LÜFTERDREHZAHL", f"{v['extract_fan']:.0f}Hz"),
                        ("FORTLUFT SOLL VOLUMENSTROM", "55%")]
        heat = [("WM HEIZEN TAG", de(v["heat_heating_day"], 3) + "kWh"),
                ("WM HEIZEN SUMME", _mwh(v["heat_heating_total"])),
                ("WM WW TAG", de(v["heat_dhw_day"], 3) + "kWh"), ("WM WW SUMME", _mwh(v["heat_dhw_total"])),
                ("WM NE HEIZEN SUMME", _mwh(v["booster_heating_total"])),
                ("WM NE WW SUMME", _mwh(v["booster_dhw_total"]))]
        if family == "lwz":
            heat += [("WM WRG TAG", de(v["heat_recovery_day"], 3) + "kWh"),
                     ("WM WRG SUMME", _mwh(v["heat_recovery_total"]))]
        return [
            ("PROZESSWERTE", process),
            ("WÄRMEMENGE", list(heat)),
            ("LEISTUNGSAUFNAHME", [("P HEIZUNG TAG", de(v["el_heating_day"], 3) + "kWh"),
                                   ("P HEIZUNG SUMME", _mwh(v["el_heating_total"])),
                                   ("P WW TAG", de(v["el_dhw_day"], 3) + "kWh"),
                                   ("P WW SUMME", _mwh(v["el_dhw_total"]))]),
            ("LAUFZEITEN", [("VERDICHTER HEIZEN", f"{v['runtime_heating']:.0f}h"),
                            ("VERDICHTER WW", f"{v['runtime_dhw']:.0f}h"),
                            ("ELEKTR. NE HEIZEN", f"{v['runtime_booster_heating']:.0f}h"),
                            ("ELEKTR. NE WW", f"{v['runtime_booster_dhw']:.0f}h")]),
        ]
    if page == "2,0":
        flags: list[tuple[str, str | None]] = [("STATUS OK", None)] if not v["fault"] else []
        if v["compressor"]:
            flags += [("VERDICHTER", None), ("HEIZEN", None)]
        flags.append(("HEIZKREISPUMPE", None))
        return [("STATUS", flags)]
    if page == "2,1":
        return [("INBETRIEBNAHME", [("SOFTWARE-VERSION", "391-08"), ("DATUM", "12.03.2024")])]
    if page == "2,3":
        return [("FACHMANN", [("QUELLENTEMPERATUR", de(v["source"]) + "°C"), ("VERDICHTERSTARTS", "12345"),
                              ("LETZTE LAUFZEIT", de(min(v["runtime_heating"] % 60, 59.0)) + "min")])]
    if page == "2,4":
        return [("WÄRMEPUMPE ANALYSE", [("SOLL ÜBERHITZUNG", "-0,8°C"), ("ÖFFNUNG EXV", "19,4%"),
                                        ("MOTORSTROM", de(6.6 if v["compressor"] else 0.0) + "A"),
                                        ("VERDICHTERDREHZAHL GRENZE", "102,8")])]
    if page == "4,7":
        clock = (time.localtime().tm_hour + time.localtime().tm_min / 60)
        return [("ALLGEMEIN", [("AKTUELLE ZEIT", de(clock, 2) + "H.M"),
                               ("WPM TYPE", str(controller_id)),
                               ("MOTORLEISTUNG", de(v["inverter_power"], 2) + "kW")]),
                ("WARMWASSER", [("SHM LETZTES AN", "13,63H.M"), ("ZIELTEMPERATUR", "0,0°C")]),
                ("HEIZUNG", [("SHM LETZTES AN", "15,81H.M"), ("ZIELTEMPERATUR", "0,0°C"), ("WINTER", None)])]
    return []


_NAV = [("1,0", "ANLAGE"), ("1,1", "WÄRMEPUMPE"), ("2,0", "STATUS"), ("2,1", "INBETRIEBNAHME"), ("2,2", "FEHLERLISTE"),
        ("2,3", "FACHMANN"), ("4,0", "HEIZEN"), ("4,3", "ENERGIEMANAGEMENT"), ("5,3", "SPRACHE")]
_ICON = '<img height="15" src="./pics/ste-symbol_an-97b765.png" />'


def _head(user: str | None) -> str:
    login = ("" if user is None else
             f'Sie sind angemeldet als: <strong>{html.escape(user)}</strong>\n        <form method="POST" '
             'name="logout" style="display:inline;margin-left:25px;">\n          <input type="submit" alt="Logout" '
             'name="logout" value="Logout" class="logoutbutton"/>\n        </form>')
    return ('\n<?xml version="1.0"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml" '
            'lang="de">\n<head>\n\t<title>STIEBEL ELTRON Reglersteuerung</title>\n\t<meta http-equiv="Content-Type" '
            'content="text/html; charset=utf-8" />\n</head>\n<body>\n<div id="header">\n\t<div class="head curdef">'
            f'\n\t\t<div id="meta">\n\t\t\t<div id="login">\n      \t\t\t\t{login}\n      \t\t\t</div>\n\t\t</div>'
            '\n\t</div>\n</div>\n')


def render_page(page: str, sections: list[tuple[str, list[tuple[str, str | None]]]], user: str | None,
                tbody: bool = False) -> str:
    nav = "".join(f'\n\t\t\t<li><a onclick="return checkChanges(this);" href="?s={p}">{html.escape(t)}</a></li>'
                  for p, t in _NAV)
    title = dict(_NAV).get(page, "")
    parts = [_head(user), '<div class="container" id="page">\n  <div id="main" >\n    <div id="nav">\n'
             f'      <ul class="second ">{nav}\n      </ul>\n    </div>\n'
             f'        <div id="sub_nav" class="span-24"><div class="left main sifr span-9">{html.escape(title)}'
             '</div></div>\n        <form id="werte" action="#" onsubmit="saveValues(this);return false;">'
             '<div id="content">\n']
    for i, (section, rows) in enumerate(sections):
        side = 'class="span-11 append-1" style="float:left"' if i % 2 == 0 else \
            'class="span-11 prepend-1" style="float:right"'
        parts.append(f'    <div {side}><table class="info">{"<tbody>" if tbody else ""}<tr><th colspan="2" '
                     f'class="round-top">{html.escape(section)}</th></tr>')
        for j, (key, value) in enumerate(rows):
            last = j == len(rows) - 1
            key_class = "key round-leftbottom" if last else "key"
            value_class = "value round-rightbottom" if last else "value"
            cell = _ICON if value is None else html.escape(value)
            parts.append(f'  <tr class="{"even" if j % 2 == 0 else "odd"}">\n    <td class="{key_class}">'
                         f'{html.escape(key)}</td>\n    <td class="{value_class}">{cell}</td>\n  </tr>')
        parts.append(f'{"</tbody>" if tbody else ""}</table></div>')
    parts.append('<div class="span-24">&nbsp;</div>\n    </div>  </form></div>\n</div>\n'
                 '<div id="footer"><p class="right" id="versionsNummer">v12.1.1</p></div>\n</body>\n</html>')
    return "".join(parts)


def login_screen() -> str:
    return (_head(None) + '<div id="main" class="login">\n\t  <form id="werte" method="POST">\n\t\t  <div id="content">'
            '\n      \t<div class="span-24 last">\n      \t\t<div id="loginscreen">\n      \t\t\t<input type="hidden" '
            'name="make" value="send" />\n      \t\t\t<h2 class="green">Login</h2>\n      \t\t\t<p class="nothing">'
            '\n      \t\t\t\tBenutzername:<br />\n      \t\t\t\t<input type="text" name="user" />\n      \t\t\t</p>'
            '\n      \t\t\t<p class="nothing">\n      \t\t\t\tPasswort:<br />\n      \t\t\t\t<input type="password" '
            'name="pass" />\n      \t\t\t</p>\n      \t\t</div>\n      \t</div>\n      </div>\n\t  </form>\n\t</div>'
            '\n</body>\n</html>\n')


_PAGE_FILE = re.compile(r"(\d+)_(\d+)(?:_(\d+))?\.html?$")
_ACTION = re.compile(r'id="werte"[^>]*action="[^"]*\?s=([\d,]+)')


def load_replay(folder: str) -> dict[str, str]:
    """Captured pages by page id: from the file name (``sample_1_1.html``, ``2_4.html``) or the
    form's action (``?s=1,0``). Captures of the login screen are left out (the simulator has its
    own login)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--replay {folder}: not a folder")
    pages: dict[str, str] = {}
    from .page import parse_page

    for path in sorted(root.glob("*.htm*")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parsed = parse_page(text)
        if parsed.login:
            continue
        name = _PAGE_FILE.search(path.name)
        action = _ACTION.search(text)
        page = ",".join(g for g in name.groups() if g) if name else action.group(1) if action else None
        if page is not None and (page not in pages or parsed.rows):
            pages[page] = text
    if not pages:
        raise InputError(f"--replay {folder}: no ISG pages (*.html named like 1_1.html, or with ?s= in the form)")
    return pages


@dataclass
class WebCounters:
    logins: int = 0
    failed_logins: int = 0
    page_loads: int = 0
    login_screens: int = 0
    resets: int = 0
    requests: int = 0


@dataclass
class _Session:
    user: str | None = None
    pages: int = 0


class _WebServer:
    def __init__(self, sim: IsgSimulator, host: str, port: int) -> None:
        self.sim = sim
        handler = _make_handler(sim)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        h, p = self.httpd.server_address[:2]
        self.address = f"{h}:{p}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="isg-sim-web", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which may never have run
            self.httpd.shutdown()
            self._thread.join(5)
        self.httpd.server_close()


def _make_handler(sim: IsgSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lighttpd/1.4.35"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

        def handle(self) -> None:
            """Keep-alive like lighttpd: a request arriving on a connection idle for longer than
            ``idle_reset`` meets a reset (the server had decided to close it at that moment)."""
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection:
                idle_since = time.monotonic()
                ready, _, _ = select.select([self.connection], [], [], 30)
                if not ready:
                    return
                if sim.idle_reset is not None and time.monotonic() - idle_since > sim.idle_reset:
                    sim.web.resets += 1
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                self.handle_one_request()

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def _send(self, status: int, body: str, content_type: str | None = None,
                  headers: dict[str, str] | None = None) -> None:
            data = body.encode("utf-8")
            content_type = content_type or ("text/html; charset=utf-8" if sim.charset else "text/html")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _serve(self, method: str) -> None:
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if 0 < length <= 1 << 16 else b""
            if parts.path.startswith("/_simulator/"):
                self._control(method, parts)
                return
            with sim.page_lock:  # the ISG answers one request at a time
                sim.web.requests += 1
                query = dict(urllib.parse.parse_qsl(parts.query))
                page = query.get("s", "0")
                sid, session, cookie = self._session()
                form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {}
                if sim.password is not None and session.user is None:
                    if form.get("make") == "send" and form.get("user") == sim.username and \
                            form.get("pass") == sim.password:
                        session.user = sim.username
                        session.pages = 0
                        sim.web.logins += 1
                    else:
                        if form.get("make") == "send":
                            sim.web.failed_logins += 1
                        sim.web.login_screens += 1
                        self._send(200, login_screen(), headers=cookie)
                        return
                if page in sim.drop_pages:
                    sim.web.resets += 1
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                session.pages += 1
                sim.web.page_loads += 1
                text = sim.render(page, session.user)
                if sim.session_pages is not None and session.pages >= sim.session_pages:
                    sim.sessions.pop(sid, None)  # the next request sees the login screen
                self._send(200, text, headers=cookie)

        def _session(self) -> tuple[str, _Session, dict[str, str]]:
            cookies = dict(c.strip().split("=", 1) for c in (self.headers.get("Cookie") or "").split(";")
                           if "=" in c)
            sid = cookies.get("PHPSESSID", "")
            session = sim.sessions.get(sid)
            if session is None:
                sid = secrets.token_hex(13)
                session = sim.sessions[sid] = _Session()
                return sid, session, {"Set-Cookie": f"PHPSESSID={sid}; path=/"}
            return sid, session, {}

        def _control(self, method: str, parts: urllib.parse.SplitResult) -> None:
            query = dict(urllib.parse.parse_qsl(parts.query))
            if parts.path == "/_simulator/expire" and method == "POST":
                sim.expire_sessions()
                self._send(200, '{"expired": true}\n', "application/json")
            elif parts.path == "/_simulator/state":
                self._send(200, json.dumps(sim.state()) + "\n", "application/json")
            elif parts.path == "/_simulator/registers":
                try:
                    table = query.get("table", "holding")
                    address, count = int(query.get("address", "4000")), int(query.get("count", "3"))
                    if table not in ("input", "holding") or not 1 <= count <= 1000:
                        raise ValueError
                except ValueError:
                    self._send(400, '{"error": "table=input|holding, address, count"}\n', "application/json")
                    return
                values = sim.store.snapshot(table, address, count)
                self._send(200, json.dumps({"table": table, "address": address, "values": values}) + "\n",
                           "application/json")
            else:
                self._send(404, '{"error": "unknown control"}\n', "application/json")

    return Handler


@dataclass
class IsgSimulator:
    """Both servers on loopback (ports 0 = any free port)."""

    controller: str = "wpm"
    controller_id: int | None = None
    username: str | None = "isg"
    password: str | None = "isg"
    web_host: str = "127.0.0.1"
    web_port: int = 0
    modbus_host: str = "127.0.0.1"
    modbus_port: int = 0
    session_pages: int | None = None
    idle_reset: float | None = None
    missing: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)
    sgready_ignore: bool = False
    sgready_unreadable: bool = False
    sgready_revert: float = 45.0
    operating_mode: str = "automatic"
    sgready_on: bool = True
    replay: dict[str, str] | None = None
    start_time: float | None = None
    #: Pages whose request is answered by dropping the connection (an overloaded ISG).
    drop_pages: set[str] = field(default_factory=set)
    #: False: ``Content-Type: text/html`` without a charset, as PHP 5.3 sends by default.
    charset: bool = True

    def __post_init__(self) -> None:
        if self.controller not in DEFAULT_IDS:
            raise ConfigError("--controller", "wpm or lwz")
        cid = self.controller_id if self.controller_id is not None else DEFAULT_IDS[self.controller]
        self.model = HeatPumpModel(self.controller, self.start_time)
        self.store = RegisterStore(self.model, cid, missing=set(self.missing), sgready_revert=self.sgready_revert,
                                   operating_mode=self.operating_mode, sgready_on=self.sgready_on,
                                   busy=set(self.busy), sgready_ignore=self.sgready_ignore,
                                   sgready_unreadable=self.sgready_unreadable)
        self.web = WebCounters()
        self.sessions: dict[str, _Session] = {}
        self.page_lock = threading.Lock()
        self._web: _WebServer | None = None
        self._modbus: _ModbusServer | None = None

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> IsgSimulator:
        self._web = _WebServer(self, self.web_host, self.web_port)
        self._modbus = _ModbusServer(self.store, self.modbus_host, self.modbus_port)
        try:
            self._modbus.start()
        except OSError:
            self.stop()
            raise
        self._web.start()
        return self

    def stop(self) -> None:
        web, modbus, self._web, self._modbus = self._web, self._modbus, None, None
        if web is not None:
            web.stop()
        if modbus is not None:
            modbus.stop()

    def __enter__(self) -> IsgSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def web_address(self) -> str:
        assert self._web is not None, "simulator not started"
        return self._web.address

    @property
    def url(self) -> str:
        return f"http://{self.web_address}"

    @property
    def modbus_address(self) -> str:
        assert self._modbus is not None, "simulator not started"
        return self._modbus.address

    @property
    def modbus_port_bound(self) -> int:
        return int(self.modbus_address.rsplit(":", 1)[1])

    def ready_line(self) -> str:
        """What ``gridtap simulate isg`` prints after ``ready``: the web address first (as the
        other simulators print theirs), then both in key=value form."""
        return f"{self.web_address} web={self.url}/ modbus={self.modbus_address}"

    # --- behaviour ----------------------------------------------------------------------------------
    def expire_sessions(self) -> None:
        with self.page_lock:
            self.sessions.clear()

    def sgready_inputs(self) -> tuple[int, int, int]:
        wire = catalogue.wire_address
        in1, in2 = self.store.snapshot("holding", wire(4002), 2)
        return in1, in2, self.store.sgready_state()

    def render(self, page: str, user: str | None) -> str:
        if self.replay is not None:
            return self.replay.get(page) or render_page(page, [], user)
        sections = page_sections(page, self.model.values(), self.store.family, self.sgready_inputs(),
                                 self.store.controller)
        return render_page(page, sections, user, tbody=page == "1,0")

    def state(self) -> dict[str, Any]:
        wire = catalogue.wire_address
        holding = self.store.snapshot("holding", wire(4001), 3)
        return {
            "web": vars(self.web) | {"sessions": len(self.sessions)},
            "modbus": {
                "controller": self.store.family, "controller_id": self.store.controller, "reads": self.store.reads,
                "writes": [w.as_dict() for w in self.store.writes],
                "sgready": {"switch": holding[0], "input1": holding[1], "input2": holding[2],
                            "state": self.store.snapshot("input", wire(5001), 1)[0]},
                "missing_blocks": sorted(self.missing),
            },
        }


# --- CLI --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--web", "--tcp", dest="web", metavar="HOST:PORT", default="127.0.0.1:0",
                        help="address of the web UI (default 127.0.0.1:0 = any free port)")
    parser.add_argument("--modbus", metavar="HOST:PORT", default="127.0.0.1:0",
                        help="address of the Modbus TCP service (default 127.0.0.1:0 = any free port)")
    parser.add_argument("--controller", choices=("wpm", "lwz"), default="wpm", help="register tables (default wpm)")
    parser.add_argument("--controller-id", type=int, metavar="ID",
                        help="controller identification in input 5002 (default 390 for wpm, 103 for lwz)")
    parser.add_argument("--user", default="isg", help="web login user (default isg)")
    parser.add_argument("--password", default="isg",
                        help="web login password (default isg; empty: no login, like an ISG without credentials)")
    parser.add_argument("--session-pages", type=int, metavar="N", help="a session expires after N page loads")
    parser.add_argument("--idle-reset", metavar="SECONDS", type=float,
                        help="reset keep-alive connections idle longer than this when the next request comes")
    parser.add_argument("--missing-block", action="append", default=[], metavar="NAME",
                        help="a catalogue block the firmware lacks: exception 02 (e.g. energy_extended)")
    parser.add_argument("--busy-block", action="append", default=[], metavar="NAME",
                        help="a catalogue block that answers exception 06 (device busy)")
    parser.add_argument("--sgready-ignore-writes", action="store_true",
                        help="acknowledge SGReady input writes without taking them (source not Modbus)")
    parser.add_argument("--sgready-unreadable", action="store_true",
                        help="SGReady inputs read 0x8000 (as on some models), writes still work")
    parser.add_argument("--sgready-revert", type=float, default=45.0, metavar="SECONDS",
                        help="SGReady inputs fall back to normal after this long (default 45)")
    parser.add_argument("--operating-mode", default="automatic",
                        help="operating mode register (automatic, comfort, eco, ...; default automatic)")
    parser.add_argument("--sgready-off", action="store_true", help="start with SG Ready switched off (4001 = 0)")
    parser.add_argument("--replay", metavar="DIR", help="serve the captured pages in DIR (behind the login)")


def from_args(args: argparse.Namespace) -> IsgSimulator:
    web = parse_host_port("--web", args.web, "127.0.0.1")
    modbus = parse_host_port("--modbus", args.modbus, "127.0.0.1")
    if args.session_pages is not None and args.session_pages < 1:
        raise ConfigError("--session-pages", "must be 1 or more")
    if args.idle_reset is not None and not args.idle_reset > 0:
        raise ConfigError("--idle-reset", "must be greater than zero")
    if not args.sgready_revert > 0:
        raise ConfigError("--sgready-revert", "must be greater than zero")
    if args.controller_id is not None and not 0 <= args.controller_id <= 0xFFFF:
        raise ConfigError("--controller-id", f"a register holds 0-65535, got {args.controller_id}")
    family_blocks = {b.name for b in catalogue.load(args.controller).blocks}
    unknown = (set(args.missing_block) | set(args.busy_block)) - family_blocks
    if unknown:
        raise ConfigError("--missing-block", f"unknown block(s) {sorted(unknown)}; {args.controller} has "
                                             f"{', '.join(sorted(family_blocks))}")
    return IsgSimulator(
        controller=args.controller, controller_id=args.controller_id,
        username=args.user, password=args.password or None,
        web_host=web[0], web_port=web[1], modbus_host=modbus[0], modbus_port=modbus[1],
        session_pages=args.session_pages, idle_reset=args.idle_reset, missing=set(args.missing_block),
        busy=set(args.busy_block), sgready_ignore=args.sgready_ignore_writes,
        sgready_unreadable=args.sgready_unreadable,
        sgready_revert=args.sgready_revert, operating_mode=args.operating_mode, sgready_on=not args.sgready_off,
        replay=load_replay(args.replay) if args.replay else None,
    )


def run(args: argparse.Namespace) -> int:
    sim = from_args(args)
    return run_in_foreground(sim, sim.ready_line)


@contextlib.contextmanager
def demo_setup() -> Iterator[dict[str, object]]:
    """For ``gridtap demo``: the simulated WPM heat pump, read over Modbus."""
    sim = IsgSimulator().start()
    try:
        yield {"mode": "modbus", "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound}
    finally:
        sim.stop()


def main() -> int:  # pragma: no cover - python -m
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
