"""The Rust exposition renderer against its pure-Python reference and prometheus_client.

prometheus_client (through ``gridtap.outputs.prometheus``'s families) is the oracle: the
renderer must be a drop-in, byte for byte, in the text format and in OpenMetrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import shutil
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from gridtap import __version__, _native
from gridtap.model import Batch, Kind, Metric, MetricDef, label_set
from gridtap.outputs import exposition, exposition_ref, prometheus

TEMP = MetricDef("m_temperature_celsius", "Flow \"temperature\".\nSecond line \\ end.", unit="celsius")
ENERGY = MetricDef("m_energy_joules_total", "Energy.", kind=Kind.COUNTER, unit="joules")
STATE = MetricDef("m_mode", "Mode.", kind=Kind.STATESET, states=("standby", "heating"))
INFO = MetricDef("m_device_info", "Device.", kind=Kind.INFO)
UP = MetricDef("m_up", "Up.", integer=True)


def oracle(batches: list, openmetrics: bool, build_info: bool = True) -> bytes:
    """prometheus_client's rendering of the families gridtap builds (what /metrics served)."""
    return prometheus.encode_with_client(batches, openmetrics, build_info)


def all_three(batches: list, openmetrics: bool, build_info: bool = True) -> bytes:
    rust = exposition.render(batches, openmetrics, build_info)
    head = exposition.build_info_samples() if build_info else None
    assert rust == exposition_ref.render(batches, openmetrics, head)
    assert rust == oracle(batches, openmetrics, build_info)
    return rust


def test_text_format_of_every_kind():
    batch = Batch("m", "boiler", 1, [
        TEMP(47.59, sensor="flow"), TEMP(math.nan, sensor="return"), ENERGY(1234567.0),
        STATE("heating"), INFO(1, model="HRE 28/24", serial='a"b\\c\nd'), UP(1),
    ])
    text = all_three([batch], openmetrics=False).decode()
    assert text == (
        "# HELP gridtap_build_info gridtap version; always 1.\n"
        "# TYPE gridtap_build_info gauge\n"
        f'gridtap_build_info{{version="{__version__}"}} 1.0\n'
        '# HELP m_temperature_celsius Flow "temperature".\\nSecond line \\\\ end.\n'
        "# TYPE m_temperature_celsius gauge\n"
        'm_temperature_celsius{device="boiler",sensor="flow"} 47.59\n'
        'm_temperature_celsius{device="boiler",sensor="return"} NaN\n'
        "# HELP m_energy_joules_total Energy.\n"
        "# TYPE m_energy_joules_total counter\n"
        'm_energy_joules_total{device="boiler"} 1.234567e+06\n'
        "# HELP m_mode Mode.\n"
        "# TYPE m_mode gauge\n"
        'm_mode{device="boiler",m_mode="standby"} 0.0\n'
        'm_mode{device="boiler",m_mode="heating"} 1.0\n'
        "# HELP m_device_info Device.\n"
        "# TYPE m_device_info gauge\n"
        'm_device_info{device="boiler",model="HRE 28/24",serial="a\\"b\\\\c\\nd"} 1.0\n'
        "# HELP m_up Up.\n"
        "# TYPE m_up gauge\n"
        'm_up{device="boiler"} 1.0\n'
    )


def test_openmetrics_declares_families_and_units_and_ends_with_eof():
    batch = Batch("m", "boiler", 1, [TEMP(-math.inf, sensor="flow"), ENERGY(5), STATE("off"), INFO(1, model="x")])
    text = all_three([batch], openmetrics=True, build_info=False).decode()
    assert text == (
        '# HELP m_temperature_celsius Flow \\"temperature\\".\\nSecond line \\\\ end.\n'
        "# TYPE m_temperature_celsius gauge\n"
        "# UNIT m_temperature_celsius celsius\n"
        'm_temperature_celsius{device="boiler",sensor="flow"} -Inf\n'
        "# HELP m_energy_joules Energy.\n"
        "# TYPE m_energy_joules counter\n"
        "# UNIT m_energy_joules joules\n"
        'm_energy_joules_total{device="boiler"} 5.0\n'
        "# HELP m_mode Mode.\n"
        "# TYPE m_mode stateset\n"
        'm_mode{device="boiler",m_mode="standby"} 0.0\n'
        'm_mode{device="boiler",m_mode="heating"} 0.0\n'
        'm_mode{device="boiler",m_mode="off"} 1.0\n'  # a state not declared is still shown
        "# HELP m_device Device.\n"
        "# TYPE m_device info\n"
        'm_device_info{device="boiler",model="x"} 1.0\n'
        "# EOF\n"
    )


def test_families_merge_across_batches_in_first_seen_order():
    a = Batch("m", "a", 1, [TEMP(1.0, sensor="x"), UP(1)])
    b = Batch("m", "b", 2, [UP(0), TEMP(2.0, sensor="x")])
    text = all_three([a, b], openmetrics=False, build_info=False).decode()
    assert text.splitlines()[2:4] == ['m_temperature_celsius{device="a",sensor="x"} 1.0',
                                      'm_temperature_celsius{device="b",sensor="x"} 2.0']
    assert text.count("# TYPE m_up gauge") == 1
    assert all_three([], openmetrics=True, build_info=False) == b"# EOF\n"


