"""Alertmanager webhook payloads (v4) to one SGReady target (spec §3.4, ecosystem §3).

One target per payload, not "the last alert wins" as in the seed: any firing alert with
``target=inactive`` gives 1 (lock), else any firing ``target=active`` gives 3 (active), else a
payload whose alerts carry a target (resolved ones) gives 2 (normal). A ``sgready`` label
(``1``-``4`` or lock/normal/active/force) may name the state directly; among firing alerts the
precedence is lock > force > active > normal. Alerts without either label do not count; a
payload with none of them writes nothing. Unknown keys are ignored (Grafana posts a superset).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .sgready import NAMES, parse_state

#: Among firing alerts, the state that wins (grid lock first: it protects the grid).
PRECEDENCE = (1, 4, 3, 2)
_TARGETS = {"inactive": 1, "active": 3}


class PayloadError(ValueError):
    """Not an Alertmanager webhook payload."""


@dataclass(frozen=True)
class Decision:
    state: int | None  # None: no alert asks for anything
    firing: int
    resolved: int
    ignored: int

    @property
    def action(self) -> str:
        return NAMES[self.state] if self.state is not None else "unknown"


def _state_of(alert: Mapping[str, Any]) -> int | None:
    labels = alert.get("labels", {})
    if not isinstance(labels, dict):
        raise PayloadError("an alert's labels must be an object")
    target = labels.get("target")
    if isinstance(target, str) and target.strip().lower() in _TARGETS:
        return _TARGETS[target.strip().lower()]
    explicit = labels.get("sgready")
    if explicit is not None:
        try:
            return parse_state(str(explicit))
        except ValueError:
            return None
    return None


def decide(payload: Any) -> Decision:
    """The SGReady state a payload asks for; PayloadError when it is not a webhook payload."""
    if not isinstance(payload, dict):
        raise PayloadError("expected a JSON object (Alertmanager webhook payload)")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("expected an 'alerts' list")
    firing: set[int] = set()
    resolved = ignored = firing_count = 0
    for alert in alerts:
        if not isinstance(alert, dict):
            raise PayloadError("each alert must be an object")
        status = alert.get("status", payload.get("status"))
        state = _state_of(alert)
        if state is None or status not in ("firing", "resolved"):
            ignored += 1
        elif status == "firing":
            firing.add(state)
            firing_count += 1
        else:
            resolved += 1
    if firing:
        chosen: int | None = next(s for s in PRECEDENCE if s in firing)
    elif resolved:
        chosen = 2
    else:
        chosen = None
    return Decision(chosen, firing_count, resolved, ignored)
