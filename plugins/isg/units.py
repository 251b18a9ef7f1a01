"""Device units to the suite's base units, as exact factors (one table for web and Modbus).

Exact because the ISG's numbers are decimals: ``2,035 MWh`` must become exactly 2035 kWh and
7 326 000 000 J, and a Modbus ``raw * factor`` should be rounded once, not twice.
"""

from __future__ import annotations

from fractions import Fraction

#: device unit -> (base unit of gridtap.model.UNITS, factor). K and mK are temperature
#: differences: a kelvin difference is a celsius difference.
UNITS: dict[str, tuple[str, Fraction]] = {
    "°C": ("celsius", Fraction(1)),
    "K": ("celsius", Fraction(1)),
    "mK": ("celsius", Fraction(1, 1000)),
    "bar": ("pascals", Fraction(100_000)),
    "mbar": ("pascals", Fraction(100)),
    "%": ("ratio", Fraction(1, 100)),
    "Hz": ("hertz", Fraction(1)),
    "rpm": ("hertz", Fraction(1, 60)),
    "Wh": ("joules", Fraction(3600)),
    "kWh": ("joules", Fraction(3_600_000)),
    "MWh": ("joules", Fraction(3_600_000_000)),
    "W": ("watts", Fraction(1)),
    "kW": ("watts", Fraction(1000)),
    "h": ("seconds", Fraction(3600)),
    "min": ("seconds", Fraction(60)),
    "s": ("seconds", Fraction(1)),
    "A": ("amperes", Fraction(1)),
    "V": ("volts", Fraction(1)),
    "l/min": ("cubic_meters_per_second", Fraction(1, 60_000)),
    "m³/h": ("cubic_meters_per_second", Fraction(1, 3600)),
    "l": ("cubic_meters", Fraction(1, 1000)),
    "m³": ("cubic_meters", Fraction(1)),
    "": ("", Fraction(1)),
}


def base_unit(unit: str | None) -> tuple[str, Fraction] | None:
    """(base unit, factor) of a device unit; None when gridtap does not know it."""
    return UNITS.get(unit or "")
