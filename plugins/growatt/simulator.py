"""A simulated Growatt OpenAPI v1 server, so the plugin can be run and tested without an account.

It answers on loopback with replies shaped like the documented ones (spec §5, §8; the
shared fixtures): numbers as JSON numbers with float32 noise on MIN/TLX, as strings on
SPH/MIX, ``""`` for "no value", ``-0.1`` sentinels, inconsistent key casing
(``epvtoday``, ``etogridTotal``), the last daytime record served all night. Values move:
a plant in the simulated time zone makes power along a daylight curve, energies add up.

It enforces what breaks integrations: one call per token, endpoint and parameters per
``--window`` (5 min) and 10 ``plant/list`` / ``plant/energy`` calls a day, answered with 10012;
10011 for a wrong or revoked token; HTTP 405 for the wrong verb; optionally an HTML error page
instead of JSON. ``--clock manual`` freezes time until a test moves it.

Control (tests): ``GET /_sim/calls`` (the call log), ``POST /_sim/clock`` ``{"advance": s}`` or
``{"set": t}``, ``POST /_sim/fault`` ``{"endpoint": p, "code": 10012, "times": 1}``,
``POST /_sim/deny`` ``{"endpoint": p}`` (10011 for one endpoint), ``POST /_sim/revoke``,
``POST /_sim/html`` ``{"on": true, "status": 502}``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gridtap.config import Duration
from gridtap.errors import ConfigError, InputError
from gridtap.simulate import run_in_foreground

from . import api

DEFAULT_TOKEN = "gridtap-simulator-token-000000000"
SLOT = 300  # seconds: dataloggers upload every 5 minutes
EPOCH_DAY = dt.date(2026, 1, 1)  # energies count from here


def f32(x: float) -> float:
    """``x`` as the float32 Growatt stores, sent as a double (``21.600000381469727``)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --------------------------------------------------------------------------- the plant model
class PlantModel:
    """A plant whose 5-minute power follows the daylight in its time zone; every energy is
    the sum of those slots, so live values, plant/power and plant/energy agree."""

    def __init__(self, tz_hours: float = 1.0, peak_w: float = 5000.0) -> None:
        self.tz_hours = tz_hours
        self.zone = dt.timezone(dt.timedelta(hours=tz_hours))
        self.peak_w = peak_w

    @property
    def tz_name(self) -> str:
        h = self.tz_hours
        whole = int(h)
        return f"GMT{'+' if h >= 0 else '-'}{abs(whole)}" + (f":{int(abs(h - whole) * 60):02d}" if h != whole else "")

    def local(self, ts: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts, self.zone)

    def slot_power(self, day: dt.date, slot: int) -> float:
        """Mean power (W) of 5-minute slot ``slot`` (0..287) of ``day``."""
        return _slot_power(self.peak_w, day.toordinal(), slot)

    def day_energy(self, day: dt.date) -> float:
        """kWh of a whole day."""
        return _day_energy(self.peak_w, day.toordinal())

    def energy_until(self, day: dt.date, slot: int) -> float:
        """kWh of ``day`` from midnight up to (excluding) ``slot``."""
        return sum(self.slot_power(day, i) for i in range(slot)) * SLOT / 3600 / 1000

    def total_before(self, day: dt.date) -> float:
        return _total_before(self.peak_w, day.toordinal())

    def upload(self, ts: float) -> tuple[dt.date, int]:
        """(day, slot) of the datalogger's latest upload at ``ts``: the current slot by day, the
        last daylight slot at night (Growatt keeps serving it until the next morning)."""
        now = self.local(ts)
        day, slot = now.date(), (now.hour * 3600 + now.minute * 60) // SLOT
        for _ in range(2 * 288):
            if self.slot_power(day, slot) > 0:
                return day, slot
            slot -= 1
            if slot < 0:
                day, slot = day - dt.timedelta(days=1), 287
        return now.date(), 0

    def slot_time(self, day: dt.date, slot: int) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), self.zone) + dt.timedelta(seconds=slot * SLOT)


@lru_cache(maxsize=200_000)
def _slot_power(peak: float, ordinal: int, slot: int) -> float:
    hours = (slot + 0.5) * SLOT / 3600
    sunrise, sunset = 6.0, 20.0
    if not sunrise <= hours <= sunset:
        return 0.0
    weather = 0.65 + 0.35 * ((ordinal * 7919) % 101) / 100  # each day its own sky
    wobble = 1 + 0.06 * math.sin(slot * 1.7 + ordinal)
    return round(peak * weather * math.sin(math.pi * (hours - sunrise) / (sunset - sunrise)) * wobble, 1)


@lru_cache(maxsize=10_000)
def _day_energy(peak: float, ordinal: int) -> float:
    return sum(_slot_power(peak, ordinal, i) for i in range(288)) * SLOT / 3600 / 1000


@lru_cache(maxsize=10_000)
def _total_before(peak: float, ordinal: int) -> float:
    start = EPOCH_DAY.toordinal()
    return 1500.0 + sum(_day_energy(peak, d) for d in range(start, ordinal))


