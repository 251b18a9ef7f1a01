"""The register catalogues (``catalogues/wpm.yaml``, ``catalogues/lwz.yaml``) and a user's
map in the seed's ``modbus-mapping.yaml`` format, compiled into read requests and one
``gridtap._native.ModbusMap``.

Why compile: a collection then is one Modbus request and one Rust call per block, and every
decision (which registers, sentinels, scale to base units, bit fields, LOW/HIGH pairs) is made
once, here. The catalogues keep the manual's 1-based numbers; :func:`wire_address` is the one
place that subtracts 1.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from gridtap import config
from gridtap.errors import ConfigError
from gridtap.model import Display, Kind, Metric, MetricDef, label_set

from . import metrics as m
from .units import base_unit

HERE = Path(__file__).resolve().parent
FAMILIES = ("wpm", "lwz")
#: Controller identification (input 5002) -> register map family (spec §2.4).
CONTROLLER_FAMILY = {103: "lwz", 104: "lwz", 551: "lwz", 390: "wpm", 391: "wpm", 449: "wpm"}
#: The controller id assumed when the map family is forced and the id cannot be read.
DEFAULT_ID = {"wpm": 390, "lwz": 103}
MAX_READ = 125
NOT_AVAILABLE = 0x8000
#: LWZ temperature replacement values (spec §2.3), as raw type-2 registers: -60.0 and -50.0 °C.
SENSOR_OPEN, SENSOR_SHORT = (-600) & 0xFFFF, (-500) & 0xFFFF
_TYPE_SCALE = {2: (True, Fraction(1, 10)), 7: (True, Fraction(1, 100)), 6: (False, Fraction(1)),
               8: (False, Fraction(1)), "int16": (True, Fraction(1))}
TABLES = ("input", "holding")
_REGISTER_KEYS = {"at", "type", "unit", "metric", "labels", "pair", "bits", "states", "flag", "off_raw", "off_metric",
                  "sensor_fault", "controllers", "designation"}


def wire_address(manual: int) -> int:
    """The PDU address of a register the manual numbers ``manual`` (1-based): the only place
    gridtap converts (spec §2.1)."""
    return manual - 1


@dataclass(frozen=True)
class Register:
    at: int  # manual address
    table: str
    type: int | str
    metric: MetricDef
    labels: tuple[tuple[str, str], ...] = ()
    unit: str = ""
    pair: int | None = None
    bits: Mapping[int, str] | None = None
    states: Mapping[int, str] | None = None
    flag: bool = False
    off: int | None = None
    off_metric: MetricDef | None = None
    sensor_fault: bool = False
    controllers: tuple[int, ...] | None = None
    designation: str = ""

    @property
    def addresses(self) -> tuple[int, ...]:
        return (self.at,) if self.pair is None else (self.at, self.pair)


@dataclass(frozen=True)
class Block:
    name: str
    table: str
    first: int
    last: int
    optional: bool = False
    #: controller id -> (first, last) or None (not read on that controller)
    narrowed: Mapping[int, tuple[int, int] | None] = field(default_factory=dict)

    def range_for(self, controller: int) -> tuple[int, int] | None:
        return self.narrowed.get(controller, (self.first, self.last))


@dataclass(frozen=True)
class Catalogue:
    family: str
    controllers: Mapping[int, str]
    blocks: tuple[Block, ...]
    registers: tuple[Register, ...]


@dataclass(frozen=True)
class Read:
    """One request: ``count`` registers of ``table`` from wire address ``wire``."""

    block: str
    table: str
    wire: int
    count: int
    optional: bool


@dataclass
class Compiled:
    family: str
    controller: int
    reads: list[Read]
    #: The map description both decoders take (``reference.ModbusMap`` and the Rust one).
    spec: list[tuple[int, list[dict[str, Any]]]]
    registers: list[Register]

    def build(self, native: bool = True) -> Any:
        from gridtap import _native

        from . import reference

        cls = _native.ModbusMap if native else reference.ModbusMap
        return cls(self.spec, metric_type=Metric)


# --- loading ------------------------------------------------------------------------------------
def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(where, problem)


def _labels(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _fail(where, "labels must be a mapping")
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in raw.values()):
        raise _fail(where, "label values are numbers or text")
    return label_set((str(k), str(v)) for k, v in raw.items())


def _check_register(reg: Register, where: str) -> None:
    d = reg.metric
    names = {k for k, _ in reg.labels} | ({"flag"} if reg.bits else set())
    if not names <= set(d.label_names):
        raise _fail(where, f"labels {sorted(names)} do not fit {d.name} ({', '.join(d.label_names) or 'no labels'})")
    if reg.type not in _TYPE_SCALE:
        raise _fail(where, f"unknown data type {reg.type!r}")
    if reg.states is None and reg.bits is None and not reg.flag:
        conv = base_unit(reg.unit)
        if conv is None:
            raise _fail(where, f"unknown unit {reg.unit!r}")
        if conv[0] != d.unit:
            raise _fail(where, f"unit {reg.unit!r} is {conv[0] or 'unitless'}, {d.name} is {d.unit or 'unitless'}")
    if reg.states is not None and d.kind is Kind.STATESET and not set(reg.states.values()) <= set(d.states):
        raise _fail(where, f"states {sorted(set(reg.states.values()) - set(d.states))} not declared by {d.name}")


@functools.cache
def load(family: str) -> Catalogue:
    """A shipped catalogue (``wpm`` or ``lwz``)."""
    path = HERE / "catalogues" / f"{family}.yaml"
    return parse(config.load_yaml(path), str(path))


def parse(doc: Mapping[str, Any], where: str) -> Catalogue:
    """A catalogue from its YAML document (see the header of catalogues/wpm.yaml)."""
    blocks: list[Block] = []
    registers: list[Register] = []
    for i, raw in enumerate(doc.get("blocks") or []):
        bw = f"{where}: blocks[{i}]"
        first, last = raw["range"]
        narrowed = {int(k): (None if v is None else (int(v[0]), int(v[1])))
                    for k, v in (raw.get("controllers") or {}).items()}
        block = Block(raw["name"], raw["table"], int(first), int(last), bool(raw.get("optional", False)), narrowed)
        if block.table not in TABLES:
            raise _fail(bw, f"table must be input or holding, got {block.table!r}")
        blocks.append(block)
        for j, r in enumerate(raw.get("registers") or []):
            rw = f"{bw}.registers[{j}] (at {r.get('at')})"
            unknown = set(r) - _REGISTER_KEYS
            if unknown:
                raise _fail(rw, f"unknown key(s) {sorted(map(str, unknown))}")
            stem = r.get("metric")
            if stem not in m.MODBUS_BY_STEM:
                raise _fail(rw, f"unknown metric {stem!r}")
            off_metric = r.get("off_metric")
            if off_metric is not None and off_metric not in m.MODBUS_BY_STEM:
                raise _fail(rw, f"unknown metric {off_metric!r}")
            reg = Register(
                at=int(r["at"]), table=block.table, type=r.get("type", 6), metric=m.MODBUS_BY_STEM[stem],
                labels=_labels(r.get("labels"), rw), unit=r.get("unit") or "",
                pair=int(r["pair"]) if r.get("pair") is not None else None,
                bits={int(k): str(v) for k, v in r["bits"].items()} if r.get("bits") else None,
                states={int(k): str(v) for k, v in r["states"].items()} if r.get("states") else None,
                flag=bool(r.get("flag", False)), off=r.get("off_raw"),
                off_metric=m.MODBUS_BY_STEM[off_metric] if off_metric else None,
                sensor_fault=bool(r.get("sensor_fault", False)),
                controllers=tuple(r["controllers"]) if r.get("controllers") else None,
                designation=str(r.get("designation", "")),
            )
            for a in reg.addresses:
                if not first <= a <= last:
                    raise _fail(rw, f"register {a} is outside the block's range {first}-{last}")
            _check_register(reg, rw)
            registers.append(reg)
    controllers = {int(k): str(v) for k, v in (doc.get("controllers") or {}).items()}
    return Catalogue(str(doc.get("family", "")), controllers, tuple(blocks), tuple(registers))


# --- the seed's modbus-mapping.yaml -------------------------------------------------------------
_SEED_TYPES = {"INPUT_REGISTER": "input", "HOLDING_REGISTER": "holding"}


@dataclass
class UserMap:
    """Registers and read ranges from a user's file, keyed like the catalogue's."""

    family: str
    blocks: list[Block]
    registers: list[Register]


def _seed_name(name: str, where: str, what: str = "name") -> str:
    """A name of the user's map as a metric or state name: lower case, as the seed, hardened
    the way page labels are (``Außen-Temp.`` -> ``aussen_temp``)."""
    from .page import normalise

    stem = normalise(name)
    if not stem.strip("_"):
        raise ConfigError(where, f"{what} {name!r} makes no metric name: use letters or digits")
    return stem


def _mapping(raw: Any, where: str, what: str) -> dict[int, str]:
    """A type-8/100 ``mapping`` ({number: NAME})."""
    if raw is None:
        return {}
    try:
        if not isinstance(raw, dict):
            raise TypeError
        return {int(k): _seed_name(str(v), where, f"{what} names a state") for k, v in raw.items()}
    except (TypeError, ValueError):
        raise ConfigError(where, f"{what} must map numbers to names, e.g. {{1: BEREITSCHAFT}}") from None


def _merge_address(raw: Any, offset: int, where: str) -> int | None:
    """The HIGH register (manual number) of ``mergeData``: LOW + 1000 x HIGH."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(where, "mergeData must be a mapping with address (and factor: 1000)")
    factor = raw.get("factor", 1000)
    if factor != 1000:
        raise ConfigError(where, "mergeData.factor must be 1000 (LOW + 1000 x HIGH)")
    address = raw.get("address")
    if isinstance(address, bool) or not isinstance(address, int):
        raise ConfigError(where, "mergeData.address must be a number (1-based in the block)")
    return offset + address


