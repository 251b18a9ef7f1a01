"""Pure-Python reference of the line-protocol encoder in ``rust/src/lineproto.rs``.

It exists to be read and to be compared against: the differential tests feed both the
same batches and require identical bytes. Production code calls
:func:`gridtap.outputs.lineproto.encode`, which is the Rust one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..model import Batch, Kind

_CONTROL = {"\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(text: str, specials: str) -> str:
    text = text.rstrip("\\")  # a trailing backslash cannot be represented
    out = []
    for ch in text:
        if ch in _CONTROL:
            out.append(_CONTROL[ch])
        elif ch in specials:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def escape_measurement(text: str) -> str:
    return _escape(text, ", ")


def escape_key(text: str) -> str:
    """Tag keys, tag values and field keys."""
    return _escape(text, ",= ")


def _string_field(text: str) -> str:
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{body}"'


class EncodeError(ValueError):
    pass


def format_value(value: object, integer: bool = False, uint: bool = False) -> str | None:
    """The field value text, or None when the value is dropped (NaN, ±Inf)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return f"{value}i"
        if 0 <= value < 2**64:
            return f"{value}u" if uint else f"{2**63 - 1}i"
        raise EncodeError("integer field out of the 64-bit range")
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if integer and abs(value) < 9.2e18:
            return f"{round(value)}i"  # half to even: one field type, whatever the value
        return repr(value)
    if isinstance(value, str):
        return _string_field(value)
    raise EncodeError(f"cannot encode a {type(value).__name__} as a field")


def encode(batches: Iterable[Batch], uint: bool = False) -> bytes:
    out: list[str] = []
    for batch in batches:
        measurement = escape_measurement(batch.plugin)
        prefix = batch.plugin + "_"
        lines: dict[str, dict[str, str]] = {}
        for metric in batch.metrics:
            d = metric.definition
            name = d.name
            if getattr(d, "kind", None) is Kind.STATESET:
                # One line per state with the state as a tag (see rust/src/lineproto.rs put_stateset).
                if not isinstance(metric.value, str):
                    raise EncodeError(f"state set {d.family} needs a state name, not a number")
                states = d.states if metric.value in d.states else (*d.states, metric.value)
                cases = [({d.family: s}, "1i" if s == metric.value else "0i") for s in states]
            else:
                text = format_value(metric.value, d.integer, uint)
                if text is None:
                    continue
                cases = [({}, text)]
            field = escape_key(name[len(prefix):] if name.startswith(prefix) else name)
            if not field:
                continue
            for extra, text in cases:
                labels = dict(metric.labels)
                labels.setdefault("device", batch.device)
                labels.update(extra)
                series = measurement
                for key in sorted(labels, key=lambda k: k.encode()):
                    ek, ev = escape_key(key), escape_key(labels[key])
                    if ek and ev:
                        series += f",{ek}={ev}"
                lines.setdefault(series, {})[field] = text
        stamp = "" if batch.timestamp_ns is None else f" {batch.timestamp_ns}"
        for series, fields in lines.items():
            if fields:
                body = ",".join(f"{k}={v}" for k, v in fields.items())
                out.append(f"{series} {body}{stamp}\n")
    return "".join(out).encode()
