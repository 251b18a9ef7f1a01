"""The readable reference of the Rust exposition renderer (``rust/src/exposition.rs``).

Pure Python, no prometheus_client: the rules prometheus_client 0.26 applies to the families
``gridtap.outputs.prometheus`` builds, written out once, so the Rust renderer can be tested
against both. Slow on purpose (clarity first); never used to serve.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from ..model import Batch

_LEGACY_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # `$` also matches before a final \n,
_LEGACY_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")  # as in prometheus_client


class ReferenceEncodeError(ValueError):
    """A sample the exposition cannot carry (the reference's EncodeError)."""


def go_float(x: float) -> str:
    """prometheus_client's ``floatToGoString``: Python's repr, except that positive numbers with
    more than six integer digits get an exponent, as Go writes them."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    s = repr(x)
    dot = s.find(".")
    if x > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _underscored(name: str, colon: bool) -> str:
    return "".join(c if (c.isascii() and (c.isalpha() or c == "_" or (c.isdigit() and i > 0) or (colon and c == ":")))
                   else "_" for i, c in enumerate(name))


def metric_name(name: str) -> str:
    """A HELP/TYPE (and text sample) name: legacy names as they are, others with ``_`` for odd characters."""
    return name if _LEGACY_METRIC.match(name) else _underscored(name, colon=True)


def label_name(name: str) -> str:
    if not name or (_LEGACY_LABEL.match(name) and not name.startswith("__")):
        return name
    return _underscored(name, colon=False)


def openmetrics_sample_name(name: str) -> str:
    """prometheus_client escapes an OpenMetrics sample name as a label name (``:`` -> ``_``)."""
    return _underscored(name, colon=False)


def label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def text_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def family_name(name: str) -> str:
    for suffix in ("_total", "_info"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ReferenceEncodeError(f"{what} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ReferenceEncodeError(f"{what} is not valid UTF-8 (a lone surrogate)") from None
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, str):
        raise ReferenceEncodeError(f"{name}: a str value ({value!r}) is not a number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise ReferenceEncodeError(f"{name}: cannot use a {type(value).__name__} as a sample value: {e}") from None


def _labels(pairs: Iterable[Any], device: str | None) -> dict[str, str]:
    """``dict(batch.labelled() labels)``: device added unless present (then re-sorted by
    (name, value), as ``model.label_set`` does), the last value of a repeated name kept."""
    if not isinstance(pairs, Iterable):
        raise ReferenceEncodeError("labels must be a tuple of (name, value) pairs")
    items = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ReferenceEncodeError("a label must be a (name, value) pair")
        items.append((_str(pair[0], "a label name"), _str(pair[1], "a label value")))
    if device is not None and all(k != "device" for k, _ in items):
        items = sorted([*items, ("device", device)])
    return dict(items)


class _Family:
    def __init__(self, name: str, help_text: str, kind: str, unit: str, openmetrics: bool) -> None:
        family = family_name(name)
        if not family:
            raise ReferenceEncodeError(f"metric {name!r}: the family name is empty")
        unit = unit if unit and family.endswith("_" + unit) else ""
        if openmetrics:
            shown = metric_name(family)
            self.header = f"# HELP {shown} {label_value(help_text)}\n# TYPE {shown} {kind}\n"
            if unit:
                self.header += f"# UNIT {shown} {unit}\n"
        else:
            declared, typ = {"gauge": (family, "gauge"), "counter": (family + "_total", "counter"),
                             "info": (family + "_info", "gauge"), "stateset": (family, "gauge")}[kind]
            shown = metric_name(declared)
            self.header = f"# HELP {shown} {text_help(help_text)}\n# TYPE {shown} {typ}\n"
        self.lines: list[str] = []


def _sample_line(name: str, labels: dict[str, str], value: float, openmetrics: bool) -> str:
    shown = openmetrics_sample_name(name) if openmetrics else metric_name(name)
    text = ",".join(f'{label_name(k)}="{label_value(v)}"' for k, v in sorted(labels.items()))
    return f"{shown}{{{text}}} {go_float(value)}\n" if text else f"{shown} {go_float(value)}\n"


def _render_group(metrics_by_device: Iterable[tuple[str | None, Sequence[Any]]], openmetrics: bool) -> str:
    families: dict[str, _Family] = {}
    for device, metrics in metrics_by_device:
        for m in metrics:
            if isinstance(m, tuple) and len(m) == 3:
                definition, value, pairs = m
            else:
                definition, value, pairs = m.definition, m.value, m.labels
            name = _str(definition.name, "a metric name")
            kind = _str(definition.kind, "a metric kind")
            if kind not in ("gauge", "counter", "info", "stateset"):
                raise ReferenceEncodeError(f"{name}: unknown metric kind {kind!r}")
            fam = families.get(name)
            if fam is None:
                fam = families[name] = _Family(name, _str(definition.help, "a metric's help"), kind,
                                               _str(definition.unit, "a metric's unit"), openmetrics)
            labels = _labels(pairs, device)
            if kind == "stateset":
                family = family_name(name)
                states = [_str(s, "a state") for s in definition.states]
                if not (isinstance(value, str) and value in states):
                    states.append(value if isinstance(value, str) else str(value))
                for state in states:
                    fam.lines.append(_sample_line(family, {**labels, family: state},
                                                  1.0 if state == value else 0.0, openmetrics))
            elif kind == "info":
                fam.lines.append(_sample_line(name, labels, 1.0, openmetrics))
            else:
                fam.lines.append(_sample_line(name, labels, _number(value, name), openmetrics))
    return "".join(f.header + "".join(f.lines) for f in families.values())


def render(batches: Iterable[Batch], openmetrics: bool = False, head: Sequence[Any] | None = None) -> bytes:
    """What ``_native.exposition_render(batches, openmetrics, head)`` returns."""
    text = _render_group([(None, head)], openmetrics) if head else ""
    text += _render_group(((_str(b.device, "a batch's device"), b.metrics) for b in batches), openmetrics)
    if openmetrics:
        text += "# EOF\n"
    return text.encode("utf-8")