# --------------------------------------------------------------------------- the devices
class SimDevice:
    """One device of the plant: its share of the plant's PV power and how it reports."""

    def __init__(self, family: str, sn: str, type_: int, share: float, logger: str, model: str) -> None:
        self.family, self.sn, self.type, self.share, self.logger, self.model = family, sn, type_, share, logger, model


DEVICES = {
    "min": SimDevice("min", "BNE9A5100D", 7, 0.5, "LTH0BFD08J", "MIN 5000TL-X"),
    "mix": SimDevice("mix", "SARN744005", 5, 0.3, "BQC0733010", "SPH 3000"),
    "inverter": SimDevice("inverter", "ZT00100001", 1, 0.2, "CRAZT00001", "A0B0D0T0PFU1M3S4"),
    "datalogger": SimDevice("datalogger", "JPC281833B", 3, 0.0, "JPC281833B", "ShineWiFi-X"),
}
BATTERY_KWH = 5.0


def _hours(slot: int) -> float:
    return slot * SLOT / 3600


def mix_slot(model: PlantModel, share: float, day: dt.date, slot: int) -> dict[str, float]:
    """The SPH's powers (W) in one slot: it charges its battery at midday, discharges in the
    evening, and trades the rest with the grid around a house load."""
    return dict(_mix_slot(model.peak_w, model.tz_hours, share, day.toordinal(), slot))


@lru_cache(maxsize=100_000)
def _mix_slot(peak: float, tz: float, share: float, ordinal: int, slot: int) -> tuple[tuple[str, float], ...]:
    pv = share * _slot_power(peak, ordinal, slot)
    h = _hours(slot)
    charge = round(min(800.0, 0.5 * pv), 1) if 9 <= h < 15 else 0.0
    discharge = 300.0 if 19 <= h < 23 else 0.0
    load = round(450 + 150 * math.sin(2 * math.pi * (h - 6) / 24), 1)
    pac = round(pv - charge + discharge, 1)
    return (("pv", round(pv, 1)), ("charge", charge), ("discharge", discharge), ("load", load), ("pac", pac),
            ("export", round(max(0.0, pac - load), 1)), ("import", round(max(0.0, load - pac), 1)))


def mix_energy(model: PlantModel, share: float, day: dt.date, upto: int) -> dict[str, float]:
    """kWh of each mix quantity on ``day`` from midnight up to (excluding) slot ``upto``."""
    out: dict[str, float] = collections.defaultdict(float)
    for i in range(upto):
        for k, w in _mix_slot(model.peak_w, model.tz_hours, share, day.toordinal(), i):
            out[k] += w * SLOT / 3600 / 1000
    return out


@lru_cache(maxsize=10_000)
def _mix_totals_before(peak: float, tz: float, share: float, ordinal: int) -> tuple[tuple[str, float], ...]:
    model = PlantModel(tz, peak)
    total: dict[str, float] = collections.defaultdict(float)
    for d in range(EPOCH_DAY.toordinal(), ordinal):
        for k, x in mix_energy(model, share, dt.date.fromordinal(d), 288).items():
            total[k] += x
    return tuple(sorted(total.items()))


def device_slot_power(model: PlantModel, dev: SimDevice, day: dt.date, slot: int) -> float:
    """AC power (W) a device feeds in during one slot."""
    if dev.family == "mix":
        return _mix_slot(model.peak_w, model.tz_hours, dev.share, day.toordinal(), slot)[4][1]
    return round(dev.share * model.slot_power(day, slot), 1)


def device_day_energy(model: PlantModel, dev: SimDevice, day: dt.date, upto: int = 288) -> float:
    """kWh a device fed in on ``day`` up to (excluding) slot ``upto``."""
    if upto >= 288:  # whole days are summed again and again (month and year totals): once each
        return _whole_day_energy(model.peak_w, model.tz_hours, dev.family, dev.share, day.toordinal())
    return sum(device_slot_power(model, dev, day, i) for i in range(upto)) * SLOT / 3600 / 1000


@lru_cache(maxsize=10_000)
def _whole_day_energy(peak: float, tz: float, family: str, share: float, ordinal: int) -> float:
    model = PlantModel(tz, peak)
    dev = SimDevice(family, "", 0, share, "", "")
    day = dt.date.fromordinal(ordinal)
    return sum(device_slot_power(model, dev, day, i) for i in range(288)) * SLOT / 3600 / 1000


def soc_at(model: PlantModel, share: float, day: dt.date, upto: int) -> float:
    e = mix_energy(model, share, day, upto)
    return max(10.0, min(100.0, 30.0 + 100 * (e["charge"] - e["discharge"]) / BATTERY_KWH))


def _time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S")