def test_batches_from_a_generator_with_fresh_objects_each():
    """Caches keyed by object identity must not mistake a new object at a freed address."""

    def batches():
        for i in range(200):
            d = MetricDef(f"m_g{i % 3}", f"help {i % 3}")
            yield Batch("m", f"d{i}", 0, [Metric(d, float(i), tuple([("k", f"v{i}")]))])

    expected = exposition_ref.render(list(batches()), False, None)
    assert exposition.render(batches(), build_info=False) == expected
    assert expected.count(b"# TYPE") == 3


def test_a_device_label_of_the_sample_wins_over_the_batch_device():
    batch = Batch("m", "proxy", 1, [UP(1, device="meter-1")])
    assert b'm_up{device="meter-1"} 1.0' in all_three([batch], openmetrics=False)


def test_real_plugin_batches_are_byte_identical():
    """Every sample an intergas cycle and a goodwe meter/inverter/ET upload decode to."""
    from gridtap_plugins.goodwe import encoder as goodwe_encoder
    from gridtap_plugins.goodwe import simulator as goodwe_simulator
    from gridtap_plugins.goodwe.plugin import GoodwePlugin
    from gridtap_plugins.intergas.plugin import IntergasPlugin
    from gridtap_plugins.intergas.simulator import BoilerModel

    model = BoilerModel(start=0.0)
    intergas = []
    for block in ("S?", "S2", "CRC", "HN", "V?"):
        intergas += IntergasPlugin.decode(model.block(block, now=12.5), argparse.Namespace(block=block))
    when = dt.datetime(2024, 4, 12, 17, 23, 43, tzinfo=goodwe_encoder.BEIJING)
    frames = b"".join(goodwe_simulator.data_frame(kind, goodwe_simulator.DEFAULT_SERIALS[kind], when, 3)
                      for kind in ("meter", "inverter", "et"))
    goodwe = GoodwePlugin.decode(frames, argparse.Namespace(direction="outbound"))
    batches = [Batch("intergas", "boiler", 1, intergas), Batch("goodwe", "sems", 2, goodwe)]
    assert len(intergas) > 30 and len(goodwe) > 30
    for om in (False, True):
        all_three(batches, om)


def test_promtool_finds_the_rendered_exposition_clean():
    from tests.integration import servers

    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian package prometheus; tests/setup-and-run.sh)")
    batch = Batch("m", "boiler", 1, [TEMP(47.59, sensor="flow"), ENERGY(3.5e9), STATE("standby"),
                                    INFO(1, model="x\ny"), UP(1), TEMP(math.nan, sensor='q"uote')])
    rc, out = servers.promtool_check_metrics(exposition.render([batch]))
    assert (rc, out) == (0, "")


# --- malformed input: a typed error, never a crash ---------------------------------------
@pytest.mark.parametrize(("metric", "problem"), [
    (SimpleNamespace(definition=TEMP, value="47.5", labels=()), "str value"),
    (SimpleNamespace(definition=TEMP, value=[1], labels=()), "cannot use a list"),
    (SimpleNamespace(definition=TEMP, value=None, labels=()), "cannot use a NoneType"),
    (SimpleNamespace(definition=TEMP, value=2**1100, labels=()), "cannot use a int"),
    (SimpleNamespace(definition=TEMP, value=1.0, labels=(("sensor", 3),)), "label value must be a str"),
    (SimpleNamespace(definition=TEMP, value=1.0, labels=((3, "x"),)), "label name must be a str"),
    (SimpleNamespace(definition=TEMP, value=1.0, labels=(("a", "b", "c"),)), "(name, value) pair"),
    (SimpleNamespace(definition=TEMP, value=1.0, labels=5), "tuple of (name, value) pairs"),
    (SimpleNamespace(definition=TEMP, value=1.0, labels=(("s", "\ud800"),)), "surrogate"),
    (SimpleNamespace(definition=SimpleNamespace(name=3, kind="gauge", help="", unit=""), value=1.0, labels=()),
     "metric name must be a str"),
    (SimpleNamespace(definition=SimpleNamespace(name="x", kind="histogram", help="", unit=""), value=1.0,
                     labels=()), "unknown metric kind"),
    (SimpleNamespace(definition=SimpleNamespace(name="_total", kind="counter", help="", unit=""), value=1.0,
                     labels=()), "family name is empty"),
    (SimpleNamespace(definition=SimpleNamespace(name="x", kind="gauge", help=None, unit=""), value=1.0,
                     labels=()), "help must be a str"),
])
@pytest.mark.parametrize("openmetrics", [False, True])
def test_malformed_samples_raise_encode_error(metric, problem, openmetrics):
    batch = Batch("m", "d", 1, [UP(1), metric])
    with pytest.raises(_native.EncodeError, match=re.escape(problem)):
        exposition.render([batch], openmetrics)
    with pytest.raises(exposition_ref.ReferenceEncodeError, match=re.escape(problem)):
        exposition_ref.render([batch], openmetrics)


