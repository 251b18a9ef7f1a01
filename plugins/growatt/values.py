"""Growatt's loose values made into numbers we can trust (spec §5, §10.5). No I/O.

* keys: matched case-insensitively and without underscores (``etogridTotal``, ``etoGridToday``
  and ``e_to_grid_total`` all work), through the alias lists in :mod:`.metrics`;
* values: JSON numbers or numeric strings become floats; ``""``, ``null``, non-numbers and
  the ``-0.1`` "not available" sentinel become absent, never 0; float32 noise is rounded
  (``21.600000381469727`` -> ``21.6``);
* time: ``"YYYY-MM-DD HH:MM[:SS]"`` in the plant's zone (``"GMT+8"``) to Unix time;
* :class:`Guards`: lifetime totals never decrease, and "today" counters do not count
  yesterday twice (the midnight bounce ``x -> 0 -> x -> small``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

SENTINEL = -0.1
_FLOAT32 = struct.Struct("<f")


def norm_key(key: str) -> str:
    return key.replace("_", "").lower()


def normalise_record(data: Any) -> dict[str, Any]:
    """A flat record with normalised keys; a key given twice (two spellings) keeps the first
    one that has a value."""
    out: dict[str, Any] = {}
    if not isinstance(data, Mapping):
        return out
    for key, value in data.items():
        if not isinstance(key, str):
            continue
        k = norm_key(key)
        if k not in out or (number(out[k]) is None and number(value) is not None):
            out[k] = value
    return out


def denoise(x: float) -> float:
    """Round away the noise of a float32 sent as a double: 7 significant digits for values
    that are exactly a float32 (all it holds), 3 decimals otherwise (spec §5)."""
    if x == 0 or not math.isfinite(x):
        return x
    try:
        is_f32 = _FLOAT32.unpack(_FLOAT32.pack(x))[0] == x
    except OverflowError:
        is_f32 = False
    if is_f32 and x != round(x, 3):
        digits = 7 - int(math.floor(math.log10(abs(x)))) - 1
        return round(x, max(0, digits))
    return round(x, 3)


def number(value: Any) -> float | None:
    """A finite number, or None for ``""``, null, booleans, text and the -0.1 sentinel."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            x = float(text)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(x):
        return None
    x = denoise(x)
    if x == SENTINEL:
        return None
    return x


def first(record: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    """The first of ``keys`` (normalised) with a number in ``record``."""
    for key in keys:
        x = number(record.get(key))
        if x is not None:
            return x
    return None


def text(record: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        v = record.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
    return None


# --- time ------------------------------------------------------------------------------------

_GMT = re.compile(r"^\s*(?:GMT|UTC)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?\s*$", re.IGNORECASE)


def parse_zone(name: str | None) -> dt.tzinfo | None:
    """``GMT+8``, ``UTC-5``, ``GMT+05:30``, ``+0100`` or an IANA name (``Europe/Berlin``)."""
    if not name or not isinstance(name, str):
        return None
    text_ = name.strip()
    if text_.upper() in ("GMT", "UTC", "Z"):
        return dt.UTC
    m = _GMT.match(text_)
    if m:
        hours, minutes = int(m.group(2)), int(m.group(3) or 0)
        if hours > 14 or minutes >= 60:
            return None
        sign = -1 if m.group(1) == "-" else 1
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(text_)
    except (ValueError, KeyError, OSError):
        return None


def parse_local_time(value: Any, zone: dt.tzinfo | None) -> float | None:
    """``"2018-12-13 11:03:52"`` (or ``"... 11:03"``) in ``zone`` (the host's when None)."""
    if not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            naive = dt.datetime.strptime(value.strip(), fmt)
        except ValueError:
            continue
        local = naive.replace(tzinfo=zone) if zone is not None else naive.astimezone()
        return local.timestamp()
    return None


def local_date(ts: float, zone: dt.tzinfo | None) -> dt.date:
    moment = dt.datetime.fromtimestamp(ts, zone) if zone is not None else dt.datetime.fromtimestamp(ts)
    return moment.date()


def seconds_into_day(ts: float, zone: dt.tzinfo | None) -> float:
    moment = dt.datetime.fromtimestamp(ts, zone) if zone is not None else dt.datetime.fromtimestamp(ts)
    return moment.hour * 3600 + moment.minute * 60 + moment.second


# --- guards ----------------------------------------------------------------------------------

_EPS = 1e-6


class Guards:
    """Per-series memory that makes Growatt's counters behave (spec §10.5 rules 4 and 5).

    * :meth:`total`: a lifetime total never decreases. A lower value (Growatt sends 0 around
      midnight) is dropped; only when ``resets_after`` readings in a row agree on a lower,
      non-decreasing value is it taken as a real reset (a replaced inverter).
    * :meth:`today`: a "today" counter does not decrease within a day; on a new day (by the
      data's own date) yesterday's final value is remembered, and a reading that comes back
      to it or above (the stale "x" after the midnight 0, or yesterday's value reported in
      the morning) is dropped until a smaller non-zero value shows today has begun, or noon.

    JSON-serialisable (:meth:`to_json`) so a ``--once`` run remembers the previous one.
    """

    MAX_SERIES = 10_000
    resets_after = 12

    def __init__(self, doc: Any = None) -> None:
        self.totals: dict[str, dict[str, Any]] = {}
        self.todays: dict[str, dict[str, Any]] = {}
        if isinstance(doc, Mapping):
            self.totals = {str(k): dict(v) for k, v in dict(doc.get("totals", {})).items() if isinstance(v, dict)}
            self.todays = {str(k): dict(v) for k, v in dict(doc.get("todays", {})).items() if isinstance(v, dict)}

    def to_json(self) -> dict[str, Any]:
        return {"totals": self.totals, "todays": self.todays}

    def total(self, series: str, value: float) -> float | None:
        if value < 0:
            return None
        st = self.totals.get(series)
        if st is None:
            self._room(self.totals)
            self.totals[series] = {"last": value, "lower": []}
            return value
        last = float(st["last"])
        if value >= last - _EPS:
            st["last"], st["lower"] = max(value, last), []
            return value
        lower = [float(x) for x in st.get("lower", [])]
        if value > 0 and (not lower or value >= lower[-1] - _EPS):
            lower.append(value)
        else:
            lower = []
        if len(lower) >= self.resets_after:
            st["last"], st["lower"] = value, []
            return value
        st["lower"] = lower[-self.resets_after:]
        return None

    def today(self, series: str, value: float, day: str, seconds_of_day: float) -> float | None:
        if value < 0:
            return None
        st = self.todays.get(series)
        if st is None:
            self._room(self.todays)
            self.todays[series] = {"last": value, "day": day, "guard": None}
            return value
        last = float(st["last"])
        if day != st["day"]:
            if day < st["day"]:
                return None  # a reading older than one already taken
            st["guard"] = last if last > _EPS else None
            st["day"], st["last"] = day, 0.0
            last = 0.0
        guard = st.get("guard")
        if guard is not None and seconds_of_day >= 12 * 3600:
            guard = st["guard"] = None
        if guard is not None:
            if value > _EPS and value >= float(guard) - _EPS:
                return None  # yesterday's value again
            if value > _EPS:
                st["guard"] = None
        if value < last - _EPS:
            return None  # within a day the counter only grows; a dip is a glitch
        st["last"] = value
        return value

    def _room(self, table: dict[str, dict[str, Any]]) -> None:
        if len(table) >= self.MAX_SERIES:
            table.pop(next(iter(table)))
