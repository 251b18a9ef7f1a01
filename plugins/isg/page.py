"""ISG web pages (SERVICEWELT) to rows, and rows to metrics. No I/O.

The rules are the spec's (isg.md §1.4-1.8), which are the seed exporter's plus hardening:

* only ``form#werte table.info``; section = ``th.round-top``; rows = ``tr.even, tr.odd`` at any
  depth; label = ``td.key``, value = ``td.value`` (class membership, not equality);
* a row whose value cell is empty is a status flag when it shows the "on" icon (``symbol_an``);
* values: boolean words, then the first ``number [space] unit``; decimal comma; MWh shifted to
  kWh with decimal arithmetic (``2,035 MWh`` is exactly 2035 kWh);
* labels normalised into names the seed's way (so dashboards port), then hardened so the result
  is always ``[a-z0-9_]`` and never starts with a digit.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from gridtap.model import Metric, MetricDef

from . import metrics as m
from .units import UNITS

log = logging.getLogger("gridtap.isg.page")

#: Whole-value words (the seed's list; extend here). Compared case-insensitively.
OFF_WORDS = ("Aus", "Off", "Apagado", "Uit", "Spento", "Av", "Wyłączony", "Vyp", "Kikapcsolva", "Apagat", "Pois",
             "Éteint")
ON_WORDS = ("Ein", "On", "Allumé", "Aan", "Acceso", "På", "Włączony", "Zap", "Bekapcsolva", "Encendido", "Päällä",
            "Tændt")
_WORDS = {w.casefold(): 0 for w in OFF_WORDS} | {w.casefold(): 1 for w in ON_WORDS}
_NUMBER = re.compile(r"(?P<number>[0-9,.-]+)( ?)(?P<unit>[a-zA-Z°%/²³.]*)")
#: The "on" icon's file name says whose UI it is (spec §1.4): Stiebel Eltron's or Tecalor's.
BRANDS = {"ste-symbol": "Stiebel Eltron", "tec-symbol": "Tecalor"}
_HK2 = re.compile(r"(^|_)hk_?2($|_)")
#: Labels that say a kWh/MWh row is a running total (a counter) rather than a day value.
_TOTAL_WORDS = re.compile(r"(^|_)(summe|total|gesamt)($|_)")


@dataclass(frozen=True, slots=True)
class Row:
    section: str  # the section title as shown
    label: str  # the key as shown
    value: str  # the value text, trimmed ("" for an icon row)
    flag: bool = False  # an icon row showing "on"


@dataclass
class Page:
    login: bool  # the ISG served its login screen instead of data
    rows: list[Row] = field(default_factory=list)
    tables: int = 0  # value tables (form#werte table.info) found, with or without rows
    #: Whose UI it is, from the "on" icon's file name (ste-symbol / tec-symbol); None without icons.
    brand: str | None = None


def parse_page(html: str | bytes) -> Page:
    """Rows of one ISG page (``login`` when it is the login screen)."""
    from parsel import Selector

    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    sel = Selector(text=text, type="html")  # the XHTML prologue must not make it namespaced XML
    form = sel.css("form#werte")
    if form.css("input[name=pass]") or sel.css("div#loginscreen"):
        return Page(login=True)
    rows: list[Row] = []
    brand: str | None = None
    tables = form.css("table.info")
    for table in tables:
        section = " ".join("".join(table.css("th.round-top ::text").getall()).split())
        for tr in table.css("tr.even, tr.odd"):
            label = "".join(tr.css("td.key ::text").getall()).strip()
            if not label:
                continue
            cell = tr.css("td.value")
            value = "".join(cell.css("::text").getall()).strip()
            if value:
                rows.append(Row(section, label, value))
            elif icons := [src for src in cell.css("img::attr(src)").getall() if "symbol_an" in src]:
                rows.append(Row(section, label, "", flag=True))
                brand = brand or next((b for src in icons for mark, b in BRANDS.items() if mark in src), None)
            else:
                log.debug("row %r of %r has neither a value nor the on icon; skipped", label, section)
    return Page(login=False, rows=rows, tables=len(tables), brand=brand)


def is_login_screen(html: str | bytes) -> bool:
    return parse_page(html).login


def normalise(label: str) -> str:
    """A label as a name: the seed's rules (spec §1.6 steps 1-5), then the hardening."""
    s = label.strip()
    s = re.sub(r"[ \-/]", "_", s)
    s = re.sub(r"[.()*,]", "", s)
    s = s.lower().replace("ü", "ue").replace("ä", "ae").replace("ö", "oe")
    s = s.replace("ß", "ss")
    s = "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))
    s = re.sub(r"[^a-z0-9_]", "_", s)
    return "_" + s if s[:1].isdigit() else s


