"""The budgeted scheduler: which Growatt calls one collection makes, and what it serves.

Spec §7 is normative here:

1. one token-scoped :class:`gridtap.budget.Budget`: at least ``spacing`` (3 s) between any
   two calls, one call per endpoint and parameters per ``window`` (5 min), ``plant/list`` and
   ``plant/energy`` at most 10 a day; its state file outlives the process, so restarts and
   ``--once`` runs keep the limits;
2. discovery (``plant/list``, ``device/list``) cached on disk for ``discovery_ttl`` (6 h);
3. 10012: that endpoint backs off for a window; the last values stay served, marked stale
   (``growatt_reading_stale 1``, their own data time and age) - never zeros, never fresh;
4. transport errors (non-2xx, an HTML page instead of JSON, no answer): every call backs off,
   30 s doubling to 30 min, jittered;
5. 10011 on discovery: the token is refused - one clear error and a long back-off; 10011 on
   any other endpoint: that endpoint is switched off for that plant or device for
   ``disable_for`` (12 h) and the rest carries on.

A collection calls ``plant/data`` per plant and one "last data" per device (whichever are
due), then at most one optional call (``plant/details``, a device's ``*_data_info``) that is
due once per ``discovery_ttl``. A call not allowed yet is not made: the cached values are
served (stale unless this process fetched them within the last two windows and their last
refresh did not fail). Values older than ``stale_after`` are not served at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gridtap import state
from gridtap.budget import EVERYTHING, Budget, Clock, Limit, call_key
from gridtap.errors import DeviceError
from gridtap.model import Metric

from . import api
from . import metrics as m
from . import values as v

log = logging.getLogger("gridtap.growatt")

_CACHE_VERSION = 1
#: The longest back-off of a call whose device or plant "does not exist".
_NOT_FOUND_CAP = 2 * 3600.0
#: How long an empty plant list is believed (8 lists a day at most: the cap is 10).
_NO_PLANT_RETRY = 3 * 3600.0


@dataclass
class Settings:
    window: float = 300.0
    spacing: float = 3.0
    discovery_ttl: float = 6 * 3600.0
    stale_after: float = 3600.0
    disable_for: float = 12 * 3600.0
    plant_id: str | None = None
    device_sns: tuple[str, ...] = ()
    timezone: str | None = None
    options: m.Options = field(default_factory=m.Options)

    @property
    def max_wait(self) -> float:
        """How long a collection waits for a call to become allowed (the spacing, plus a little
        of a window that is about to end); longer waits are skipped and the cache served."""
        return self.spacing + min(10.0, self.window * 0.05)


@dataclass
class Reading:
    """What one successful call gave, and how it has fared since."""

    endpoint: str
    plant_id: str
    device_sn: str
    record: dict[str, Any]
    fetched_at: float
    data_time: float | None = None
    values: dict[int, float] = field(default_factory=dict)
    lost: bool = False
    #: Fetched by this process (not loaded from the cache file of an earlier run).
    here: bool = True
    #: The last refresh failed (why), so the values are behind what the API has.
    failed: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "plant_id": self.plant_id, "device_sn": self.device_sn,
                "record": self.record, "fetched_at": self.fetched_at, "data_time": self.data_time,
                "values": {str(k): x for k, x in self.values.items()}, "lost": self.lost}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Reading:
        return cls(str(doc["endpoint"]), str(doc.get("plant_id", "")), str(doc.get("device_sn", "")),
                   dict(doc.get("record", {})), float(doc["fetched_at"]),
                   float(doc["data_time"]) if doc.get("data_time") is not None else None,
                   {int(k): float(x) for k, x in dict(doc.get("values", {})).items()}, bool(doc.get("lost")),
                   here=False)


@dataclass
class Device:
    plant_id: str
    sn: str
    type: int | None
    record: dict[str, Any]

    @property
    def family(self) -> api.Family | None:
        return api.FAMILIES.get(self.type) if self.type is not None else None


@dataclass
class Discovery:
    at: float  # when the device lists were read
    signature: str
    plants: dict[str, dict[str, Any]]  # plant_id -> plant/list record (or {} when configured)
    devices: dict[str, list[dict[str, Any]]]  # plant_id -> device/list records
    complete: bool = True
    plants_at: float | None = None  # when plant/list was read (None: as ``at``)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "signature": self.signature, "plants": self.plants, "devices": self.devices,
                "complete": self.complete, "plants_at": self.plants_at}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Discovery:
        return cls(float(doc["at"]), str(doc["signature"]), {str(k): dict(x) for k, x in dict(doc["plants"]).items()},
                   {str(k): [dict(d) for d in x] for k, x in dict(doc["devices"]).items()},
                   bool(doc.get("complete", True)),
                   float(doc["plants_at"]) if doc.get("plants_at") is not None else None)


def file_stem(root: str, token: str) -> str:
    """One cache and budget per (API root, token): a name that does not reveal the token."""
    return "api-" + hashlib.sha256(f"{root}\0{token}".encode()).hexdigest()[:16]


def make_budget(settings: Settings, path: Path | None, clock: Clock | None) -> Budget:
    w = settings.window
    limits = {e.path: Limit(interval=w, per_day=e.per_day) for e in api.ENDPOINTS.values()}
    return Budget(spacing=settings.spacing, default=Limit(interval=w), limits=limits, path=path, clock=clock)


class AuthRefused(DeviceError):
    """The API refused the token on discovery."""


class Poller:
    def __init__(self, client: api.Client, settings: Settings, cache_dir: Path | None, stem: str,
                 clock: Clock, region_hint: str = "") -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.region_hint = region_hint
        self.cache_path = cache_dir / f"{stem}.json" if cache_dir is not None else None
        self.budget = make_budget(settings, cache_dir / f"{stem}.budget.json" if cache_dir else None, clock)
        self.discovery: Discovery | None = None
        self.readings: dict[str, Reading] = {}
        self.guards = v.Guards()
        self.requests: Counter[str] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        #: Whether the last :meth:`call` that gave nothing failed (an error or a running back-off),
        #: rather than waiting for its window.
        self.last_failed = False
        #: Read the device lists again at the next collection (a device "does not exist", a token
        #: refused on data that worked); ``refresh_plants``: the plant list too (a plant is gone).
        self.refresh_discovery = False
        self.refresh_plants = False
        self._said: dict[str, str] = {}
        self._lock = threading.RLock()
        self._refreshed: set[str] = set()
        self._problems: list[str] = []
        self._load_cache()

    # --- the cache file ---------------------------------------------------------------------
    def _load_cache(self) -> None:
        if self.cache_path is None:
            return
        doc = state.read_json(self.cache_path)
        if not isinstance(doc, dict) or doc.get("v") != _CACHE_VERSION:
            return
        try:
            self.guards = v.Guards(doc.get("guards"))
        except (TypeError, ValueError, AttributeError):
            self.guards = v.Guards()
        if not self._adopt(doc):
            log.info("growatt: ignoring what is unreadable in the cache file %s", self.cache_path)

    def _adopt(self, doc: Any) -> bool:
        """Take from a cache file's ``doc`` the readings and the discovery that are newer than
        ours: another process on this token and cache_dir fetched them (the shared budget let
        only one of us call). Returns False when part of ``doc`` was unreadable."""
        if not isinstance(doc, dict) or doc.get("v") != _CACHE_VERSION:
            return True
        whole = True
        with self._lock:
            for k, r in dict(doc.get("readings") or {}).items():
                try:
                    theirs = Reading.from_json(r)
                except (KeyError, TypeError, ValueError, AttributeError):
                    whole = False
                    continue
                ours = self.readings.get(k)
                if ours is None or theirs.fetched_at > ours.fetched_at:
                    self.readings[k] = theirs  # here=False: served marked stale, with its own age
            try:
                found = Discovery.from_json(doc["discovery"]) if doc.get("discovery") else None
            except (KeyError, TypeError, ValueError, AttributeError):
                return False
            if found is not None and found.signature == self.signature() and (
                    self.discovery is None or found.at > self.discovery.at):
                self.discovery = found
        return whole

    def refresh_from_cache(self) -> None:
        """What other processes sharing the cache fetched since we last looked."""
        if self.cache_path is not None:
            with self._file_lock():
                self._adopt(state.read_json(self.cache_path))

    def save(self) -> None:
        """Write discovery, readings and guards, after taking what another process wrote
        meanwhile when it is newer than ours (several pollers may share one token)."""
        if self.cache_path is None:
            return
        with self._file_lock():
            other = state.read_json(self.cache_path)
            self._adopt(other)
            readings = {k: r.to_json() for k, r in self.readings.items()}
            discovery = self.discovery.to_json() if self.discovery else None
            if isinstance(other, dict) and other.get("v") == _CACHE_VERSION:
                theirs = other.get("discovery")
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    # another process's discovery (other filters) is kept when it is newer
                    if theirs and (discovery is None or float(theirs["at"]) > discovery["at"]):
                        discovery = theirs
            horizon = self.clock.time() - max(self.settings.stale_after, 86400.0)
            readings = {k: r for k, r in readings.items() if float(r.get("fetched_at", 0)) > horizon}
            doc = {"v": _CACHE_VERSION, "discovery": discovery, "readings": readings, "guards": self.guards.to_json()}
            # Rewritten only when something changed (a collection inside a window changes nothing):
            # an fsync per collection adds up on an SD card.
            if _json_text(doc) != _json_text(other):
                state.write_json(self.cache_path, doc)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.cache_path is not None
        fd = os.open(self.cache_path.with_name(self.cache_path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- logging once per change ------------------------------------------------------------------
    def _say(self, topic: str, level: int, message: str) -> None:
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.log(level, "growatt: %s", message)

    def _quiet(self, topic: str) -> None:
        self._said.pop(topic, None)

    # --- one call -----------------------------------------------------------------------------
    def call(self, endpoint: api.Endpoint, params: Mapping[str, Any], target: str = "") -> api.Reply | None:
        """Make the call if the budget allows it now (or within ``max_wait``); None when it was
        not made or gave nothing (why: the last entry of ``problems``). Raises AuthRefused for
        a refused token on discovery."""
        key = call_key(endpoint.path, params)
        verdict = self.budget.acquire(endpoint.path, params, max_wait=self.settings.max_wait)
        if not verdict.allowed:
            # Not yet (its window, the spacing) is not a failure; a running back-off is one.
            self.last_failed = verdict.reason.startswith("back-off")
            self._problems.append(f"{endpoint.path}: next call allowed at {_clock_text(verdict.at)} "
                                  f"({verdict.reason})")
            return None
        self.last_failed = True
        with self._lock:
            self.requests[endpoint.path] += 1
        try:
            reply = self.client.call(endpoint, params)
        except api.TransportError as e:
            self.budget.done(endpoint.path, params)
            self._count_error(endpoint.path, e.code)
            delay = self.budget.failure(EVERYTHING, f"{e}", base=30.0, cap=1800.0)
            self._say("transport", logging.WARNING, f"{e}; every call waits {delay:.0f} s (transport back-off)")
            self._problems.append(f"{e} (every call backs off for {delay:.0f} s)")
            return None
        except api.ApiError as e:
            self.budget.done(endpoint.path, params)
            self._count_error(endpoint.path, e.code)
            self._api_error(endpoint, params, key, target, e)
            return None
        self.budget.done(endpoint.path, params)
        self.budget.success(EVERYTHING)
        self.budget.success(key)
        self._quiet("transport")
        self.last_failed = False
        return reply

    @property
    def last_problem(self) -> str | None:
        """Why the last call of this collection gave nothing (None when nothing went wrong)."""
        return self._problems[-1] if self._problems else None

    def _count_error(self, endpoint: str, code: str) -> None:
        with self._lock:
            self.errors[(endpoint, code)] += 1

    def _api_error(self, endpoint: api.Endpoint, params: Mapping[str, Any], key: str, target: str,
                   e: api.ApiError) -> None:
        s = self.settings
        if e.problem is api.Problem.RATE_LIMITED:
            # Another client on this token, or Growatt counting differently: skip a window of
            # this request (Growatt keys its limit on the identical request, spec §7).
            until = self.budget.block(key, s.window, f"{e.code} rate limited by Growatt")
            kept = ", the last values stay served marked stale" if key in self.readings else ""
            self._say(f"rate/{endpoint.path}", logging.WARNING,
                      f"{endpoint.path} answered {e.code} (rate limited); no call before {_clock_text(until)}{kept}")
            self._problems.append(f"{e} (rate limited; next call after {_clock_text(until)})")
            return
        if e.problem is api.Problem.AUTH:
            if endpoint.discovery:
                delay = self.budget.failure(EVERYTHING, f"token refused ({e.code} {e.message or 'permission denied'})"
                                            f" on {endpoint.path}", base=1800.0, cap=6 * 3600.0)
                raise AuthRefused(self._auth_message(e, self.clock.time() + delay))
            if key in self.readings:
                # It worked before with this token: the token may have been revoked. The next
                # collection reads the device list again, which says which one it is.
                self.refresh_discovery = True
            until = self.budget.block(key, s.disable_for, f"{e.code} permission denied: this token may not read it")
            self._say(f"auth/{key}", logging.WARNING,
                      f"{endpoint.path} for {target or 'this plant'} answered {e.code} (permission denied): "
                      f"switched off until {_clock_text(until)}; everything else carries on")
            self._problems.append(f"{e} (switched off for {target})")
            return
        if e.problem is api.Problem.NEW_DOMAIN:
            self.budget.block(EVERYTHING, s.disable_for, "the API host is retired (-1)")
            raise DeviceError(f"{e}: Growatt retired this host; set region (eu, us, cn, au) or a base_url "
                              "on openapi*.growatt.com")
        if e.problem is api.Problem.NOT_FOUND:
            self.refresh_discovery = True
            self.refresh_plants |= endpoint.path.startswith("plant/")
            # Backing off (a window, doubling to 2 h): Growatt's lists can go on naming a device
            # its data endpoint denies, and each try reads the device list again.
            delay = self.budget.failure(key, f"{e.code}: not found", base=s.window, cap=_NOT_FOUND_CAP)
            self._say(f"gone/{key}", logging.WARNING, f"{e}: not found; the "
                      f"{'plant' if self.refresh_plants else 'device'} list will be read again, this call waits "
                      f"{delay:.0f} s")
            self._problems.append(f"{e} (not found)")
            return
        delay = self.budget.failure(key, f"error {e.code}", base=s.window, cap=6 * s.window)
        self._say(f"error/{key}", logging.WARNING, f"{e}; this call waits {delay:.0f} s")
        self._problems.append(str(e))

    def _auth_message(self, e: api.ApiError, retry: float) -> str:
        hint = f" and the region ({self.region_hint})" if self.region_hint else " and base_url"
        return (f"the Growatt API refused the token ({e.code} {e.message or 'permission denied'}) on "
                f"{e.endpoint}: check the token{hint}; tokens made on the web portal often see no plant, make "
                f"one in the ShinePhone app (Me > API token); next try after {_clock_text(retry)}")

    # --- discovery ------------------------------------------------------------------------------
    def signature(self) -> str:
        return f"{self.settings.plant_id or '*'}|{','.join(sorted(self.settings.device_sns)) or '*'}"

    def discover(self) -> Discovery:
        """The plants and devices to read: from the cache while it is fresh, else from the API
        (within the budget); the previous discovery when the API cannot be asked now."""
        now = self.clock.time()
        d = self.discovery
        s = self.settings
        same = d is not None and d.signature == self.signature()
        # An empty or partly read device list is read again after an hour; the plant list, which
        # allows only 10 calls a day, is not read again for it - nor for a device that is gone
        # (the device list says that), and for a plant that is gone at most once an hour.
        devices_ttl = s.discovery_ttl if (d is not None and d.complete and any(d.devices.values())) else min(
            s.discovery_ttl, 3600.0)
        plants_ttl = min(s.discovery_ttl, 3600.0) if self.refresh_plants else s.discovery_ttl
        plants_fresh = same and d is not None and now - (d.plants_at or d.at) < plants_ttl
        if same and d is not None and not self.refresh_discovery and now - d.at < devices_ttl:
            return d
        fresh = self._discover_now(now, d, reuse_plants=plants_fresh)
        if fresh is None:
            if d is not None and d.signature == self.signature():
                if self.last_failed:  # keep the list we have; do not spend the daily calls retrying at once
                    self.budget.block(api.PLANT_LIST.path, 3600.0, "discovery failed; the cached list is used")
                return d
            raise DeviceError("no plant and device list yet: " + (self._problems[-1] if self._problems
                                                                  else "discovery not possible now"))
        self.discovery = fresh
        self.refresh_discovery = self.refresh_plants = False
        self._describe(fresh)
        self.save()
        return fresh

    def _discover_now(self, now: float, old: Discovery | None, reuse_plants: bool = False) -> Discovery | None:
        s = self.settings
        plants: dict[str, dict[str, Any]]
        plants_at = now
        if s.plant_id:
            plants = {s.plant_id: (old.plants.get(s.plant_id, {}) if old else {})}
        elif reuse_plants and old is not None:
            plants, plants_at = old.plants, old.plants_at or old.at
        else:
            reply = self.call(api.PLANT_LIST, {})
            if reply is None:
                return None
            plants = _plants(reply.data, self._say)
            if not plants:
                # Asked again every collection, the 10 lists a day would be gone within the hour.
                until = self.budget.block(api.PLANT_LIST.path, _NO_PLANT_RETRY, "plant/list listed no plant")
                raise DeviceError("plant/list lists no plant for this token: tokens made on the Growatt web "
                                  "portal often see none; make one in the ShinePhone app (Me > API token), or set "
                                  f"plant_id; next try after {_clock_text(until)}")
        devices: dict[str, list[dict[str, Any]]] = {}
        complete = True
        for pid in plants:
            reply = self.call(api.DEVICE_LIST, {"plant_id": pid, "page": 1, "perpage": 100})
            if reply is None:  # keep what we knew; plant-level data is still read
                complete = False
                devices[pid] = old.devices.get(pid, []) if old is not None else []
                continue
            devices[pid] = _devices(pid, reply.data, self._say)
        return Discovery(now, self.signature(), plants, devices, complete, plants_at)

    def _describe(self, d: Discovery) -> None:
        for pid, devs in d.devices.items():
            read, skipped = [], []
            for rec in devs:
                dev = _device(pid, rec)
                if dev.family is not None and self._selected(dev.sn):
                    read.append(f"{dev.family.name} {dev.sn}")
                elif dev.family is None:
                    what = api.OTHER_TYPES.get(dev.type or -1, f"type {dev.type}")
                    skipped.append(f"{dev.sn} ({what}: not read)")
            name = v.text(d.plants.get(pid, {}), "name")
            text = f"plant {pid}" + (f" ({name})" if name else "") + f": {len(read)} device(s) read"
            text += (": " + ", ".join(read)) if read else ""
            text += ("; skipped " + ", ".join(skipped)) if skipped else ""
            self._say(f"plant/{pid}", logging.INFO, text)
        present = {str(rec.get("device_sn")) for devs in d.devices.values() for rec in devs}
        for sn in self.settings.device_sns:
            if sn not in present and d.complete:
                self._say(f"missing/{sn}", logging.WARNING, f"device_sn {sn} is not in the device list of "
                          f"plant(s) {', '.join(d.devices) or '-'}")

    def _selected(self, sn: str) -> bool:
        return not self.settings.device_sns or sn in self.settings.device_sns

    def devices(self, d: Discovery) -> list[Device]:
        out = []
        for pid, devs in d.devices.items():
            for rec in devs:
                dev = _device(pid, rec)
                if dev.family is not None and self._selected(dev.sn) and dev.sn:
                    out.append(dev)
        return out

    # --- one collection -------------------------------------------------------------------------------
    def cycle(self) -> list[Metric]:
        with self._lock:
            self._refreshed = set()
            self._problems = []
        self.refresh_from_cache()
        refused = self.budget.check(api.PLANT_LIST.path)
        if not refused.allowed and "token refused" in refused.reason:
            # Until the back-off ends nothing is asked and nothing stale is served: the token is bad.
            raise AuthRefused(f"{refused.reason.removeprefix('back-off: ')}; next try after "
                              f"{_clock_text(refused.at)}")
        d = self.discover()
        for pid in d.plants:
            self._refresh_plant(pid, d)
        devices = self.devices(d)
        for dev in devices:
            self._refresh_device(dev)
        self._one_optional(d, devices)
        self.save()
        return self._serve(d, devices, self.clock.time())

    def zone(self, plant_id: str) -> dt.tzinfo | None:
        if self.settings.timezone:
            return v.parse_zone(self.settings.timezone)
        for endpoint in (api.PLANT_DATA.path, api.PLANT_DETAILS.path):
            r = self.readings.get(call_key(endpoint, {"plant_id": plant_id}))
            if r is not None:
                zone = v.parse_zone(r.record.get("timezone"))
                if zone is not None:
                    return zone
        return None

    def _refresh_plant(self, pid: str, d: Discovery) -> None:
        params = {"plant_id": pid}
        key = call_key(api.PLANT_DATA.path, params)
        if self._is_disabled(api.PLANT_DATA.path, key):
            return
        reply = self.call(api.PLANT_DATA, params, target=f"plant {pid}")
        if reply is None:
            self._mark_failed(key)
            return
        record = v.normalise_record(reply.data)
        zone = v.parse_zone(self.settings.timezone) if self.settings.timezone else v.parse_zone(
            record.get("timezone")) or self.zone(pid)
        m.guard_plant(pid, record, self.guards, zone)
        when = v.parse_local_time(record.get("lastupdatetime"), zone)
        self._store(key, Reading(api.PLANT_DATA.path, pid, "", record, self.clock.time(), when))

    def _refresh_device(self, dev: Device) -> None:
        fam = dev.family
        assert fam is not None
        params = {fam.last_param: dev.sn}
        key = call_key(fam.last.path, params)
        if self._is_disabled(fam.last.path, key):
            return
        reply = self.call(fam.last, params, target=dev.sn)
        if reply is None:
            self._mark_failed(key)
            return
        record = v.normalise_record(reply.data)
        zone = self.zone(dev.plant_id)
        when = v.parse_local_time(record.get("time"), zone)
        lost = record.get("lost") is True or str(record.get("lost")).lower() == "true"
        reading = m.DeviceReading(dev.plant_id, dev.sn, fam.name, record, when, lost)
        m.guard_device(reading, self.guards, zone)
        self._store(key, Reading(fam.last.path, dev.plant_id, dev.sn, record, self.clock.time(), when,
                                 reading.values, lost))

    def _one_optional(self, d: Discovery, devices: list[Device]) -> None:
        """At most one optional call per collection, the one longest due (plant names and
        time zones, device firmware): they change rarely and must not crowd out live data."""
        now = self.clock.time()
        due: list[tuple[float, api.Endpoint, dict[str, Any], str, str, str]] = []
        for pid in d.plants:
            params = {"plant_id": pid}
            due.append((self._fetched_at(api.PLANT_DETAILS.path, params), api.PLANT_DETAILS, params, pid, "",
                        f"plant {pid}"))
        for dev in devices:
            assert dev.family is not None
            params = {"device_sn": dev.sn}
            due.append((self._fetched_at(dev.family.info.path, params), dev.family.info, params, dev.plant_id,
                        dev.sn, dev.sn))
        for fetched, endpoint, params, pid, sn, target in sorted(due, key=lambda x: x[0]):
            key = call_key(endpoint.path, params)
            if now - fetched < self.settings.discovery_ttl or self._is_disabled(endpoint.path, key):
                continue
            if self.budget.check(endpoint.path, params).wait(now) > self.settings.max_wait:
                continue
            reply = self.call(endpoint, params, target=target)
            if reply is not None:
                self._store(key, Reading(endpoint.path, pid, sn, v.normalise_record(reply.data), self.clock.time()))
            return

    def _fetched_at(self, endpoint: str, params: Mapping[str, Any]) -> float:
        r = self.readings.get(call_key(endpoint, params))
        return r.fetched_at if r is not None else 0.0

    def _is_disabled(self, endpoint: str, key: str) -> bool:
        verdict = self.budget.check(endpoint, _params_of(key))
        if not verdict.allowed and "permission denied" in verdict.reason:
            self._problems.append(f"{endpoint}: switched off until {_clock_text(verdict.at)} (permission denied)")
            return True
        return False

    def _store(self, key: str, reading: Reading) -> None:
        with self._lock:
            self.readings[key] = reading
            self._refreshed.add(key)

    def _mark_failed(self, key: str) -> None:
        r = self.readings.get(key)
        if r is not None and self.last_failed:
            r.failed = self._problems[-1] if self._problems else "failed"

    # --- what is served -----------------------------------------------------------------------------
    def _freshness(self, key: str, r: Reading, now: float) -> list[Metric]:
        refreshed = key in self._refreshed
        stale = not refreshed and (not r.here or r.failed is not None
                                   or now - r.fetched_at > 2 * self.settings.window)
        if refreshed:
            r.failed = None
        labels = {k: x for k, x in (("endpoint", r.endpoint), ("plant_id", r.plant_id), ("device_sn", r.device_sn))
                  if x}
        return [m.READING_STALE(1 if stale else 0, **labels), m.READING_AGE(max(0.0, now - r.fetched_at), **labels)]

    def _serve(self, d: Discovery, devices: list[Device], now: float) -> list[Metric]:
        s = self.settings
        out: list[Metric] = []
        served = 0
        for pid, listed in d.plants.items():
            details = self.readings.get(call_key(api.PLANT_DETAILS.path, {"plant_id": pid}))
            info = {**listed, **(details.record if details else {})}
            data_key = call_key(api.PLANT_DATA.path, {"plant_id": pid})
            data = self.readings.get(data_key)
            if data is not None and "timezone" not in info and data.record.get("timezone"):
                info["timezone"] = data.record["timezone"]
            out.append(m.plant_info(pid, info))
            zone = self.zone(pid)
            has_peak = False
            if data is not None and now - data.fetched_at <= s.stale_after:
                samples = m.plant_metrics(pid, data.record, s.options, now, zone)
                has_peak = any(x.definition is m.PLANT_PEAK_POWER for x in samples)
                out += samples + self._freshness(data_key, data, now)
                served += 1
            peak = v.first(info, ("peakpower",))
            if not has_peak and peak:
                out.append(m.PLANT_PEAK_POWER(v.denoise(peak * 1000.0), plant_id=pid))
        for dev in devices:
            fam = dev.family
            assert fam is not None
            info_r = self.readings.get(call_key(fam.info.path, {"device_sn": dev.sn}))
            firmware = v.text(info_r.record, "fwversion", "firmwareversion", "innerversion") if info_r else None
            out.append(m.device_info(dev.plant_id, dev.record, fam.name, firmware or ""))
            key = call_key(fam.last.path, {fam.last_param: dev.sn})
            r = self.readings.get(key)
            if r is None or now - r.fetched_at > s.stale_after:
                continue
            reading = m.DeviceReading(dev.plant_id, dev.sn, fam.name, r.record, r.data_time, r.lost, r.values,
                                      r.fetched_at)
            out += m.device_metrics(reading, s.options, now, self.zone(dev.plant_id))
            out += self._freshness(key, r, now)
            served += 1
        if not served:
            problems = list(dict.fromkeys(self._problems))
            if not d.plants or (not devices and not problems):
                reason = "no plant or device to read"
            else:
                expired = any(r.endpoint != api.PLANT_DETAILS.path and not r.endpoint.endswith("_info")
                              for r in self.readings.values())
                reason = (f"no values fetched within stale_after ({_span(s.stale_after)}): " if expired
                          else "no values yet: ") + ("; ".join(problems[:3]) if problems else "nothing fetched")
            raise DeviceError(reason)
        return out

    # --- diagnostics and status ------------------------------------------------------------------------
    def diagnostics(self) -> list[Metric]:
        now = self.clock.time()
        out: list[Metric] = []
        with self._lock:
            for endpoint, n in sorted(self.requests.items()):
                out.append(m.API_REQUESTS(n, endpoint=endpoint))
            for (endpoint, code), n in sorted(self.errors.items()):
                out.append(m.API_ERRORS(n, endpoint=endpoint, code=code))
        blocks = self.budget.blocked()
        disabled = sorted((scope.partition("?")[0], _target(scope)) for scope, (_u, reason) in blocks.items()
                          if "permission denied" in reason)
        backoff: dict[str, float] = {"*": 0.0, **{e: 0.0 for e in self.requests}}
        for scope, (until, reason) in blocks.items():
            if "permission denied" in reason:
                continue
            endpoint = "*" if scope == EVERYTHING else scope.partition("?")[0]
            backoff[endpoint] = max(backoff.get(endpoint, 0.0), until - now)
        for endpoint, seconds in sorted(backoff.items()):
            out.append(m.API_BACKOFF(round(max(0.0, seconds), 3), endpoint=endpoint))
        for e in api.ENDPOINTS.values():
            if e.per_day is not None and (e.path in self.requests or self.budget.calls_today(e.path)):
                out.append(m.API_DAILY_CALLS(self.budget.calls_today(e.path), endpoint=e.path))
                out.append(m.API_DAILY_LIMIT(e.per_day, endpoint=e.path))
        for endpoint, target in disabled:
            out.append(m.API_DISABLED(1, endpoint=endpoint, target=target))
        return out

    def status(self) -> dict[str, Any]:
        """For ``/status`` (called on the listener's thread while a collection may run)."""
        with self._lock:
            return self._status()

    def _status(self) -> dict[str, Any]:
        now = self.clock.time()
        d = self.discovery
        snap = self.budget.snapshot()
        return {
            "api": self.client.root,
            "discovery": None if d is None else {
                "age_seconds": round(now - d.at), "plants": sorted(d.plants),
                "devices": {pid: [str(x.get("device_sn")) for x in devs] for pid, devs in d.devices.items()}},
            "budget": {"spacing_seconds": self.settings.spacing, "window_seconds": self.settings.window,
                       "blocked": {k: {"until": _clock_text(b["until"]), "reason": b["reason"]}
                                   for k, b in snap["blocked"].items()},
                       "calls_today": snap["calls_today"]},
            "readings": {k: {"age_seconds": round(now - r.fetched_at), "failed": r.failed}
                         for k, r in sorted(self.readings.items())},
        }


def _json_text(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str)


def _target(key: str) -> str:
    """The plant or device a call key is about: ``plant 4242`` or the serial number."""
    params = _params_of(key)
    for name in ("tlx_sn", "mix_sn", "device_sn"):
        if params.get(name):
            return params[name]
    return f"plant {params['plant_id']}" if params.get("plant_id") else ""


def _params_of(key: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(key.partition("?")[2]))


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _clock_text(ts: float) -> str:
    if ts == float("inf"):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _plants(data: Any, say: Any) -> dict[str, dict[str, Any]]:
    rows = data.get("plants") if isinstance(data, dict) else None
    rows = rows if isinstance(rows, list) else []
    out = {}
    for row in rows:
        if isinstance(row, dict) and row.get("plant_id") not in (None, ""):
            out[str(row["plant_id"])] = row
    count = data.get("count") if isinstance(data, dict) else None
    if isinstance(count, int) and count != len(rows):
        say("plants/count", logging.INFO, f"plant/list says count {count} but lists {len(rows)} plant(s); "
            "using the list")
    return out


def _devices(plant_id: str, data: Any, say: Any) -> list[dict[str, Any]]:
    rows = data.get("devices") if isinstance(data, dict) else None
    rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    count = data.get("count") if isinstance(data, dict) else None
    if isinstance(count, int) and count != len(rows):
        say(f"devices/count/{plant_id}", logging.WARNING,
            f"device/list of plant {plant_id} says count {count} but lists {len(rows)} device(s) (a known Growatt "
            "API inconsistency); using the list")
    return rows


def _device(plant_id: str, rec: Mapping[str, Any]) -> Device:
    raw = rec.get("type")
    try:
        kind = int(raw) if raw is not None and not isinstance(raw, bool) else None
    except (TypeError, ValueError):
        kind = None
    return Device(plant_id, str(rec.get("device_sn") or ""), kind, dict(rec))
