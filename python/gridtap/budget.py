"""Call budgets for rate-limited APIs: how often a plugin may call which endpoint.

Cloud APIs (Growatt's OpenAPI, say) answer "too often" with an error and, worse, count the
refused calls too. A :class:`Budget` decides *before* a call whether it is allowed, so the
limits are never hit in the first place:

* ``spacing``: at least this many seconds between any two calls (of any endpoint);
* :class:`Limit` per endpoint: ``interval`` seconds between two calls of one *key* (the
  endpoint with one set of parameters: ``plant/data?plant_id=1`` and ``?plant_id=2`` are two
  keys) and ``per_day`` calls of the endpoint (any parameters) in any rolling 24 hours;
* back-off windows set from outside (:meth:`Budget.block`, :meth:`Budget.failure`) on a key,
  an endpoint or everything (:data:`EVERYTHING`), after a rate-limit answer, a refused token
  or a broken transport.

:meth:`Budget.check` says whether a call is allowed and, if not, when it will be and why;
:meth:`Budget.acquire` waits a bounded time for that moment and books the call.

With a ``path`` the state lives in a private JSON file (0600, written atomically), read
again before every decision under an exclusive file lock, so the limits hold across restarts,
``--once`` runs and several processes sharing one token. The file is rewritten only when the
ledger changed (a call costs two writes: its booking and its answer), never for a question.
Memory and file stay bounded: one time per key (at most ``max_keys``), at most ``per_day``
times per capped endpoint, expired windows dropped. A file that is there but unreadable is
not taken for "no calls yet": everything waits one interval (:meth:`Budget._distrust`).

Time comes from a :class:`Clock` (wall-clock seconds, since the state outlives the process);
:class:`ManualClock` lets a test run 24 simulated hours in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import state

#: The scope of a back-off that stops every call.
EVERYTHING = "*"
DAY = 86400.0
_VERSION = 1


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (Unix time)."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a manual clock just moves on)."""


class SystemClock:
    """The real clock. :meth:`wake` cuts short every sleep in progress (a plugin's ``close``)."""

    def __init__(self) -> None:
        self._woken = threading.Event()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._woken.wait(seconds)

    def wake(self) -> None:
        self._woken.set()