def min_record(model: PlantModel, dev: SimDevice, now: float) -> dict[str, Any]:
    """``tlx_last_data`` data: JSON numbers with float32 noise, -0.1 sentinels, zeros for the
    battery a plain MIN does not have (spec §10.3)."""
    day, slot = model.upload(now)
    p = device_slot_power(model, dev, day, slot)
    e_today = device_day_energy(model, dev, day, slot + 1)
    e_total = dev.share * model.total_before(day) + e_today
    ppv = p * 1.03
    vpv1, vpv2 = 320 + 15 * math.sin(slot / 7), 280 + 10 * math.cos(slot / 9)
    vac = 230 + 2.5 * math.sin(slot / 5)
    t1 = 25 + p / 250
    uploaded = model.slot_time(day, slot)
    return {
        "serialNum": dev.sn, "dataLogSn": dev.logger, "time": _time(uploaded),
        "lost": now - uploaded.timestamp() > 1800, "status": 1, "statusText": "Normal",
        "pac": f32(p), "pac1": f32(p), "pac2": 0.0, "pac3": 0.0, "pacr": 0.0,
        "ppv": f32(ppv), "ppv1": f32(ppv * 0.6), "ppv2": f32(ppv * 0.4), "ppv3": 0.0, "ppv4": 0.0,
        "vpv1": f32(vpv1), "vpv2": f32(vpv2), "vpv3": 0.0, "vpv4": 0.0,
        "ipv1": f32(ppv * 0.6 / vpv1), "ipv2": f32(ppv * 0.4 / vpv2), "ipv3": 0.0, "ipv4": 0.0,
        "vac1": f32(vac), "vac2": 0.0, "vac3": 0.0, "vacRs": f32(vac), "vacSt": 0.0, "vacTr": 0.0,
        "iac1": f32(p / vac), "iac2": 0.0, "iac3": 0.0, "fac": f32(50 + 0.02 * math.sin(slot)), "pf": 1.0,
        "eacToday": f32(e_today), "eacTotal": round(e_total, 1),
        "epv1Today": f32(e_today * 0.618), "epv2Today": f32(e_today * 0.412), "epv3Today": 0.0, "epv4Today": 0.0,
        "epv1Total": round(e_total * 0.618, 1), "epv2Total": round(e_total * 0.412, 1), "epv3Total": 0.0,
        "epv4Total": 0.0, "epvTotal": round(e_total * 1.03, 1),
        "etoUserToday": 0.0, "etoUserTotal": 0.0, "etoGridToday": 0.0, "etoGridTotal": 0.0,
        "elocalLoadToday": 0.0, "elocalLoadTotal": 0.0, "pacToGridTotal": 0.0, "pacToUserTotal": 0.0,
        "pacToLocalLoad": 0.0, "bdc1Soc": 0.0, "bdc1Vbat": 0.0, "bdc1ChargePower": 0.0, "bdc1DischargePower": 0.0,
        "bmsSoc": 0.0, "bmsSoh": 0.0, "temp1": f32(t1), "temp2": 0.0, "temp3": 0.0, "temp4": 0.0,
        "temp5": f32(t1 + 4.2), "pBusVoltage": 367.0, "nBusVoltage": 0.0, "eex1Today": -0.1, "eex1Total": -0.1,
        "eex2Today": -0.1, "pex1": -0.1, "pex2": -0.1, "timeTotal": 1625146.9, "warnCode": 0, "faultType": 0,
        "errorText": "Unknown",
    }


def mix_record(model: PlantModel, dev: SimDevice, now: float) -> dict[str, Any]:
    """``mix_last_data`` data: numbers as strings, ``""`` for some, keys cased like the real
    ones (``epvtoday``, ``esystemtoday``, ``etogridTotal``); an SPH uploads day and night."""
    local = model.local(now)
    day, slot = local.date(), (local.hour * 3600 + local.minute * 60) // SLOT
    s = mix_slot(model, dev.share, day, slot)
    today = mix_energy(model, dev.share, day, slot + 1)
    before = dict(_mix_totals_before(model.peak_w, model.tz_hours, dev.share, day.toordinal()))
    total = {k: 800.0 + before.get(k, 0.0) + today.get(k, 0.0) for k in today}
    soc = soc_at(model, dev.share, day, slot + 1)

    def n(x: float, digits: int = 1) -> str:
        return f"{x:.{digits}f}"

    return {
        "serialNum": dev.sn, "time": _time(model.slot_time(day, slot)), "lost": False, "status": 5 if s["pv"] else 1,
        "statusText": "PV Bat Online", "ppv": n(s["pv"]), "ppv1": n(s["pv"]), "ppv2": "0", "ppv_text": f"{s['pv']} W",
        "vpv1": n(310 + 10 * math.sin(slot / 6)), "vpv2": "0", "pac": n(s["pac"]), "pac1": n(s["pac"]), "pac2": "",
        "pac3": "", "vac1": n(229.5 + math.sin(slot / 4)), "vac2": "0", "vac3": "0", "fac": n(49.99, 2),
        "soc": n(soc, 0), "socText": f"{soc:.0f}%", "vbat": n(48 + 0.06 * soc, 2), "vBatDsp": "",
        "pcharge1": n(s["charge"]), "pdischarge1": n(s["discharge"]),
        "pacToGridTotal": n(s["export"]), "pacToUserTotal": n(s["import"]), "pacToUserR": "",
        "plocalLoadTotal": n(s["load"]), "plocalLoadR": "",
        "eacToday": n(today["pac"], 2), "eacTotal": n(total["pac"]),
        "epvtoday": n(today["pv"], 2), "epvTotal": n(total["pv"]), "esystemtoday": n(today["pv"], 2),
        "eselfToday": n(today["pac"] - today["export"], 2), "eselfTotal": n(total["pac"] - total["export"]),
        "etoUserToday": n(today["import"], 2), "etoUserTotal": n(total["import"]),
        "etoGridToday": n(today["export"], 2), "etogridTotal": n(total["export"]),
        "elocalLoadToday": n(today["load"], 2), "elocalLoadTotal": n(total["load"]),
        "echarge1Today": n(today["charge"], 2), "echarge1Total": n(total["charge"]),
        "edischarge1Today": n(today["discharge"], 2), "edischarge1Total": n(total["discharge"]),
        "temp1": n(31 + s["pv"] / 300), "temp2": n(30.5), "temp3": "", "upsPac1": "0", "upsVac1": "0",
        "bmsSoh": "96", "warnCode": "0", "faultCode": "0",
    }


