"""InfluxDB 1.6 is the oracle for our line protocol.

A 10,000-metric batch set, heavy on escaping, is encoded by Rust and by the Python reference
(byte-identical), accepted by influxd with 204, and read back value for value. The output of
``gridtap run intergas --once --output influx`` against the simulator goes the same way.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gridtap.model import Batch, MetricDef

from . import servers

pytestmark = pytest.mark.integration

PLUGIN = "gridbench"
T0 = 1_700_000_000_123_456_789  # ns precision on purpose

DEVICES = [
    "boiler",
    "heat pump, attic",
    'inverter="main" 1',
    "Küche ☀ 温度",
    "C:\\temp dir\\x",  # backslashes, none at the end
]
LABEL_SETS: list[dict[str, str]] = [
    {},
    {"sensor": "flow"},
    {"sensor": "return temp", "zone": "ground floor"},
    {"sensor": "a,b", "zone": "x=y"},
    {"sensor": 'say "hi"', "phase": "L1"},
    {"sensor": "back\\slash", "zone": "mid\\dle,=end"},
    {"sensor": "ünïcödé ✓", "zone": "Ωmega"},
    {"sensor": "eq=uals=twice", "zone": "  lead and trail  "},
    {"alpha": "1", "sensor": "many", "zeta": "z z"},
    {"sensor": "nan-only"},  # every value of this set is NaN/Inf: it must produce no line
]

N_FLOAT, N_INT, N_BOOL, N_STR = 30, 10, 5, 5
FLOAT_DEFS = [MetricDef(f"{PLUGIN}_temperature_{i}_celsius", "a float", unit="celsius") for i in range(N_FLOAT)]
INT_DEFS = [MetricDef(f"{PLUGIN}_code_{i}", "an integer", integer=True) for i in range(N_INT)]
BOOL_DEFS = [MetricDef(f"{PLUGIN}_flag_{i}", "a boolean") for i in range(N_BOOL)]
# String fields (a state set is written as one 0/1 line per state instead: test_lineproto).
STR_DEFS = [MetricDef(f"{PLUGIN}_text_{i}", "a text") for i in range(N_STR)]
FLOATS = [0.0, -0.0, 1.5, -273.15, 1e-300, 5e-324, 1.7976931348623157e308, 0.1 + 0.2, 123456.789, -1e21]
INTS = [0, 1, -1, 2**63 - 1, -(2**63), 42, 1_000_000_007, -99]
STRINGS = ['plain', 'with "quotes"', "back\\slash", "ends with backslash\\", "ünïcödé ✓ 温度", "a,b=c d", ""]
BAD = [math.nan, math.inf, -math.inf]


def build_batches() -> list[Batch]:
    """20 batches x 10 label sets x 50 metrics = 10,000 metrics, with NaN/Inf sprinkled in."""
    batches = []
    k = 0
    for t in range(4):
        for d, device in enumerate(DEVICES):
            batch = Batch(PLUGIN, device, T0 + t * 60_000_000_000 + d)
            for labels in LABEL_SETS:
                nan_only = labels.get("sensor") == "nan-only"
                for i, m in enumerate(FLOAT_DEFS):
                    k += 1
                    v = BAD[k % 3] if nan_only or k % 7 == 0 else FLOATS[k % len(FLOATS)] * (1 + i / 100)
                    batch.metrics.append(m(v, **labels))
                for m in INT_DEFS:
                    k += 1
                    batch.metrics.append(m(math.nan if nan_only else INTS[k % len(INTS)], **labels))
                for m in BOOL_DEFS:
                    k += 1
                    batch.metrics.append(m(math.inf if nan_only else k % 2 == 0, **labels))
                for m in STR_DEFS:
                    k += 1
                    batch.metrics.append(m(-math.inf if nan_only else STRINGS[k % len(STRINGS)], **labels))
            batches.append(batch)
    assert sum(len(b.metrics) for b in batches) == 10_000
    return batches


def typed(v: Any) -> tuple[str, Any]:
    if isinstance(v, bool):
        return ("boolean", v)
    if isinstance(v, int):
        return ("integer", v)
    if isinstance(v, float):
        return ("float", v)
    return ("string", v)


SeriesKey = tuple[str, frozenset, int]


def expected_points(batches: list[Batch]) -> dict[SeriesKey, dict[str, tuple[str, Any]]]:
    """What the encoder must write, derived from the metrics (not from any encoder)."""
    out: dict[SeriesKey, dict[str, tuple[str, Any]]] = {}
    for b in batches:
        for m in b.metrics:
            if isinstance(m.value, float) and not math.isfinite(m.value):
                continue
            tags = dict(m.labels)
            tags.setdefault("device", b.device)
            tags = {k: v.rstrip("\\") for k, v in tags.items() if v.rstrip("\\")}
            key = (b.plugin, frozenset(tags.items()), b.timestamp_ns)
            out.setdefault(key, {})[m.name.removeprefix(b.plugin + "_")] = typed(m.value)
    return out


def parsed_points(text: str) -> dict[SeriesKey, dict[str, tuple[str, Any]]]:
    out: dict[SeriesKey, dict[str, tuple[str, Any]]] = {}
    for line in servers.parse_line_protocol(text):
        assert line.timestamp is not None, f"line without timestamp: {line.raw!r}"
        key = (line.measurement, frozenset(line.tags.items()), line.timestamp)
        assert key not in out, f"two lines for one series and time: {line.raw!r}"
        out[key] = {k: typed(v) for k, v in line.fields.items()}
    return out


def first_difference(a: bytes, b: bytes) -> str:
    la, lb = a.split(b"\n"), b.split(b"\n")
    for i, (x, y) in enumerate(zip(la, lb, strict=False)):
        if x != y:
            return f"line {i}:\n rust: {x!r}\n  ref: {y!r}"
    return f"line counts differ: rust {len(la)}, ref {len(lb)}"


def stored_points(influx: servers.InfluxDB, db: str, measurement: str) -> dict[SeriesKey, dict[str, Any]]:
    """Everything in ``measurement`` as {(measurement, tags, time): {field: value}}."""
    out: dict[SeriesKey, dict[str, Any]] = {}
    doc = influx.query(f'SELECT * FROM "{measurement}" GROUP BY *', db=db)
    for res in doc["results"]:
        for series in res.get("series", []) or []:
            tags = frozenset((k, v) for k, v in (series.get("tags") or {}).items() if v != "")
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                t = row.pop("time")
                out[(measurement, tags, t)] = {k: v for k, v in row.items() if v is not None}
    return out


def field_types(influx: servers.InfluxDB, db: str, measurement: str) -> dict[str, str]:
    rows = influx.rows(f'SHOW FIELD KEYS FROM "{measurement}"', db=db)
    return {r["fieldKey"]: r["fieldType"] for r in rows}


def same_value(stored: Any, sent: tuple[str, Any]) -> bool:
    kind, v = sent
    if kind == "float":
        return isinstance(stored, int | float) and not isinstance(stored, bool) and float(stored) == v
    if kind == "integer":
        return isinstance(stored, int) and not isinstance(stored, bool) and stored == v
    if kind == "boolean":
        return stored is v
    return stored == v


def test_10k_metrics_rust_equals_reference_and_influxdb_stores_them(influxdb: servers.InfluxDB) -> None:
    from gridtap.outputs import lineproto, lineproto_ref

    batches = build_batches()
    rust = lineproto.encode(batches)
    ref = lineproto_ref.encode(batches)
    assert rust == ref, "Rust and reference line protocol differ at " + first_difference(rust, ref)

    text = rust.decode()
    assert "\r" not in text
    sent = parsed_points(text)  # the parser also rejects NaN/Inf field values
    expected = expected_points(batches)
    assert sent.keys() == expected.keys()
    for key, fields in expected.items():
        assert sent[key] == fields, f"series {key}: encoded fields differ from the metrics"
    assert not any(dict(k[1]).get("sensor") == "nan-only" for k in sent), "an all-NaN label set made a line"
    n_fields = sum(len(f) for f in sent.values())
    assert 7_000 < n_fields < 10_000  # NaN/Inf fields dropped, everything else kept

    db = "lp10k"
    influxdb.create_db(db)
    for status, body in influxdb.write_chunked(rust, db=db, max_bytes=256 * 1024):
        assert status == 204, f"influxd refused our line protocol: {status} {body}\n{influxdb.proc.log()}"

    types = field_types(influxdb, db, PLUGIN)
    sent_types = {name: kind for fields in sent.values() for name, (kind, _v) in fields.items()}
    assert types == sent_types, "InfluxDB field types differ from the types we sent"

    stored = stored_points(influxdb, db, PLUGIN)
    assert stored.keys() == sent.keys(), (
        f"series/time sets differ: only stored {list(stored.keys() - sent.keys())[:3]}, "
        f"only sent {list(sent.keys() - stored.keys())[:3]}"
    )
    bad = [
        (key, name, got, fields[name])
        for key, fields in sent.items()
        for name, got in stored[key].items()
        if name not in fields or not same_value(got, fields[name])
    ]
    assert not bad, f"{len(bad)} stored values differ, e.g. {bad[:3]}"
    assert sum(len(f) for f in stored.values()) == n_fields

    # A few targeted queries through InfluxQL's own tag matching (escaping round trip).
    rows = influxdb.rows(
        f"SELECT \"code_3\" FROM \"{PLUGIN}\" WHERE \"device\" = 'heat pump, attic' "
        "AND \"zone\" = 'mid\\\\dle,=end'",
        db=db,
    )
    assert len(rows) == 4, rows
    rows = influxdb.rows(
        f"SELECT count(\"flag_0\") FROM \"{PLUGIN}\" WHERE \"sensor\" = 'ünïcödé ✓' GROUP BY \"device\"", db=db
    )
    assert sorted(r["device"] for r in rows) == sorted(d.rstrip("\\") for d in DEVICES)
    assert all(r["count"] == 4 for r in rows), rows


def test_intergas_once_output_is_accepted_by_influxdb(influxdb: servers.InfluxDB, intergas_sim: str) -> None:
    res = servers.run_gridtap(
        ["run", "intergas", "--port", intergas_sim, "--name", "boiler", "--output", "influx", "--once"]
    )
    assert res.returncode == 0, f"gridtap run --once failed ({res.returncode}): {res.stderr.decode()}"
    text = res.stdout.decode()
    lines = servers.parse_line_protocol(text)
    assert lines, f"no line protocol on stdout; stderr: {res.stderr.decode()}"
    assert {ln.measurement for ln in lines} == {"intergas"}
    assert all(ln.tags.get("device") == "boiler" for ln in lines), text
    fields = {k: v for ln in lines for k, v in ln.fields.items()}
    assert fields.get("up") in (1, 1.0, True), f"intergas up is not 1: {text}"
    temps = {k: v for ln in lines for k, v in ln.fields.items() if "temperature" in k}
    assert temps, f"no temperature field in {text}"

    db = "intergas_once"
    influxdb.create_db(db)
    status, body = influxdb.write(res.stdout, db=db)
    assert status == 204, f"influxd refused `gridtap run intergas --once`: {status} {body}\n{text}"

    sent = parsed_points(text)
    stored = stored_points(influxdb, db, "intergas")
    assert stored.keys() == sent.keys()
    for key, fields_sent in sent.items():
        assert stored[key].keys() == fields_sent.keys(), key
        for name, value in fields_sent.items():
            assert same_value(stored[key][name], value), (key, name, stored[key][name], value)
