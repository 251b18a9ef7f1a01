"""The Rust Modbus block decoder against its pure-Python reference, and malformed input.

The differential tests generate arbitrary maps (every op, sentinels, scales, pairs, bit
fields, code tables) and arbitrary registers, and demand identical outputs: value, type and
absence. The shipped catalogues are compared the same way on random register blocks.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridtap import _native
from gridtap.model import Kind, Metric, MetricDef
from gridtap_plugins.isg import catalogue, reference

REG = st.integers(min_value=0, max_value=0xFFFF)
SPECIAL = st.sampled_from([0x8000, 0x9000, 0xFDA8, 0xFE0C, 0, 1, 0xFFFF, 0x7FFF])
RAW = st.one_of(REG, SPECIAL)
SCALE = st.integers(min_value=1, max_value=1 << 31)
DEF = MetricDef("isg_test_value", "test", label_names=("k",))
STATES = MetricDef("isg_test_state", "test", kind=Kind.STATESET, states=("a", "b", "unknown"))


def op_strategy(length: int) -> st.SearchStrategy[dict]:
    reg = st.integers(min_value=0, max_value=length - 1)
    value = st.fixed_dictionaries({
        "op": st.just("value"), "reg": reg, "signed": st.booleans(),
        "mul": st.one_of(SCALE, SCALE.map(lambda x: -x)), "div": SCALE, "float": st.booleans(),
        "absent": st.lists(RAW, max_size=3),
    })
    bit = st.fixed_dictionaries({"op": st.just("bit"), "reg": reg, "bit": st.integers(0, 15)})
    pair = st.fixed_dictionaries({
        "op": st.just("pair"), "lo": reg, "hi": reg, "factor": st.integers(1, 1 << 15),
        "mul": SCALE, "div": SCALE, "float": st.booleans(),
    })
    code = st.fixed_dictionaries({
        "op": st.just("code"), "reg": reg, "table": st.dictionaries(RAW, st.integers(-5, 5), max_size=4),
        "default": st.one_of(st.none(), st.integers(-5, 5)),
    })
    return st.one_of(value, bit, pair, code)


@st.composite
def maps(draw: st.DrawFn) -> tuple[list[tuple[int, list[dict]]], list[list[int]]]:
    blocks = []
    registers = []
    for _ in range(draw(st.integers(1, 3))):
        length = draw(st.integers(1, 125))
        ops = draw(st.lists(op_strategy(length), max_size=20))
        blocks.append((length, ops))
        registers.append(draw(st.lists(RAW, min_size=length, max_size=length)))
    return blocks, registers


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, float) and not (x == y or (math.isnan(x) and math.isnan(y))):
            return False
        if not isinstance(x, float) and x != y:
            return False
    return True


@settings(max_examples=400, deadline=None)
@given(maps())
def test_rust_equals_reference_on_arbitrary_maps(case):
    blocks, registers = case
    rust = _native.ModbusMap(blocks)
    ref = reference.ModbusMap(blocks)
    for i, regs in enumerate(registers):
        got, want = rust.decode(i, regs), ref.decode(i, regs)
        assert same(got, want), (blocks[i], regs, got, want)
        raw = b"".join(r.to_bytes(2, "big") for r in regs)
        assert same(rust.decode(i, raw), want)  # bytes give the same answer as ints


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_rust_equals_reference_building_metrics_with_state_words(data):
    length = data.draw(st.integers(1, 20))
    ops = []
    for op in data.draw(st.lists(op_strategy(length), min_size=1, max_size=10)):
        if data.draw(st.booleans()) and op["op"] in ("code", "bit"):
            op = {**op, "metric": (STATES, ()), "words": {0: "a", 1: "b"}}
        else:
            op = {**op, "metric": (DEF, (("k", str(len(ops))),))}
        ops.append(op)
    regs = data.draw(st.lists(RAW, min_size=length, max_size=length))
    rust = _native.ModbusMap([(length, ops)], metric_type=Metric)
    ref = reference.ModbusMap([(length, ops)], metric_type=Metric)
    got, want = rust.metrics(0, regs), ref.metrics(0, regs)
    assert [type(m) for m in got] == [Metric] * len(got)
    assert [(m.definition, m.labels) for m in got] == [(m.definition, m.labels) for m in want]
    assert same([m.value for m in got], [m.value for m in want])


@pytest.mark.parametrize(("family", "controller"), [("wpm", 390), ("wpm", 391), ("wpm", 449), ("lwz", 103)])
@settings(max_examples=30, deadline=None)
@given(seed=st.data())
def test_shipped_catalogues_rust_equals_reference(family, controller, seed):
    compiled = catalogue.compile_map(catalogue.load(family), controller)
    rust, ref = compiled.build(native=True), compiled.build(native=False)
    for i, read in enumerate(compiled.reads):
        regs = seed.draw(st.lists(RAW, min_size=read.count, max_size=read.count))
        got, want = rust.metrics(i, regs), ref.metrics(i, regs)
        assert [(m.name, m.labels) for m in got] == [(m.name, m.labels) for m in want]
        assert same([m.value for m in got], [m.value for m in want])


# --- malformed input: typed errors, never a crash -----------------------------------------------------
@pytest.fixture(scope="module")
def simple():
    ops = [{"op": "value", "reg": 0, "signed": True, "div": 10}, {"op": "pair", "lo": 1, "hi": 2}]
    return _native.ModbusMap([(3, ops)]), reference.ModbusMap([(3, ops)])


@pytest.mark.parametrize("registers", [[], [1, 2], [1, 2, 3, 4], list(range(126)), b"\x00\x01\x00\x02",
                                       b"\x00" * 8])
def test_wrong_register_count_is_a_length_error(simple, registers):
    rust, ref = simple
    with pytest.raises(_native.LengthError):
        rust.decode(0, registers)
    with pytest.raises(reference.LengthError):
        ref.decode(0, registers)


@pytest.mark.parametrize("registers", [[1, 2, 65536], [1, -1, 2], [1, 2.5, 3], ["1", 2, 3], [1, None, 3],
                                       [True, 2, 3], 12345])
def test_values_that_are_not_registers_are_format_errors(simple, registers):
    rust, ref = simple
    with pytest.raises(_native.FormatError):
        rust.decode(0, registers)
    with pytest.raises((reference.FormatError, TypeError)):
        ref.decode(0, registers)


def test_odd_byte_count_and_unknown_block(simple):
    rust, _ = simple
    with pytest.raises(_native.LengthError):
        rust.decode(0, b"\x00\x01\x00")
    with pytest.raises(_native.FormatError):
        rust.decode(5, [1, 2, 3])
    with pytest.raises(_native.LengthError):
        _native.modbus_registers(b"\x01")
    assert _native.modbus_registers(b"\x12\x34\x80\x00") == [0x1234, 0x8000]
    assert isinstance(_native.LengthError("x"), _native.DecodeError)


@pytest.mark.parametrize("blocks", [
    [(0, [])], [(126, [])], [(2, [{"op": "value", "reg": 2}])], [(2, [{"op": "value", "reg": 0, "div": 0}])],
    [(2, [{"op": "bit", "reg": 0, "bit": 16}])], [(2, [{"op": "nope", "reg": 0}])], [(2, [{"reg": 0}])],
    [(2, [{"op": "pair", "lo": 0, "hi": 1, "factor": 0}])], [(2, [{"op": "value", "reg": 0, "mul": 1 << 40}])],
    [(2, ["not a dict"])], [("two", [])], [(2, [{"op": "value", "reg": 0, "metric": (DEF, ())}])],
    [(2, [{"op": "code", "reg": 0, "table": {"a": 1}}])], [(2, [{"op": "code", "reg": 0, "table": {70000: 1}}])],
    [(2, [{"op": "value", "reg": 0, "absent": [70000]}])],
])
def test_malformed_maps_are_value_errors(blocks):
    with pytest.raises(ValueError):
        _native.ModbusMap(blocks)
    with pytest.raises((ValueError, TypeError, KeyError)):
        reference.ModbusMap(blocks)


@pytest.mark.parametrize("words", [{"a": "b"}, {1: 2}, ["a"]])
def test_malformed_state_words_are_value_errors_naming_the_output(words):
    blocks = [(2, [{"op": "code", "reg": 0, "metric": (STATES, ()), "words": words}])]
    with pytest.raises(ValueError, match="block 0 output 0"):
        _native.ModbusMap(blocks, metric_type=Metric)
    with pytest.raises(ValueError, match="block 0 output 0"):
        reference.ModbusMap(blocks, metric_type=Metric)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_fail_typed(data):
    compiled = catalogue.compile_map(catalogue.load("wpm"), 390)
    rust = compiled.build()
    for i in range(len(compiled.reads)):
        with contextlib.suppress(_native.DecodeError):
            rust.metrics(i, data)