def inverter_record(model: PlantModel, dev: SimDevice, now: float) -> dict[str, Any]:
    """``last_new_data`` data of a classic inverter: a mix of numbers and strings, the device SN
    in ``inverterId``, "power" fields that are energies (``powerToday``)."""
    day, slot = model.upload(now)
    p = device_slot_power(model, dev, day, slot)
    e_today = device_day_energy(model, dev, day, slot + 1)
    e_total = dev.share * model.total_before(day) + e_today
    vpv = 360 + 12 * math.sin(slot / 8)
    vac = 231 + 2 * math.cos(slot / 5)
    uploaded = model.slot_time(day, slot)
    return {
        "inverterId": dev.sn, "time": _time(uploaded), "status": 1, "statusText": "Normal",
        "pac": f"{p:.1f}", "pacr": f32(p), "pacs": 0.0, "pact": 0.0, "ppv": f32(p * 1.04), "ppv1": f32(p * 1.04),
        "ppv2": "", "vpv1": f32(vpv), "vpv2": "", "ipv1": f32(p * 1.04 / vpv), "ipv2": "",
        "vacr": f32(vac), "vacs": 0.0, "vact": 0.0, "iacr": f32(p / vac), "iacs": 0.0, "iact": 0.0,
        "fac": "50.01", "pf": 1.0, "powerToday": f32(e_today), "powerTotal": round(e_total, 1),
        "epv1Today": f32(e_today * 1.04), "epv1Total": round(e_total * 1.04, 1), "epvTotal": round(e_total * 1.04, 1),
        "temperature": f32(24 + p / 120), "ipmTemperature": 0.0, "pBusVoltage": f32(vpv + 12),
        "nBusVoltage": f32(vpv + 10), "timeTotal": f"{3000 + (day - EPOCH_DAY).days * 12.5:.1f}", "eRacToday": 0.0,
        "faultType": 0, "warnCode": 0,
    }


RECORDS: dict[str, Callable[[PlantModel, SimDevice, float], dict[str, Any]]] = {
    "min": min_record, "mix": mix_record, "inverter": inverter_record}


# --------------------------------------------------------------------------- the API
PLANT_ID = "4242"
_HTML = ("<!doctype html><html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1>"
         "<p>The server could not handle the request (simulated).</p><hr><p>openresty</p></body></html>")
#: Fixture file names (shared/fixtures/growatt/openapi_v1) -> endpoint, for --replay.
REPLAY_NAMES = {
    "plant_list": "plant/list", "plant_details": "plant/details", "plant_data": "plant/data",
    "plant_energy": "plant/energy", "plant_power": "plant/power", "device_list": "device/list",
    "device_day_energy": "device/inverter/day_energy", "tlx_last_data": "device/tlx/tlx_last_data",
    "mix_last_data": "device/mix/mix_last_data", "last_new_data": "device/inverter/last_new_data",
}