def test_malformed_batches_raise_encode_error_or_type_error():
    with pytest.raises(_native.EncodeError, match="device must be a str"):
        exposition.render([Batch("m", None, 1, [UP(1)])])  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        exposition.render([object()])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        exposition.render(5)  # type: ignore[arg-type]


# --- differential property tests -----------------------------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
odd_text = st.one_of(text, st.sampled_from(["", "a b", "x\n", "\\", '"', "__r", "9x", "ü", "a:b", "ok"]))
label_names = st.one_of(st.sampled_from(["sensor", "device", "zone", "__reserved", "9lives", "a-b", "ünï", "", "x\n",
                                         "m_state"]), st.text(max_size=6))
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e5, max_value=1e17),  # where Go and Python formats part
    st.integers(min_value=-(2**1000), max_value=2**1000),
    st.booleans(),
    st.sampled_from([0.0, -0.0, 1e-300, 5e-324, 1e308, 1000000.0, 1234567.0, 9999999.999]),
)
kinds = st.sampled_from([Kind.GAUGE, Kind.COUNTER, Kind.INFO, Kind.STATESET])
units = st.sampled_from(["", "celsius", "joules", "seconds", "x"])


@st.composite
def definitions(draw):
    kind = draw(kinds)
    base = draw(st.one_of(st.sampled_from(["m_a", "m_b_celsius", "m_c_joules", "m:d", "m_x_info"]),
                          st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)))
    name = base + "_total" if kind is Kind.COUNTER and draw(st.booleans()) else base
    name = name + "_info" if kind is Kind.INFO and draw(st.booleans()) else name
    states = tuple(draw(st.lists(odd_text, max_size=3))) if kind is Kind.STATESET else ()
    # A namespace rather than MetricDef: MetricDef refuses odd names, and the renderers must
    # still agree on them (prometheus_client escapes them).
    from gridtap.outputs.exposition_ref import family_name

    return SimpleNamespace(name=name, help=draw(odd_text), kind=kind, unit=draw(units), states=states,
                           family=family_name(name))


@st.composite
def batch_lists(draw):
    defs = draw(st.lists(definitions(), min_size=1, max_size=4))
    out = []
    for _ in range(draw(st.integers(0, 3))):
        metrics = []
        for _ in range(draw(st.integers(0, 6))):
            d = draw(st.sampled_from(defs))
            labels = label_set(draw(st.dictionaries(label_names, odd_text, max_size=3)).items())
            if d.kind is Kind.STATESET:
                value = draw(st.one_of(st.sampled_from(d.states) if d.states else st.just("s"), text,
                                       st.integers(-5, 5)))
            else:
                value = draw(numbers)
            metrics.append(Metric(d, value, labels))
        out.append(Batch("m", draw(odd_text), 0, metrics))
    return out


def _family_names_are_nonempty(batches: list) -> bool:
    return all(m.definition.family for b in batches for m in b.metrics)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch_lists(), st.booleans(), st.booleans())
def test_rust_equals_reference_equals_prometheus_client(batches, openmetrics, build_info):
    if not _family_names_are_nonempty(batches):
        with pytest.raises(_native.EncodeError):
            exposition.render(batches, openmetrics, build_info)
        return
    all_three(batches, openmetrics, build_info)


@settings(max_examples=500, deadline=None)
@given(st.floats())
@example(1e6)
@example(123456789.125)
@example(9007199254740993.0)
def test_values_are_float_to_go_string(x):
    line = exposition.render([Batch("m", "d", 0, [UP(x)])], build_info=False).decode().splitlines()[-1]
    assert line == f'm_up{{device="d"}} {floatToGoString(x)}'


def test_a_long_render_lets_other_threads_run():
    """A render of 40,000 samples holds the GIL for many milliseconds; it lets go about every
    millisecond, so a relay thread of the same process is not held up for the whole render."""
    import threading
    import time

    gauge = MetricDef("big_value", "v", label_names=("n",))
    batch = Batch("big", "d", 0, [gauge(float(i), n=str(i)) for i in range(40_000)])
    ran, stop = [], threading.Event()

    def other() -> None:
        while not stop.is_set():
            ran.append(time.monotonic())
            time.sleep(0.0002)

    thread = threading.Thread(target=other)
    thread.start()
    time.sleep(0.01)
    try:
        t0 = time.monotonic()
        exposition.render([batch])
        t1 = time.monotonic()
    finally:
        stop.set()
        thread.join()
    if t1 - t0 < 0.004:
        pytest.skip(f"the render took {(t1 - t0) * 1e3:.1f} ms: too short to see yields")
    during = [t for t in ran if t0 < t < t1]
    assert len(during) >= 2, f"the other thread ran {len(during)} times in a {(t1 - t0) * 1e3:.1f} ms render"
