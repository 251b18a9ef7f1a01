"""Keeping a wanted SGReady state on an ISG, and the Alertmanager webhook that asks for one.

The ISG does not latch SGReady: it may revert an input 30-60 s after it was written (spec §3.3),
and every write lands in its flash (rated ~10^6 cycles). So a requested state is re-written when
the ISG is seen to have reverted it (its inputs are read back every ``check_every`` seconds:
reads cost no flash), and otherwise every :meth:`SgreadyKeeper.reassert_period`: by default
``REASSERT_READABLE`` where the inputs read back (a revert the read-back cannot see is the only
thing left to guard against), ``MIN_REASSERT`` where they read as 0x8000 (then the period is all
there is). The floor keeps a typo like ``sgready_reassert: 5`` (seconds) from wearing the flash
out within weeks. README "SGReady" has the arithmetic. Normal is not re-asserted: it is where
the ISG falls back by itself.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gridtap.model import Metric

from . import metrics as m

if TYPE_CHECKING:
    from gridtap.routes import Request, Response

    from .modbus import ModbusLink

log = logging.getLogger("gridtap.isg")

MIN_REASSERT = 30.0
REASSERT_READABLE = 300.0
SGREADY_CHECK = 10.0
#: SGReady "normal": what the ISG falls back to by itself, so it is written once, not re-asserted.
NORMAL = 2
_BACKOFF_NOTE = re.compile(r" \(next try in \d+s\)$")


class SgreadyKeeper:
    """The state one ISG was asked for, its writes, and the thread that keeps it.

    ``link`` gives the device's Modbus link (opened on first use), ``family`` its controller
    family ("wpm", "lwz" or None while unknown); ``reassert`` is the configured period (None: the
    default that suits the device's read-back).
    """

    def __init__(self, device: str, link: Callable[[], ModbusLink], family: Callable[[], str | None], *,
                 switch_on: bool, reassert: float | None) -> None:
        self.device = device
        self._link = link
        self._family = family
        self.switch_on = switch_on
        self.reassert = reassert
        #: Seconds between read-backs of the inputs while a state is wanted (tests shorten it).
        self.check_every = SGREADY_CHECK
        self.requested: int | None = None
        # When the state was last written: wall clock for /status, monotonic for the schedule.
        self._written_wall = 0.0
        self._written_at: float | None = None
        self._next_reassert = 0.0
        self._next_check = 0.0
        #: Whether the ISG's inputs read back (None: not known yet); decides the default period.
        self.readback: bool | None = None
        self.reverts = 0  # reverts seen on the read-back and written again
        self.actions: Counter[str] = Counter()
        self.errors = 0
        self.writes = 0
        self._note = ""
        self._reassert_error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name=f"isg-sgready-{self.device}", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    # --- asking for a state ------------------------------------------------------------------------
    def request(self, state: int) -> tuple[bool, list[str]]:
        """Ask for ``state``: written now, unless the same state was written successfully within
        the re-assert period (Alertmanager repeats its notifications). Returns (written, lines)."""
        from . import sgready

        with self._lock:
            period = self.reassert_period()
            age = None if self._written_at is None else time.monotonic() - self._written_at
            if state == self.requested and age is not None and age < period and not self._reassert_error:
                return False, [f"SGReady {sgready.describe_state(state)} was written {age:.0f}s ago; not written "
                               "again" + ("" if state == NORMAL else f" (re-asserted every {period:g}s)")]
            result = sgready.apply(self._link(), state, switch_on=self.switch_on, family=self._family())
            self.requested = state
            self._reassert_error = ""
            self.readback = result.status.inputs is not None
            self._mark_written()
            self._note = next((line for line in result.status.lines() if line.startswith("note:")), "")
            return True, result.lines()

    def reassert_period(self) -> float:
        """Seconds between re-writes of a wanted state when no revert is seen."""
        if self.reassert is not None:
            return self.reassert
        return MIN_REASSERT if self.readback is False else REASSERT_READABLE

    def _mark_written(self) -> None:
        self._written_wall = time.time()
        self._written_at = time.monotonic()
        self._next_reassert = self._written_at + self.reassert_period()
        self._next_check = self._written_at + self.check_every
        self.writes += 1

    # --- keeping it --------------------------------------------------------------------------------
    def _reverted(self, state: int) -> bool:
        """Whether the ISG's inputs read back as something other than ``state`` (a read costs no
        flash); False when they cannot be read (then only the period re-writes)."""
        from . import sgready

        link = self._link()
        with link.lock:
            regs = sgready._one(link, "holding", sgready.INPUT_1, 2)
        if regs is None or sgready.NOT_AVAILABLE in regs:
            self.readback = False
            return False
        self.readback = True
        return tuple(regs) != sgready.INPUTS[state]

    def _keep(self) -> None:
        """Read the inputs back every ``check_every`` seconds while a state other than normal is
        wanted; write it again when the ISG reverted it, and at the latest every period."""
        from . import sgready

        while not self._stop.wait(1.0):  # a cheap clock check; reads are seconds apart, writes minutes
            with self._lock:
                state = self.requested
                now = time.monotonic()
                if state is None or state == NORMAL or (now < self._next_reassert and now < self._next_check):
                    continue
                try:
                    if now < self._next_reassert:
                        self._next_check = now + self.check_every
                        if self.readback is False or not self._reverted(state):
                            continue  # no read-back on this model: the period does it all
                        self.reverts += 1
                        log.info("the ISG reverted SGReady %s; writing it again", sgready.describe_state(state))
                    sgready.apply(self._link(), state, switch_on=self.switch_on, family=self._family())
                except Exception as e:  # noqa: BLE001 - the thread must live on: log, try next period
                    self._next_reassert = time.monotonic() + self.reassert_period()  # not in a loop
                    self._next_check = self._next_reassert
                    why = _BACKOFF_NOTE.sub("", str(e)) or type(e).__name__
                    if why != self._reassert_error:
                        log.warning("SGReady %s could not be re-asserted: %s", sgready.describe_state(state), why)
                    else:
                        log.debug("SGReady %s still not re-asserted: %s", sgready.describe_state(state), why)
                    self._reassert_error = why
                    continue
                self._mark_written()
                if self._reassert_error:
                    log.info("SGReady %s re-asserted again", sgready.describe_state(state))
                self._reassert_error = ""

    # --- the Alertmanager webhook ------------------------------------------------------------------
    def alertmanager(self, request: Request) -> Response:
        """``POST /webhooks/alertmanager``: firing target=active -> 3, target=inactive -> 1,
        resolved -> 2 (webhook.py decides); 4xx for a bad payload, 5xx when the ISG did not take it."""
        from gridtap.routes import Response

        from . import webhook
        from .modbus import BlockError, LinkError

        try:
            decision = webhook.decide(request.json())
        except ValueError as e:  # not JSON, or not a webhook payload
            self.errors += 1
            return Response.json({"error": str(e)}, 400)
        if decision.state is None:
            self.actions["unknown"] += 1
            return Response.json({"status": "webhook received", "action": "unknown",
                                  "note": "no alert carries a target or sgready label; nothing written"})
        try:
            written, lines = self.request(decision.state)
        except LinkError as e:
            self.errors += 1
            log.warning("webhook: SGReady %s not written: %s", decision.action, e)
            return Response.json({"error": str(e)}, 503)
        except BlockError as e:
            self.errors += 1
            log.warning("webhook: SGReady %s not written: %s", decision.action, e)
            return Response.json({"error": str(e)}, 502 if e.code in (1, 2, 3, 0) else 503)
        self.actions[decision.action] += 1
        log.info("webhook: SGReady %s (%d firing, %d resolved)%s", decision.action, decision.firing,
                 decision.resolved, "" if written else ", unchanged")
        return Response.json({"status": "webhook received", "action": decision.action, "state": decision.state,
                              "written": written, "details": lines})

    # --- what it shows -----------------------------------------------------------------------------
    def diagnostics(self) -> list[Metric]:
        out = [m.SGREADY_ACTION(self.actions[action], action=action)
               for action in ("lock", "normal", "active", "force", "unknown")]
        out += [m.SGREADY_ERROR(self.errors), m.SGREADY_WRITES(self.writes)]
        if self.requested is not None:
            out.append(m.SGREADY_REQUESTED(self.requested))
        return out

    def status(self) -> dict[str, Any]:
        return {
            "requested_state": self.requested,
            "last_write": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._written_wall))
            if self._written_wall else None,
            "reassert_every_seconds": self.reassert_period(),
            "inputs_read_back": self.readback,
            "reverts_seen": self.reverts,
            "reassert_error": self._reassert_error or None,
            "note": self._note or None,
        }