class ManualClock:
    """A clock that moves only when told to: :meth:`advance`, :meth:`set`, or a :meth:`sleep`."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)


@dataclass(frozen=True)
class Limit:
    """The limits of one endpoint: ``interval`` seconds between two calls with the same
    parameters, and at most ``per_day`` calls (any parameters) in any 24 hours."""

    interval: float = 0.0
    per_day: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The answer to "may I call now?": ``at`` is the earliest time the call is allowed
    (now when ``allowed``), ``reason`` what holds it back ("" when allowed)."""

    allowed: bool
    at: float
    reason: str = ""

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until the call is allowed (0 when it is)."""
        return max(0.0, self.at - now)


def call_key(endpoint: str, params: Mapping[str, Any] | None = None) -> str:
    """``endpoint?a=1&b=2``: one key per endpoint and set of parameters (order-blind)."""
    if not params:
        return endpoint
    return endpoint + "?" + urllib.parse.urlencode(sorted((str(k), str(v)) for k, v in params.items()))


class Budget:
    """See the module docstring. Thread-safe; several processes may share one ``path``."""

    def __init__(
        self,
        *,
        spacing: float = 0.0,
        limits: Mapping[str, Limit] | None = None,
        default: Limit | None = None,
        path: str | Path | None = None,
        clock: Clock | None = None,
        max_keys: int = 4096,
    ) -> None:
        self.spacing = float(spacing)
        self.limits = dict(limits or {})
        self.default = default or Limit()
        self.path = Path(path) if path is not None else None
        self.clock: Clock = clock or SystemClock()
        self.max_keys = max_keys
        self._lock = threading.RLock()
        self._state = _empty()

    # --- limits -----------------------------------------------------------------------
    def limit(self, endpoint: str) -> Limit:
        """The limits of ``endpoint`` (``default`` for one without its own)."""
        return self.limits.get(endpoint, self.default)

    # --- questions ----------------------------------------------------------------------
    def check(self, endpoint: str, params: Mapping[str, Any] | None = None) -> Verdict:
        """May ``endpoint`` with ``params`` be called now? If not, when and why not."""
        with self._locked() as st:
            return self._verdict(st, endpoint, call_key(endpoint, params), self.clock.time())

    def next_allowed(self, endpoint: str, params: Mapping[str, Any] | None = None) -> float:
        """The earliest Unix time ``endpoint`` with ``params`` may be called."""
        return self.check(endpoint, params).at

    def calls_today(self, endpoint: str) -> int:
        """Calls of ``endpoint`` in the last 24 hours (counted for endpoints with ``per_day``)."""
        with self._locked() as st:
            now = self.clock.time()
            return sum(1 for t in st["day"].get(endpoint, []) if t > now - DAY)

    def blocked(self) -> dict[str, tuple[float, str]]:
        """Back-off windows still running: {scope: (until, reason)}."""
        with self._locked() as st:
            now = self.clock.time()
            return {s: (b["until"], b["reason"]) for s, b in st["blocks"].items() if b["until"] > now}

    # --- booking --------------------------------------------------------------------------
    def acquire(self, endpoint: str, params: Mapping[str, Any] | None = None, *, max_wait: float = 0.0) -> Verdict:
        """Book a call of ``endpoint`` with ``params``, waiting up to ``max_wait`` seconds for it
        to be allowed. Returns the verdict: when ``allowed`` the call is booked (counted now)
        and the caller makes it, then calls :meth:`done`; otherwise nothing was booked."""
        key = call_key(endpoint, params)
        deadline = self.clock.time() + max_wait
        while True:
            with self._locked(write=True) as st:
                now = self.clock.time()
                verdict = self._verdict(st, endpoint, key, now)
                if verdict.allowed:
                    self._book(st, endpoint, key, now)
                    return verdict
            if verdict.at > deadline:
                return verdict
            self.clock.sleep(verdict.wait(self.clock.time()))

    def done(self, endpoint: str, params: Mapping[str, Any] | None = None) -> None:
        """The answer to a booked call arrived: its time is now. Measuring the interval from
        the answer (not from sending) keeps a slow first request from shortening the window
        the server sees."""
        key = call_key(endpoint, params)
        with self._locked(write=True) as st:
            now = self.clock.time()
            st["keys"][key] = max(st["keys"].get(key, 0.0), now)
            st["last"] = max(st["last"], now)

    # --- back-off -------------------------------------------------------------------------
    def block(self, scope: str, seconds: float, reason: str) -> float:
        """No call in ``scope`` (a key from :func:`call_key`, an endpoint, or :data:`EVERYTHING`)
        for ``seconds``; an existing longer window is kept. Returns the end of the window."""
        with self._locked(write=True) as st:
            until = self.clock.time() + max(0.0, seconds)
            old = st["blocks"].get(scope)
            if old is None or old["until"] < until:
                st["blocks"][scope] = {"until": until, "reason": reason}
            return max(until, old["until"] if old else 0.0)

    def unblock(self, scope: str) -> None:
        """End the back-off window and the failure streak of ``scope`` now."""
        with self._locked(write=True) as st:
            st["blocks"].pop(scope, None)
            st["failures"].pop(scope, None)

    def failure(self, scope: str, reason: str, *, base: float = 30.0, cap: float = 1800.0,
                jitter: float = 0.1) -> float:
        """One more failure in a row in ``scope``: block it for ``base`` seconds, doubling with
        every further failure up to ``cap``, with +-``jitter`` (a fraction) so clients do not
        retry in step. Returns the back-off in seconds."""
        with self._locked(write=True) as st:
            n = st["failures"].get(scope, (0, 0.0))[0] + 1
            st["failures"][scope] = (n, self.clock.time())
            delay = min(cap, base * 2 ** min(n - 1, 30))
            if jitter:
                delay *= 1 + random.uniform(-jitter, jitter)  # noqa: S311 - not cryptographic
            until = self.clock.time() + delay
            old = st["blocks"].get(scope)
            if old is None or old["until"] < until:
                st["blocks"][scope] = {"until": until, "reason": reason}
            return delay

    def success(self, scope: str) -> None:
        """A call in ``scope`` worked: the next failure starts the back-off from ``base`` again."""
        with self._locked(write=True) as st:
            st["failures"].pop(scope, None)

    def failures(self, scope: str) -> int:
        """Failures in a row in ``scope`` (0 after a :meth:`success` or a day without one)."""
        with self._locked() as st:
            return st["failures"].get(scope, (0, 0.0))[0]

    # --- the state ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """For ``/status``: running back-off windows, calls per capped endpoint today."""
        with self._locked() as st:
            now = self.clock.time()
            return {
                "blocked": {s: {"until": b["until"], "in_seconds": round(b["until"] - now, 1), "reason": b["reason"]}
                            for s, b in sorted(st["blocks"].items()) if b["until"] > now},
                "calls_today": {e: sum(1 for t in ts if t > now - DAY) for e, ts in sorted(st["day"].items())},
            }

    def _verdict(self, st: dict[str, Any], endpoint: str, key: str, now: float) -> Verdict:
        reasons: list[tuple[float, str]] = []
        for scope in (EVERYTHING, endpoint, key):
            b = st["blocks"].get(scope)
            if b is not None and b["until"] > now:
                reasons.append((b["until"], f"back-off: {b['reason']}"))
        limit = self.limit(endpoint)
        last = st["keys"].get(key)
        if last is not None and limit.interval > 0 and last + limit.interval > now:
            reasons.append((last + limit.interval, f"at most one call per {_span(limit.interval)}"))
        if limit.per_day is not None and limit.per_day <= 0:
            reasons.append((math.inf, "no calls allowed (daily cap 0)"))
        elif limit.per_day is not None:
            recent = sorted(t for t in st["day"].get(endpoint, []) if t > now - DAY)
            if len(recent) >= limit.per_day:
                # Allowed again when the oldest call that still fills the cap leaves the 24 hours.
                reasons.append((recent[len(recent) - limit.per_day] + DAY,
                                f"daily cap: {len(recent)} of {limit.per_day} calls in 24 h"))
        if self.spacing > 0 and st["last"] + self.spacing > now:
            reasons.append((st["last"] + self.spacing, f"{_span(self.spacing)} between calls"))
        if not reasons:
            return Verdict(True, now)
        at, reason = max(reasons)
        return Verdict(False, at, reason)

    def _book(self, st: dict[str, Any], endpoint: str, key: str, now: float) -> None:
        st["keys"][key] = now
        st["last"] = max(st["last"], now)
        cap = self.limit(endpoint).per_day
        if cap is not None:
            times = [t for t in st["day"].get(endpoint, []) if t > now - DAY]
            times.append(now)
            st["day"][endpoint] = sorted(times)[-cap:]

    def _prune(self, st: dict[str, Any], now: float) -> None:
        longest = max([self.default.interval, *(lim.interval for lim in self.limits.values())], default=0.0)
        horizon = now - max(longest, self.spacing, 1.0)
        st["keys"] = {k: t for k, t in st["keys"].items() if t > horizon}
        if len(st["keys"]) > self.max_keys:  # keep the newest: they are the ones still limiting
            st["keys"] = dict(sorted(st["keys"].items(), key=lambda kv: kv[1])[-self.max_keys:])
        st["day"] = {e: ts for e, ts in ((e, [t for t in ts if t > now - DAY]) for e, ts in st["day"].items()) if ts}
        st["blocks"] = {s: b for s, b in st["blocks"].items() if b["until"] > now}
        if len(st["blocks"]) > self.max_keys:
            st["blocks"] = dict(sorted(st["blocks"].items(), key=lambda kv: kv[1]["until"])[-self.max_keys:])
        # A failure streak is forgotten after a day without failures (or at the first success).
        st["failures"] = {s: f for s, f in st["failures"].items() if f[1] > now - DAY}
        if len(st["failures"]) > self.max_keys:
            st["failures"] = dict(sorted(st["failures"].items(), key=lambda kv: kv[1][1])[-self.max_keys:])

    @contextlib.contextmanager
    def _locked(self, write: bool = False) -> Iterator[dict[str, Any]]:
        """The state, fresh from the file (under an exclusive lock when there is a file), and
        written back when ``write``."""
        with self._lock:
            if self.path is None:
                yield self._state
                if write:
                    self._prune(self._state, self.clock.time())
                return
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                loaded = _load(state.read_json(self.path))
                if loaded is None and self.path.exists():
                    loaded = self._distrust(self.path)
                self._state = loaded or _empty()
                before = _dump(self._state) if write else ""
                yield self._state
                if write:
                    self._prune(self._state, self.clock.time())
                    # Written only when it changed: every write is an fsync, and on a Raspberry
                    # Pi's SD card a ledger rewritten for every no-op adds up.
                    if _dump(self._state) != before:
                        state.write_json(self.path, self._state)
            finally:
                os.close(fd)  # closing releases the lock


    def _distrust(self, path: Path) -> dict[str, Any]:
        """A ledger for a state file that is there but unreadable (damaged, or a newer
        gridtap's): what it said is lost, so act as if every key was called just now - one
        interval without calls, rather than calls the server may count as too many. Written
        at once, so this happens once."""
        now = self.clock.time()
        longest = max([self.default.interval, *(lim.interval for lim in self.limits.values()), self.spacing])
        st = _empty()
        st["last"] = now
        if longest > 0:
            st["blocks"][EVERYTHING] = {"until": now + longest, "reason": f"{path.name} was unreadable; "
                                                                           "waiting one interval to be safe"}
        state.write_json(path, st)
        return st


def _empty() -> dict[str, Any]:
    return {"v": _VERSION, "last": 0.0, "keys": {}, "day": {}, "blocks": {}, "failures": {}}


def _dump(st: dict[str, Any]) -> str:
    return json.dumps(st, separators=(",", ":"), sort_keys=True)


def _load(doc: Any) -> dict[str, Any] | None:
    """The state in a file's JSON ``doc``; None when there is none or it is foreign or damaged."""
    st = _empty()
    if not isinstance(doc, dict) or doc.get("v") != _VERSION:
        return None
    try:
        st["last"] = float(doc.get("last", 0.0))
        st["keys"] = {str(k): float(t) for k, t in dict(doc.get("keys", {})).items()}
        st["day"] = {str(e): [float(t) for t in ts] for e, ts in dict(doc.get("day", {})).items()}
        st["blocks"] = {str(s): {"until": float(b["until"]), "reason": str(b.get("reason", ""))}
                        for s, b in dict(doc.get("blocks", {})).items()}
        st["failures"] = {str(s): (int(f[0]), float(f[1])) for s, f in dict(doc.get("failures", {})).items()}
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return st


def _span(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