class GrowattSimulator:
    """The simulated OpenAPI on ``host:port`` (port 0 = any); see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str = DEFAULT_TOKEN,
                 window: float = 300.0, daily_cap: int = 10, min_spacing: float = 0.0, manual_clock: bool = False,
                 start: float | None = None, tz_hours: float = 1.0, families: tuple[str, ...] = tuple(DEVICES),
                 html_error: bool = False, replay: str | Path | None = None, count_mismatch: bool = False) -> None:
        self.host, self.port = host, port
        self.token = token
        self.window, self.daily_cap, self.min_spacing = window, daily_cap, min_spacing
        self.manual = manual_clock
        self._now = float(start) if start is not None else time.time()
        self.model = PlantModel(tz_hours)
        unknown = [f for f in families if f not in DEVICES]
        if unknown:
            raise ConfigError("--devices", f"unknown device kind(s) {', '.join(unknown)}; choose from "
                                           f"{', '.join(DEVICES)}")
        self.devices = [DEVICES[f] for f in families]
        self.count_mismatch = count_mismatch
        self.html: int | None = 200 if html_error else None
        self.revoked = False
        self.denied: set[str] = set()
        self.faults: dict[str, collections.deque[int]] = collections.defaultdict(collections.deque)
        self.replay = _load_replay(replay) if replay is not None else None
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)
        self._last_ok: dict[str, float] = {}
        self._daily: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._last_any: float | None = None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- time ---------------------------------------------------------------------------------
    def now(self) -> float:
        with self._lock:
            return self._now if self.manual else time.time()

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set_time(self, ts: float) -> None:
        with self._lock:
            self._now = float(ts)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="growatt-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.server_address[:2]  # type: ignore[return-value]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/v1/"

    # --- one API request ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: dict[str, str], token: str | None) -> tuple[int, dict, bytes]:
        """(HTTP status, headers, body) for one request to ``path`` (below /v1/)."""
        now = self.now()
        endpoint = api.ENDPOINTS.get(path)
        entry: dict[str, Any] = {"t": now, "method": method, "endpoint": path, "params": params, "status": 200,
                                 "code": None}
        with self._lock:
            entry["gap"] = None if self._last_any is None else round(now - self._last_any, 6)
            self._last_any = now
            self.calls.append(entry)
            if endpoint is None:
                entry["status"] = 404
                return 404, {"Content-Type": "text/html"}, _HTML.format(status=404, reason="Not Found").encode()
            if method != endpoint.method:
                entry["status"] = 405
                return 405, {"Content-Type": "text/html", "Allow": endpoint.method}, _HTML.format(
                    status=405, reason="Method Not Allowed").encode()
            if self.html is not None:
                entry["status"] = self.html
                reason = "Bad Gateway" if self.html == 502 else "Service Unavailable" if self.html == 503 else "OK"
                return self.html, {"Content-Type": "text/html"}, _HTML.format(status=self.html, reason=reason).encode()
            code = self._refusal(path, params, token, now)
            if code is None:
                data = self._answer(path, params, now)
                if isinstance(data, tuple):  # an endpoint-specific error
                    code, msg = data
                    entry["code"] = code
                    return 200, _JSON, _envelope(code, msg)
                entry["code"] = 0
                return 200, _JSON, _json(data)
            entry["code"] = code
            msg = {10011: "error_permission_denied", 10012: "error_frequently_access"}.get(code, "error")
            return 200, _JSON, _envelope(code, msg)

    def _refusal(self, path: str, params: dict[str, str], token: str | None, now: float) -> int | None:
        if self.revoked or token != self.token or path in self.denied:
            return 10011
        queued = self.faults.get(path)
        if queued:
            return queued.popleft()
        key = f"{token}|{path}?{sorted(params.items())}"
        if self.min_spacing and (gap := self.calls[-1]["gap"]) is not None and gap < self.min_spacing:
            return 10012
        last = self._last_ok.get(key)
        if last is not None and now - last < self.window:
            return 10012
        endpoint = api.ENDPOINTS[path]
        if endpoint.per_day is not None:
            day = self._daily[f"{token}|{path}"]
            while day and day[0] <= now - 86400:
                day.popleft()
            if len(day) >= self.daily_cap:
                return 10012
            day.append(now)
        self._last_ok[key] = now
        return None

    def _answer(self, path: str, params: dict[str, str], now: float) -> Any:
        if self.replay is not None:
            if path in self.replay:
                return self.replay[path]
            return (10001, "system error (not in the replay folder)")
        pid = params.get("plant_id", PLANT_ID)
        if path.startswith("plant/") and path != "plant/list" and pid != PLANT_ID:
            return (10002, "plant does not exist")
        if path == "plant/list":
            return {"count": 1, "plants": [self._plant(now)]}
        if path == "plant/details":
            return self._details()
        if path == "plant/data":
            return self._plant_data(now)
        if path == "plant/energy":
            return self._plant_energy(params, now)
        if path == "plant/power":
            return self._plant_power(params, now)
        if path == "device/list":
            if pid != PLANT_ID:
                return (10003, "plant does not exist")
            return self._device_list(now)
        if path == "device/inverter/day_energy":
            return self._day_energy(params, now)
        for family, fn in RECORDS.items():
            dev = next((d for d in self.devices if d.family == family), None)
            fam = next(f for f in api.FAMILIES.values() if f.name == family)
            if path == fam.last.path:
                sn = params.get(fam.last_param, "")
                if dev is None or sn != dev.sn:
                    return (10002, "device does not exist")
                return {"__envelope__": {"device_sn": dev.sn, "datalogger_sn": dev.logger}, **fn(self.model, dev, now)}
            if path == fam.info.path:
                sn = params.get("device_sn", "")
                if dev is None or sn != dev.sn:
                    return (10002, "device does not exist")
                return {"serialNum": dev.sn, "dataLogSn": dev.logger, "fwVersion": f"{family.upper()[:2]}AA10",
                        "innerVersion": "xxxx0910", "modelText": dev.model, "lost": False, "status": 1}
        return (10001, "system error")

    # --- the plant's answers ---------------------------------------------------------------------------
    def _plant(self, now: float) -> dict[str, Any]:
        total = float(self._plant_data(now)["total_energy"])  # a number here, a string in plant/data
        return {"status": 1, "locale": "en-US", "total_energy": total, "operator": "0", "country": "Netherlands",
                "city": "Utrecht", "current_power": "", "create_date": "2026-01-01", "image_url": None,
                "plant_id": int(PLANT_ID), "name": "Simulated plant", "installer": "0", "user_id": 31,
                "longitude": "", "latitude": "", "peak_power": self.model.peak_w / 1000, "latitude_d": None,
                "latitude_f": None}

    def _details(self) -> dict[str, Any]:
        # Every key of the documented reply; most are "" on real plants too.
        empty = ("address1", "address2", "description", "designercontact", "designerorganization", "elevation",
                 "financiercontact", "financierorganization", "fixed_azimuth", "fixed_tilt", "grid_type",
                 "installed_ac_capacity", "installed_dc_capacity", "installed_panel_area", "installercontact",
                 "installerorganization", "irradiationsensor_type", "jurisdictioncontact", "jurisdictionorganization",
                 "notes", "offtakercontact", "offtakerorganization", "operatorcontact", "operatororganization",
                 "plant_type", "postal", "state", "status", "tracker_type", "weather_type", "weathersensor_man",
                 "weathersensor_md", "weathersensor_num")
        return {**dict.fromkeys(empty, ""), "name": "Simulated plant", "city": "Utrecht", "country": "Netherlands",
                "timezone": self.model.tz_name, "peak_power": self.model.peak_w / 1000, "currency": "eur",
                "create_date": "2026-01-01", "latitude": "52.1", "longitude": "5.1", "image_url": "1.png",
                "ownercontact": "", "ownerorganization": "",
                "inverters": [{"inverter_md": "", "inverter_num": len(self._live_devices()),
                               "inverter_man": "Growatt"}],
                "dataloggers": [{"datalogger_num": 1, "datalogger_man": "Growatt", "datalogger_md": ""}],
                "arrays": [{"num_modules": 0, "module_md": "", "module_man": "Growatt"}], "locale": "en_US",
                "user_id": 31}

    def _live_devices(self) -> list[SimDevice]:
        return [d for d in self.devices if d.family in RECORDS]

    def _plant_data(self, now: float) -> dict[str, Any]:
        local = self.model.local(now)
        day, slot = local.date(), (local.hour * 3600 + local.minute * 60) // SLOT
        power = sum(device_slot_power(self.model, d, day, slot) for d in self._live_devices())
        today = sum(device_day_energy(self.model, d, day, slot + 1) for d in self._live_devices())
        month = today + sum(self._day_total(dt.date(day.year, day.month, i)) for i in range(1, day.day))
        year = today + sum(self._day_total(day - dt.timedelta(days=i)) for i in range(1, day.timetuple().tm_yday))
        total = today + sum(d.share * self.model.total_before(day) if d.family != "mix" else
                            800.0 + dict(_mix_totals_before(self.model.peak_w, self.model.tz_hours, d.share,
                                                            day.toordinal())).get("pac", 0.0)
                            for d in self._live_devices())
        return {"peak_power_actual": self.model.peak_w / 1000, "monthly_energy": f"{month:.1f}",
                "last_update_time": _time(self.model.slot_time(day, slot)), "current_power": f32(power / 1000),
                "timezone": self.model.tz_name, "yearly_energy": f"{year:.1f}", "today_energy": f"{today:.1f}",
                "carbon_offset": f"{total * 0.6:.1f}", "efficiency": "", "total_energy": f"{total:.1f}"}

    def _day_total(self, day: dt.date) -> float:
        """kWh the plant's devices fed in on ``day``."""
        return sum(device_day_energy(self.model, d, day) for d in self._live_devices())

    def plant_slot_power(self, day: dt.date, slot: int) -> float:
        return round(sum(device_slot_power(self.model, d, day, slot) for d in self._live_devices()), 1)

    def _plant_energy(self, params: dict[str, str], now: float) -> Any:
        try:
            start = dt.date.fromisoformat(params["start_date"])
            end = dt.date.fromisoformat(params["end_date"])
        except (KeyError, ValueError):
            return (10004, "time format error")
        unit = params.get("time_unit", "day")
        if unit != "day":
            return (10004, "only time_unit=day is simulated")
        if end < start or (end - start).days > 6:
            return (10004, "the day range spans at most 7 days")
        today = self.model.local(now).date()
        rows = []
        d = start
        while d <= end:
            if d < today:
                rows.append({"date": d.isoformat(), "energy": f"{self._day_total(d):.1f}"})
            elif d == today:
                rows.append({"date": d.isoformat(), "energy": self._plant_data(now)["today_energy"]})
            d += dt.timedelta(days=1)
        return {"count": len(rows), "time_unit": "day", "energys": rows}

    def _plant_power(self, params: dict[str, str], now: float) -> Any:
        try:
            day = dt.date.fromisoformat(params["date"])
        except (KeyError, ValueError):
            return (10003, "time format error")
        local = self.model.local(now)
        powers = []
        for slot in range(287, -1, -1):  # newest first, like the documented example
            at = self.model.slot_time(day, slot)
            p = self.plant_slot_power(day, slot) if at <= local else 0.0
            powers.append({"time": at.strftime("%Y-%m-%d %H:%M"), "power": f32(p) if p else None})
        return {"count": len(powers), "powers": powers}

    def _device_list(self, now: float) -> dict[str, Any]:
        local = self.model.local(now)
        rows = [{"device_sn": d.sn, "last_update_time": _time(local), "model": d.model, "lost": False, "status": 1,
                 "manufacturer": "Growatt", "device_id": 100 + i, "datalogger_sn": d.logger, "type": d.type}
                for i, d in enumerate(self.devices)]
        return {"count": len(rows) + (2 if self.count_mismatch else 0), "devices": rows}

    def _day_energy(self, params: dict[str, str], now: float) -> Any:
        dev = next((d for d in self.devices if d.sn == params.get("device_sn")), None)
        if dev is None or dev.family not in RECORDS:
            return (10005, "inverter does not exist")
        try:
            day = dt.date.fromisoformat(params.get("date", ""))
        except ValueError:
            return (10003, "date format error")
        return {"__envelope__": {"device_sn": dev.sn, "datalogger_sn": dev.logger, "error_msg": None},
                "__bare__": f32(device_day_energy(self.model, dev, day))}

    # --- control (tests) ------------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any, query: dict[str, str]) -> tuple[int, Any]:
        with self._lock:
            if path == "calls" and method == "GET":
                since = int(query.get("since", "0"))
                return 200, list(self.calls)[since:]
            if path == "clock" and method == "GET":
                return 200, {"now": self.now(), "manual": self.manual}
            if path == "clock" and method == "POST":
                if not self.manual:
                    return 409, {"error": "the simulator runs on the real clock (--clock manual to move it)"}
                if "set" in body:
                    self.set_time(float(body["set"]))
                if "advance" in body:
                    self.advance(float(body["advance"]))
                return 200, {"now": self.now()}
            if path == "fault" and method == "POST":
                self.faults[str(body["endpoint"])].extend([int(body.get("code", 10012))] * int(body.get("times", 1)))
                return 200, {"ok": True}
            if path == "deny" and method == "POST":
                endpoint = str(body["endpoint"])
                (self.denied.discard if body.get("undo") else self.denied.add)(endpoint)
                return 200, {"denied": sorted(self.denied)}
            if path == "revoke" and method == "POST":
                self.revoked = not body.get("undo", False)
                return 200, {"revoked": self.revoked}
            if path == "html" and method == "POST":
                self.html = int(body.get("status", 200)) if body.get("on", True) else None
                return 200, {"html": self.html}
        return 404, {"error": f"no control {method} /_sim/{path}"}