def load_user_map(path: str) -> UserMap:
    """A user's register map in isg_exporter's format (``lwz:`` or ``wpm:`` - a list of blocks
    with ``offset`` (wire address), ``entries``, ``type`` and ``data``). Names become
    ``isg_<lower(name)>`` with the base unit appended (``RAUMISTTEMP`` in °C ->
    ``isg_raumisttemp_celsius``); a type-8 entry is a state set, a type-100 bit vector one
    ``flag`` label per bit, each read from the entry's own register."""
    doc = config.load_yaml(path)
    if not doc or len(doc) != 1 or next(iter(doc)) not in FAMILIES:
        raise ConfigError(path, "expected one top-level key, lwz: or wpm:, holding a list of blocks")
    family, raw_blocks = next(iter(doc.items()))
    if not isinstance(raw_blocks, list):
        raise ConfigError(path, f"{family}: expected a list of blocks")
    blocks: list[Block] = []
    registers: list[Register] = []
    defs: dict[str, MetricDef] = {}
    for i, raw in enumerate(raw_blocks):
        where = f"{path}: {family}[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(where, "expected a mapping with offset, entries, type and data")
        try:
            offset, entries = int(raw["offset"]), int(raw["entries"])
            table = _SEED_TYPES[raw["type"]]
        except KeyError as e:
            raise ConfigError(where, f"missing or unknown {e.args[0]!r} (type: INPUT_REGISTER or HOLDING_REGISTER)"
                              ) from None
        except (TypeError, ValueError):
            raise ConfigError(where, "offset and entries must be integers") from None
        if not 1 <= entries <= MAX_READ or not 0 <= offset <= 0xFFFF - entries:
            raise ConfigError(where, f"entries must be 1-{MAX_READ} inside the 16-bit address space")
        first, last = offset + 1, offset + entries  # manual numbers: wire offset + address - 1, plus 1
        blocks.append(Block(f"user_{table}_{offset}", table, first, last))
        data = raw.get("data") or []
        if not isinstance(data, list):
            raise ConfigError(where, "data must be a list of entries (name, address, type, ...)")
        for j, e in enumerate(data):
            ew = f"{where}.data[{j}]"
            try:
                name, address, kind = str(e["name"]), int(e["address"]), int(e["type"])
                if not name.strip():
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise ConfigError(ew, "needs name, address (1-based in the block) and type") from None
            at = offset + address
            if not first <= at <= last:
                raise ConfigError(ew, f"address {address} is outside the block's {entries} entries")
            labels = _labels(e.get("labels"), ew)
            unit = str(e.get("unit") or "")
            pair = _merge_address(e.get("mergeData"), offset, ew)
            mapping = _mapping(e.get("mapping"), ew, "mapping")
            if pair is not None and kind != 6:
                raise ConfigError(ew, "mergeData is for type 6 (LOW + 1000 x HIGH) only")
            stem = _seed_name(name, ew)
            label_names = tuple(k for k, _ in labels)
            if kind == 100:
                bad_bit = next((b for b in mapping if not 1 <= b <= 16), None)
                if bad_bit is not None:
                    raise ConfigError(ew, f"bit {bad_bit}: bits are numbered 1-16 (the seed's 1-based bit numbers)")
                d = MetricDef(m.P + stem, f"{name} bits (user map)", integer=True,
                              label_names=(*label_names, "flag"), display=Display(name=name, binary="running"))
                registers.append(Register(at, table, 6, d, labels, bits={b - 1: n for b, n in mapping.items()}))
            elif kind == 8:
                states = (*dict.fromkeys(mapping.values()), "unknown")
                d = MetricDef(m.P + stem, f"{name} (user map)", kind=Kind.STATESET, states=states,
                              label_names=label_names, display=Display(name=name))
                registers.append(Register(at, table, 8, d, labels, states=mapping))
            elif kind in (2, 6, 7):
                conv = base_unit(unit)
                if conv is None:
                    known = ", ".join(_known())
                    raise ConfigError(ew, f"unit {unit!r} is not one gridtap converts ({known})")
                base = conv[0]
                metric_name = m.P + stem + (f"_{base}" if base and not stem.endswith(base) else "")
                d = MetricDef(metric_name, f"{name}{' in ' + unit if unit else ''} (user map)", unit=base,
                              integer=kind == 6 and base in ("", "joules", "seconds"), label_names=label_names,
                              display=Display(name=name, unit=unit or None))
                if pair is not None and not first <= pair <= last:
                    raise ConfigError(ew, "mergeData.address is outside the block")
                registers.append(Register(at, table, kind, d, labels, unit=unit, pair=pair))
            else:
                raise ConfigError(ew, f"type must be 2, 6, 7, 8 or 100, got {kind}")
            previous = defs.get(d.name)
            if previous is not None and (previous.unit, previous.kind, previous.label_names) != (
                    d.unit, d.kind, d.label_names):
                raise ConfigError(ew, f"{d.name} is defined twice with different units or labels")
            defs.setdefault(d.name, d)
    from gridtap.health import health_defs

    ours = {d.name: d for d in (*m.ALL, *health_defs("isg"))}
    for name, d in list(defs.items()):
        mine = ours.get(name)
        if mine is None:
            continue
        if (mine.unit, mine.kind, mine.label_names, mine.states) == (d.unit, d.kind, d.label_names, d.states) and \
                mine in m.MODBUS:
            defs[name] = mine  # the same metric as gridtap's own (the seed's BUS_STATUS): one definition
        else:
            raise ConfigError(path, f"{name} is one of gridtap's own metrics with other units or labels; rename it")
    # One definition object per name, so every sample of a family shares it.
    registers = [dataclasses.replace(r, metric=defs[r.metric.name]) for r in registers]
    return UserMap(family, blocks, registers)