@dataclass(frozen=True, slots=True)
class Value:
    number: Decimal
    unit: str  # as shown, MWh already turned into kWh
    word: bool = False  # came from a boolean word


def parse_value(text: str) -> Value | None:
    """The number and unit of a value text; None when it holds no number (dates, free text)."""
    t = text.strip()
    word = _WORDS.get(t.casefold())
    if word is not None:
        return Value(Decimal(word), "", word=True)
    match = _NUMBER.search(t)
    if match is None:
        return None
    try:
        number = Decimal(match["number"].replace(",", "."))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    unit = match["unit"]
    if unit == "MWh":
        number, unit = number.scaleb(3), "kWh"  # a shift of the decimal point: exact
    return Value(number, unit)


_FAMILY_BY_UNIT: dict[str, MetricDef] = {
    "°C": m.WEB_TEMPERATURE, "K": m.WEB_TEMPERATURE_DIFFERENCE, "mK": m.WEB_TEMPERATURE_DIFFERENCE,
    "bar": m.WEB_PRESSURE, "mbar": m.WEB_PRESSURE, "Hz": m.WEB_FREQUENCY, "rpm": m.WEB_FREQUENCY,
    "%": m.WEB_RATIO, "Wh": m.WEB_ENERGY, "kWh": m.WEB_ENERGY, "W": m.WEB_POWER, "kW": m.WEB_POWER,
    "h": m.WEB_RUNTIME, "min": m.WEB_DURATION, "s": m.WEB_DURATION, "A": m.WEB_CURRENT, "V": m.WEB_VOLTAGE,
    "l/min": m.WEB_FLOW, "m³/h": m.WEB_FLOW, "l": m.WEB_VOLUME, "m³": m.WEB_VOLUME, "": m.WEB_VALUE,
}
_H_M = "H.M"


def value_metric(name: str, section: str, value: Value) -> Metric:
    """The sample of one parsed value, in base units."""
    if value.word:
        return m.WEB_SWITCH(int(value.number), name=name, section=section)
    if value.unit == _H_M:  # decimal hours of the day
        return m.WEB_TIME_OF_DAY(float(value.number * 3600), name=name, section=section)
    definition = _FAMILY_BY_UNIT.get(value.unit)
    if definition is None:
        return m.WEB_OTHER(float(value.number), name=name, section=section, unit=value.unit)
    if definition is m.WEB_ENERGY and _TOTAL_WORDS.search(name):
        definition = m.WEB_ENERGY_TOTAL
    factor = UNITS[value.unit][1]
    exact = value.number * factor.numerator / factor.denominator
    return definition(float(exact), name=name, section=section)


@dataclass(frozen=True)
class Options:
    section_prefix: bool = False
    skip_circuit2: bool = False


def row_name(row: Row, opts: Options) -> str:
    return normalise(f"{row.section}_{row.label}") if opts.section_prefix else normalise(row.label)


def skipped(name: str, opts: Options) -> bool:
    """Heating circuit 2 rows (``hk2`` and the WPM's ``hk_2``) when asked to skip them."""
    return opts.skip_circuit2 and bool(_HK2.search(name))


@dataclass
class PageResult:
    metrics: list[Metric]
    flags: set[tuple[str, str]]  # (name, section) of the icon rows shown


def page_metrics(rows: Iterable[Row], opts: Options = Options(), where: str = "") -> PageResult:
    """Samples of one page's rows (flags returned separately: their 0/1 needs history)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], Metric] = {}
    flags: set[tuple[str, str]] = set()
    for row in rows:
        name = row_name(row, opts)
        if not name or skipped(name, opts):
            continue
        section = normalise(row.section)
        if row.flag:
            flags.add((name, section))
            continue
        value = parse_value(row.value)
        if value is None:
            log.debug("%s: %s %r: %r is not a number; skipped", where, row.section, row.label, row.value)
            continue
        sample = value_metric(name, section, value)
        key = (sample.name, sample.labels)
        if key in out:
            log.debug("%s: %r appears twice in %s; the later row wins", where, name, row.section)
        out[key] = sample
    return PageResult(list(out.values()), flags)


def flag_metrics(seen: Mapping[str, set[tuple[str, str]]], known: dict[str, set[tuple[str, str]]]) -> list[Metric]:
    """0/1 for every flag of the pages read this time: 1 if shown, 0 if shown on that page
    before (``known``, kept for the life of the process) but not now. Pages that could not be
    read are not in ``seen``: their flags are left out, never zeroed."""
    out = []
    for page, now in seen.items():
        before = known.setdefault(page, set())
        before |= now
        for name, section in sorted(before):
            out.append(m.WEB_FLAG(1 if (name, section) in now else 0, name=name, section=section))
    return out