_JSON = {"Content-Type": "application/json;charset=UTF-8"}


def _json(data: Any) -> bytes:
    doc: dict[str, Any] = {}
    if isinstance(data, dict) and "__envelope__" in data:
        data = dict(data)
        doc.update(data.pop("__envelope__"))
        if "__bare__" in data:
            data = data["__bare__"]
    doc.setdefault("error_msg", "")  # "" mostly; the envelope may say null, as day_energy's documentation does
    doc.update({"data": data, "error_code": 0})
    return json.dumps(doc).encode()


def _envelope(code: int, msg: str) -> bytes:
    return json.dumps({"error_code": code, "error_msg": msg, "data": ""}).encode()


def _load_replay(folder: str | Path) -> dict[str, Any]:
    """Replies by endpoint from a folder of fixture files (``plant_list.doc.json``...); the
    envelope's ``data`` and top-level identifiers are served as they are."""
    where = Path(folder)
    if not where.is_dir():
        raise InputError(f"{folder}: not a folder (--replay takes a folder of <endpoint>*.json replies)")
    out: dict[str, Any] = {}
    for path in sorted(where.glob("*.json")):
        stem = path.name.split(".")[0]
        endpoint = REPLAY_NAMES.get(stem)
        if endpoint is None:
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: not a JSON reply: {e}") from None
        if isinstance(doc, dict) and doc.get("error_code") == 0:
            extra = {k: x for k, x in doc.items() if k not in ("data", "error_code", "error_msg")}
            data = doc.get("data")
            out[endpoint] = {"__envelope__": extra, "__bare__": data} if not isinstance(data, dict) else (
                {"__envelope__": extra, **data} if extra else data)
    if not out:
        raise InputError(f"{folder}: no replies named like {', '.join(sorted(REPLAY_NAMES))} (*.json)")
    return out


