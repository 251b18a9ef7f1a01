"""The WPM and LWZ register catalogues: their facts match the official tables (the shared CSV
transcription of Stiebel Eltron's manual), a register dump built from those tables decodes to
the values the tables define, and the read plan obeys the protocol (≤125 registers, inside the
documented ranges, wire = manual - 1, pairs never split, one series per sample)."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import pytest

from gridtap.errors import ConfigError
from gridtap_plugins.isg import catalogue as cat
from tests.conftest import fixture_path

CSV_DIR = ("isg", "pystiebeleltron_api")
#: Independent of plugins/isg/units.py on purpose: the manual's unit -> base-unit factor.
BASE = {"°C": Fraction(1), "K": Fraction(1), "%": Fraction(1, 100), "bar": Fraction(100000),
        "l/min": Fraction(1, 60000),
        "kWh": Fraction(3600000), "Wh": Fraction(3600), "MWh": Fraction(3600000), "h": Fraction(3600),
        "Hz": Fraction(1), "kW": Fraction(1000), "W": Fraction(1), "m³/h": Fraction(1, 3600), "l": Fraction(1, 1000),
        "": Fraction(1)}
TYPE_SCALE = {"2": Fraction(1, 10), "7": Fraction(1, 100), "6": Fraction(1), "8": Fraction(1)}
#: Documented readable ranges, wire numbers (spec §2.1), per family: (table, first, last).
DOCUMENTED = {
    ("lwz", 103): [("input", 0, 33), ("input", 2000, 2004), ("input", 3000, 3031), ("input", 3679, 3697),
                   ("input", 5000, 5001), ("input", 5219, 5230), ("holding", 1000, 1026), ("holding", 4000, 4002),
                   ("holding", 4249, 4277)],
    ("wpm", 390): [("input", 500, 610), ("input", 2500, 2572), ("input", 3500, 3733), ("input", 5000, 5001),
                   ("input", 5219, 5230), ("holding", 1500, 1607), ("holding", 1703, 1751), ("holding", 4000, 4002),
                   ("holding", 4249, 4277)],
    ("wpm", 391): [("input", 500, 540), ("input", 2500, 2506), ("input", 3500, 3521), ("input", 5000, 5001),
                   ("holding", 1500, 1520), ("holding", 4000, 4002)],
}


def official(family: str) -> dict[tuple[str, int], dict[str, str]]:
    """{(table, manual address): row} from every CSV of a family."""
    folder = fixture_path(*CSV_DIR)
    out = {}
    for path in sorted(Path(folder).glob("*.csv")):
        name = path.name
        fam = "lwz" if name.startswith("lwz_") else "wpm"
        if fam != family and name != "energy_system_information.csv":
            continue
        table = "holding" if ("parameters" in name or "management_settings" in name) else "input"
        with path.open(encoding="utf-8") as f:
            reader = csv.reader(f)
            head = [" ".join(h.split()).lower() for h in next(reader)]
            for row in reader:
                if row and row[0].strip():
                    out[(table, int(row[0]))] = dict(zip(head, row, strict=False))
    return out


@pytest.mark.parametrize("family", ["wpm", "lwz"])
def test_catalogue_facts_match_the_official_table(family):
    table = official(family)
    catalogue = cat.load(family)
    assert len(catalogue.registers) > (100 if family == "wpm" else 60)
    for reg in catalogue.registers:
        for address in reg.addresses:
            row = table.get((reg.table, address))
            assert row is not None, f"{family} {reg.table} {address} is not in the official table"
        row = table[(reg.table, reg.at)]
        if reg.type in (2, 6, 7, 8):  # dhw_stages and the status words are read as type 6 on purpose
            assert str(reg.type) == row["data type"] or (reg.type == 6 and row["data type"] == "8"), (reg, row)
        assert " ".join(row["object designation"].split()) == reg.designation
        # the catalogue's unit is the manual's, except where the manual writes K for temperatures
        # (WPM 524-527, 532) and the consumption pairs whose transcription is inconsistent
        plain = reg.states is None and reg.bits is None and not reg.flag and row["unit"] not in ("K",)
        if plain and "electricity_period" not in reg.metric.name:
            assert reg.unit == row["unit"].strip(), (reg.at, reg.unit, row["unit"])


def _expected(reg: cat.Register, raw: dict[int, int], rows: dict[tuple[str, int], dict[str, str]]) -> object:
    """What a register must decode to, computed from the official row alone."""
    row = rows[(reg.table, reg.at)]
    kind = row["data type"]
    value = raw[reg.at]
    if reg.pair is not None:
        total = Fraction(raw[reg.at] + 1000 * raw[reg.pair])
        return total * BASE[reg.unit]
    if kind in ("2", "7") or reg.type == "int16":
        value = value - 0x10000 if value & 0x8000 else value
    return Fraction(value) * TYPE_SCALE[kind if reg.type != "int16" else "6"] * BASE[reg.unit]


def _dump(family: str, controller: int) -> tuple[cat.Compiled, dict[int, int], dict]:
    """A register dump: every register of the official table gets a value inside its documented
    min/max (a temperature-like value where there is none), deterministic per address."""
    rows = official(family)
    compiled = cat.compile_map(cat.load(family), controller, cat.Options(sensor_faults=False))
    raw: dict[tuple[str, int], int] = {}
    for (table, address), row in rows.items():
        lo = int(float(row["min. value"])) if row.get("min. value", "").strip().lstrip("-").isdigit() else 0
        hi = int(float(row["max. value"])) if row.get("max. value", "").strip().lstrip("-").isdigit() else 99
        scale = {"2": 10, "7": 100}.get(row["data type"], 1)
        value = lo + (address * 7) % max(1, min(hi, 999) - lo + 1)
        if "LOW" in row.get("suffix", ""):
            value %= 1000
        raw[(table, address)] = (value * scale) & 0xFFFF if row["data type"] in ("2", "7") else value & 0xFFFF
    return compiled, raw, rows


@pytest.mark.parametrize(("family", "controller"), [("wpm", 390), ("wpm", 449), ("wpm", 391), ("lwz", 103)])
def test_a_dump_built_from_the_official_tables_decodes_to_their_values(family, controller):
    compiled, raw, rows = _dump(family, controller)
    native = compiled.build()
    decoded: dict[tuple[str, tuple], object] = {}
    for i, read in enumerate(compiled.reads):
        regs = [raw.get((read.table, read.wire + 1 + k), 0x8000) for k in range(read.count)]
        for s in native.metrics(i, regs):
            assert (s.name, s.labels) not in decoded, f"two samples of {s.name}{dict(s.labels)}"
            decoded[(s.name, s.labels)] = s.value
    checked = 0
    for reg in compiled.registers:
        by_table = {a: raw.get((reg.table, a), 0x8000) for a in reg.addresses}
        if reg.bits is not None:
            for bit, name in reg.bits.items():
                labels = tuple(sorted((*reg.labels, ("flag", name))))
                assert decoded[(reg.metric.name, labels)] == (by_table[reg.at] >> bit) & 1  # its own register
            checked += 1
        elif reg.states is not None:
            assert decoded[(reg.metric.name, reg.labels)] == reg.states.get(by_table[reg.at], "unknown")
            checked += 1
        elif reg.flag:
            want = by_table[reg.at] if by_table[reg.at] in (0, 1) else None
            assert decoded.get((reg.metric.name, reg.labels)) == want
            checked += 1
        else:
            got = decoded[(reg.metric.name, reg.labels)]
            want = _expected(reg, by_table, rows)
            assert got == pytest.approx(float(want), rel=1e-15, abs=1e-12), (reg.at, reg.designation)
            checked += 1
    assert checked == len(compiled.registers)


@pytest.mark.parametrize(("family", "controller"), list(DOCUMENTED))
def test_reads_stay_inside_documented_ranges_in_chunks_of_125(family, controller):
    compiled = cat.compile_map(cat.load(family), controller)
    ranges = DOCUMENTED[(family, controller)]
    for read in compiled.reads:
        assert 1 <= read.count <= 125
        last = read.wire + read.count - 1
        assert any(t == read.table and lo <= read.wire and last <= hi for t, lo, hi in ranges), read
    covered = {(r.table, r.wire + k) for r in compiled.reads for k in range(r.count)}
    for t, lo, hi in ranges:
        assert all((t, a) in covered for a in range(lo, hi + 1)), (t, lo, hi)


def test_wire_is_manual_minus_one_in_one_place():
    assert cat.wire_address(5002) == 5001 and cat.wire_address(1) == 0
    compiled = cat.compile_map(cat.load("wpm"), 390)
    first = compiled.reads[0]
    assert (first.table, first.wire) == ("input", 500)  # manual 501 (FE7 actual temperature)


def test_long_blocks_are_split_without_cutting_a_pair():
    assert cat._chunks(3501, 3643, set()) == [(3501, 3625), (3626, 3643)]
    assert cat._chunks(3501, 3643, {3625}) == [(3501, 3624), (3625, 3643)]
    compiled = cat.compile_map(cat.load("wpm"), 390)
    for (length, outputs) in compiled.spec:
        for op in outputs:
            if op["op"] == "pair":
                assert 0 <= op["lo"] < length and 0 <= op["hi"] < length


def test_controller_ids_choose_the_family():
    assert {i: cat.family_of(i) for i in (103, 104, 551, 390, 391, 449, 999)} == {
        103: "lwz", 104: "lwz", 551: "lwz", 390: "wpm", 391: "wpm", 449: "wpm", 999: None}


def test_wpm3i_reads_its_own_registers_only():
    three_i = cat.compile_map(cat.load("wpm"), 391)
    three = cat.compile_map(cat.load("wpm"), 390)
    names_3i = {(r.metric.name, r.labels) for r in three_i.registers}
    assert ("isg_compressor_runtime_seconds_total", (("use", "heating"),)) in names_3i
    assert ("isg_compressor_runtime_seconds_total", (("use", "heating"),)) not in {
        (r.metric.name, r.labels) for r in three.registers}
    assert all(not r.optional for r in three_i.reads)


def test_skip_circuit_2_drops_its_registers():
    compiled = cat.compile_map(cat.load("lwz"), 103, cat.Options(skip_circuit2=True))
    assert not any(dict(r.labels).get("circuit") == "2" for r in compiled.registers)


def test_user_map_in_the_seed_format(tmp_path):
    path = fixture_path("isg", "isg_exporter", "modbus-mapping.yaml")
    user = cat.load_user_map(str(path))
    assert user.family == "lwz"
    names = {r.metric.name for r in user.registers}
    assert {"isg_raumisttemp_celsius", "isg_wm_heizen_summe_joules", "isg_betriebsart", "isg_betriebsstatus_2",
            "isg_hochdruck_pascals"} <= names
    compiled = cat.compile_map(cat.load("lwz"), 103, user=user)
    # the seed's entries replace ours at their registers: manual 1 is now RAUMISTTEMP hk=1
    first = compiled.spec[0][1][0]
    assert first["metric"][0].name == "isg_raumisttemp_celsius" and first["metric"][1] == (("hk", "1"),)
    native = compiled.build()
    regs = [0x8000] * compiled.reads[2].count  # system state 2001-2005
    regs[4] = 0b10  # 2005 bit 1: OFEN_KAMIN_AKTIV, from 2005 itself (the seed read it from 2001)
    samples = {dict(s.labels).get("flag"): s.value for s in native.metrics(2, regs)
               if s.name == "isg_betriebsstatus_2"}
    assert samples == {"sommerbetrieb_aktiv": 0, "ofen_kamin_aktiv": 1}
    # the seed's BUS_STATUS is gridtap's isg_bus_status: one definition, not two
    bus = next(r for r in user.registers if r.metric.name == "isg_bus_status")
    assert bus.metric is cat.m.MODBUS_BY_STEM["bus_status"]


_ENTRY = "lwz:\n  - {{offset: 0, entries: 5, type: INPUT_REGISTER, data: [{{name: X, address: 1, {}}}]}}"


@pytest.mark.parametrize(("text", "problem"), [
    ("wpm: 1", "expected a list of blocks"),
    ("other: []", "expected one top-level key"),
    ("lwz:\n  - {offset: 0, entries: 200, type: INPUT_REGISTER}", "entries must be 1-125"),
    ("lwz:\n  - {offset: 0, entries: 2, type: COILS}", "type: INPUT_REGISTER or HOLDING_REGISTER"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: X, address: 3, type: 2}]}",
     "outside the block"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: X, address: 1, type: 9}]}",
     "type must be 2, 6, 7, 8 or 100"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: X, address: 1, type: 2, unit: furlong}]}",
     "unit 'furlong'"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: UP, address: 1, type: 6}]}",
     "gridtap's own metrics"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: BUS_STATUS, address: 1, type: 6, "
     "labels: {hk: 1}}]}", "gridtap's own metrics"),
    (_ENTRY.format("type: 8, mapping: [1, 2]"), "mapping must map numbers to names"),
    (_ENTRY.format("type: 8, mapping: {one: AUTO}"), "mapping must map numbers to names"),
    (_ENTRY.format("type: 8, mapping: {1: '', 2: AUS}"), "mapping names a state ''"),
    (_ENTRY.format("type: 8, mapping: {1: '!!', 2: AUS}"), "mapping names a state '!!'"),
    (_ENTRY.format("type: 100, mapping: {1: A, 17: B}"), "bit 17: bits are numbered 1-16"),
    (_ENTRY.format("type: 100, mapping: {0: A}"), "bit 0: bits are numbered 1-16"),
    (_ENTRY.format("type: 6, mergeData: 2"), "mergeData must be a mapping with address (and factor: 1000)"),
    (_ENTRY.format("type: 6, mergeData: {address: x}"), "mergeData.address must be a number"),
    (_ENTRY.format("type: 6, mergeData: {address: 2, factor: lots}"), "mergeData.factor must be 1000"),
    (_ENTRY.format("type: 2, mergeData: {address: 2}"), "mergeData is for type 6"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: '', address: 1, type: 6}]}",
     "needs name"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: '-', address: 1, type: 6}]}",
     "name '-' makes no metric name"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: {name: X}}", "data must be a list"),
    ("lwz:\n  - {offset: 0, entries: 2, type: INPUT_REGISTER, data: [{name: X, address: 1, type: 2, labels: "
     "{hk: [1]}}]}", "label values are numbers or text"),
])
def test_bad_user_maps_are_one_line_config_errors(tmp_path, text, problem):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        cat.load_user_map(str(path))
    assert problem in str(e.value) and "\n" not in str(e.value)


def test_user_map_names_are_hardened_like_page_labels(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("wpm:\n  - {offset: 500, entries: 5, type: INPUT_REGISTER, data: [\n"
                    "    {name: \"Außen-Temp.\", address: 1, type: 2, unit: \"°C\"},\n"
                    "    {name: BETRIEBSART, address: 2, type: 8,\n"
                    "     mapping: {1: \"BEREITSCHAFT\", 2: \"PROGRAMM-BETRIEB\"}}]}\n",
                    encoding="utf-8")
    user = cat.load_user_map(str(path))
    assert [r.metric.name for r in user.registers] == ["isg_aussen_temp_celsius", "isg_betriebsart"]
    assert user.registers[1].metric.states == ("bereitschaft", "programm_betrieb", "unknown")


def test_catalogue_keys_are_checked():
    doc = {"family": "wpm", "blocks": [{"name": "b", "table": "input", "range": [1, 2], "registers": [
        {"at": 1, "type": 2, "unit": "°C", "metric": "outside_temperature_celsius", "of": 1}]}]}
    with pytest.raises(ConfigError, match="unknown key"):
        cat.parse(doc, "test")
    doc["blocks"][0]["registers"][0].pop("of")
    doc["blocks"][0]["registers"][0]["unit"] = "bar"
    with pytest.raises(ConfigError, match="is pascals"):
        cat.parse(doc, "test")


def test_gridtap_decode_isg_register_dump(tmp_path):
    import json
    import subprocess
    import sys

    # LWZ energy block, manual 3001-3006: heat today 12 kWh, heating total 44 MWh + 341 kWh, DHW day 5,
    # DHW total with an unavailable HIGH half (absent, not 7 kWh)
    regs = [12, 341, 44, 5, 7, 0x8000]
    dump = tmp_path / "energy.hex"
    dump.write_text("# LWZ input 3001-3006\n" + " ".join(f"{r:04x}" for r in regs) + "\n")
    res = subprocess.run([sys.executable, "-m", "gridtap", "decode", "isg", str(dump), "--controller", "lwz",
                          "--address", "3001", "--table", "input"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {(r["name"], tuple(sorted(r["labels"].items()))): r["value"] for r in json.loads(res.stdout)}
    assert rows == {("isg_heat_today_joules", (("use", "heating"),)): 12 * 3_600_000,
                    ("isg_heat_joules_total", (("use", "heating"),)): 44341 * 3_600_000,
                    ("isg_heat_today_joules", (("use", "dhw"),)): 5 * 3_600_000}
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x00\x01\x02")
    bad = subprocess.run([sys.executable, "-m", "gridtap", "decode", "isg", str(odd), "--input", "binary",
                          "--address", "3001"], capture_output=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.decode().count("\n") == 1