def _known() -> Iterable[str]:
    from .units import UNITS

    return (u for u in UNITS if u)


# --- compiling ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    skip_circuit2: bool = False
    sensor_faults: bool = True


def _chunks(first: int, last: int, pairs: set[int]) -> list[tuple[int, int]]:
    """``first..last`` in pieces of at most 125 registers, never between the two halves of a
    pair (``pairs`` holds each LOW address whose HIGH is the next one)."""
    out = []
    start = first
    while start <= last:
        end = min(start + MAX_READ - 1, last)
        if end < last and end in pairs:  # a LOW at the end would lose its HIGH to the next read
            end -= 1
        out.append((start, end))
        start = end + 1
    return out


def _scale(reg: Register) -> tuple[bool, int, int]:
    signed, scale = _TYPE_SCALE[reg.type]
    conv = base_unit(reg.unit)
    factor = scale * (conv[1] if conv and reg.states is None else 1)
    return signed, factor.numerator, factor.denominator


def _outputs(reg: Register, base: int, opts: Options) -> list[dict[str, Any]]:
    """The decoder outputs of one register, reading ``reg.at - base`` of its block."""
    i = reg.at - base
    signed, mul, div = _scale(reg)
    if reg.bits is not None:
        return [{"op": "bit", "reg": i, "bit": bit,
                 "metric": (reg.metric, label_set((*reg.labels, ("flag", name))))}
                for bit, name in sorted(reg.bits.items())]
    if reg.flag:
        return [{"op": "code", "reg": i, "table": {0: 0, 1: 1}, "default": None, "metric": (reg.metric, reg.labels)}]
    if reg.states is not None:
        return [{"op": "value", "reg": i, "signed": False, "metric": (reg.metric, reg.labels),
                 "words": dict(reg.states), "other_word": "unknown"}]
    if reg.pair is not None:
        return [{"op": "pair", "lo": i, "hi": reg.pair - base, "factor": 1000, "mul": mul, "div": div,
                 "float": not reg.metric.integer, "metric": (reg.metric, reg.labels)}]
    out: list[dict[str, Any]] = []
    absent: list[int] = []
    if reg.off is not None:
        absent.append(reg.off)
        if reg.off_metric is not None:
            out.append({"op": "code", "reg": i, "table": {reg.off: 0}, "default": 1, "metric": (reg.off_metric, ())})
    if reg.sensor_fault and opts.sensor_faults:
        absent += [SENSOR_OPEN, SENSOR_SHORT]
        fault = m.MODBUS_BY_STEM["sensor_fault"]
        out.append({"op": "code", "reg": i, "table": {SENSOR_OPEN: 1, SENSOR_SHORT: 2}, "default": 0,
                    "metric": (fault, (("register", str(reg.at)),))})
    out.insert(0, {"op": "value", "reg": i, "signed": signed, "mul": mul, "div": div, "absent": absent,
                   "float": not reg.metric.integer, "metric": (reg.metric, reg.labels)})
    return out