class _Handler(BaseHTTPRequestHandler):
    simulator: GrowattSimulator
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once (keep-alive clients wait otherwise)
    server_version = "openresty"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length else b""
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if path.startswith("/_sim/"):
            try:
                doc = json.loads(body) if body else {}
                status, out = self.simulator.control(method, path[len("/_sim/"):], doc, query)
            except (ValueError, KeyError, TypeError) as e:
                status, out = 400, {"error": str(e)}
            self._send(status, _JSON, json.dumps(out).encode())
            return
        path = re.sub(r"^/v1/", "", path).lstrip("/")
        params = dict(query)
        if method == "POST" and "form-urlencoded" in self.headers.get("Content-Type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        status, headers, out = self.simulator.handle(method, path, params, self.headers.get("token"))
        self._send(status, headers, out)

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for k, x in headers.items():
            self.send_header(k, x)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


# --------------------------------------------------------------------------- the command
def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", "--tcp", dest="listen", type=_hostport, default=("127.0.0.1", 8080),
                        metavar="HOST:PORT", help="address of the API (port 0 = any; default 127.0.0.1:8080)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the token the API accepts (default: a fixed one)")
    parser.add_argument("--window", default="5m", metavar="DURATION",
                        help="one call per token, endpoint and parameters per this long, else 10012 (default 5m)")
    parser.add_argument("--daily-cap", type=int, default=10,
                        help="plant/list and plant/energy calls per rolling 24 h (default 10)")
    parser.add_argument("--min-spacing", default="0s", metavar="DURATION",
                        help="answer 10012 when two calls come closer than this (default 0s: off)")
    parser.add_argument("--clock", choices=("real", "manual"), default="real",
                        help="manual: time stands still until POST /_sim/clock moves it (default real)")
    parser.add_argument("--start", metavar="ISO", help="manual clock: start time, e.g. 2026-06-21T10:00:00+02:00")
    parser.add_argument("--timezone", type=float, default=1.0, metavar="HOURS",
                        help="the plant's UTC offset in hours (reported as GMT+N; default 1)")
    parser.add_argument("--devices", default="min,mix,inverter,datalogger",
                        help="device kinds on the plant: min, mix, inverter, datalogger (default all)")
    parser.add_argument("--html-error", action="store_true", help="answer every API call with an HTML error page")
    parser.add_argument("--count-mismatch", action="store_true",
                        help="device/list reports a count larger than the list (a real Growatt quirk)")
    parser.add_argument("--replay", metavar="DIR",
                        help="serve the replies in DIR (plant_list*.json, device_list*.json, ...) instead")


def from_args(args: argparse.Namespace) -> GrowattSimulator:
    try:
        window = float(Duration.parse(args.window))
        spacing = float(Duration.parse(args.min_spacing)) if args.min_spacing not in ("0", "0s") else 0.0
    except ValueError as e:
        raise ConfigError("--window/--min-spacing", str(e)) from None
    start = None
    if args.start:
        try:
            moment = dt.datetime.fromisoformat(args.start)
        except ValueError:
            raise ConfigError("--start", f"expected an ISO time like 2026-06-21T10:00:00+02:00, got {args.start!r}"
                              ) from None
        start = (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()
    if args.daily_cap < 0:
        raise ConfigError("--daily-cap", f"must be 0 or more, got {args.daily_cap}")
    if not -12 <= args.timezone <= 14:
        raise ConfigError("--timezone", f"a UTC offset is -12..14 hours, got {args.timezone}")
    families = tuple(x.strip() for x in args.devices.split(",") if x.strip())
    host, port = args.listen
    return GrowattSimulator(host, port, token=args.token, window=window, daily_cap=args.daily_cap,
                            min_spacing=spacing, manual_clock=args.clock == "manual", start=start,
                            tz_hours=args.timezone, families=families, html_error=args.html_error,
                            replay=args.replay, count_mismatch=args.count_mismatch)


def run(args: argparse.Namespace) -> int:
    sim = from_args(args)
    return run_in_foreground(sim, lambda: sim.url)


@contextlib.contextmanager
def demo_setup() -> Iterator[dict[str, object]]:
    """For ``gridtap demo``: a simulator with 1-second windows (so the demo does not wait five
    minutes) whose plant sits in the time zone where it is midday now, so there is sun."""
    utc_hour = dt.datetime.now(dt.UTC).hour
    sim = GrowattSimulator(window=1.0, tz_hours=float(max(-12, min(14, 12 - utc_hour))))
    sim.start()
    with tempfile.TemporaryDirectory(prefix="gridtap-growatt-demo-") as cache:
        try:
            yield {"token": DEFAULT_TOKEN, "base_url": sim.url, "cache_dir": cache, "rate_window": "1s",
                   "call_spacing": "50ms"}
        finally:
            sim.stop()