def _skipped(reg: Register, opts: Options) -> bool:
    if not opts.skip_circuit2:
        return False
    labels = dict(reg.labels)
    return labels.get("circuit") == "2" or labels.get("hk") == "2"


def compile_map(catalogue: Catalogue, controller: int, opts: Options = Options(),
                user: UserMap | None = None) -> Compiled:
    """Reads and decoder outputs for one controller id; a user map replaces catalogue entries at
    the same register and adds its own read ranges."""
    registers = [r for r in catalogue.registers if r.controllers is None or controller in r.controllers]
    ranges: list[tuple[str, str, int, int, bool]] = []
    for b in catalogue.blocks:
        span = b.range_for(controller)
        if span is not None:
            ranges.append((b.name, b.table, span[0], span[1], b.optional))
    if user is not None:
        taken = {(r.table, a) for r in user.registers for a in r.addresses}
        registers = [r for r in registers if not taken & {(r.table, a) for a in r.addresses}]
        registers += user.registers
        for b in user.blocks:
            covered = any(t == b.table and lo <= b.first and b.last <= hi for _, t, lo, hi, _ in ranges)
            if not covered:
                ranges.append((b.name, b.table, b.first, b.last, False))
    registers = [r for r in registers if not _skipped(r, opts)]
    reads: list[Read] = []
    spec: list[tuple[int, list[dict[str, Any]]]] = []
    placed: set[int] = set()
    for name, table, first, last, optional in ranges:
        mine = [(k, r) for k, r in enumerate(registers) if r.table == table and first <= r.at <= last]
        pairs = {r.at for _, r in mine if r.pair == r.at + 1}
        for lo, hi in _chunks(first, last, pairs):
            outputs: list[dict[str, Any]] = []
            for k, r in mine:
                if lo <= r.at <= hi and k not in placed and all(lo <= a <= hi for a in r.addresses):
                    outputs += _outputs(r, lo, opts)
                    placed.add(k)
            reads.append(Read(name, table, wire_address(lo), hi - lo + 1, optional))
            spec.append((hi - lo + 1, outputs))
        split = [r.at for k, r in mine if k not in placed]
        if split:
            raise ConfigError(name, f"registers {split} would be split over two reads")
    read = [r for k, r in enumerate(registers) if k in placed]
    return Compiled(catalogue.family, controller, reads, spec, read)


def family_of(controller: int) -> str | None:
    return CONTROLLER_FAMILY.get(controller)


def compile_range(catalogue: Catalogue, controller: int, table: str, first: int, count: int,
                  opts: Options = Options()) -> Compiled:
    """A map for a register dump: ``count`` registers of ``table`` from manual address ``first``
    (``gridtap decode isg --address``); registers the dump only half covers are left out."""
    from gridtap.errors import InputError

    if count < 1 or first < 1 or first + count - 1 > 0x10000:
        raise InputError(f"isg: a dump of {count} registers from {first} is outside the register space")
    last = first + count - 1
    registers = tuple(r for r in catalogue.registers
                      if r.table == table and all(first <= a <= last for a in r.addresses))
    dump = Catalogue(catalogue.family, catalogue.controllers, (Block("dump", table, first, last),), registers)
    return compile_map(dump, controller, opts)
