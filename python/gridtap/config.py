"""Configuration: one typed schema per plugin, filled from YAML < environment < flags.

A plugin describes its settings as a dataclass; each field's ``metadata["help"]`` documents
it. This module turns that one description into YAML validation, ``GRIDTAP_<PLUGIN>_<KEY>``
environment variables and ``--key`` flags, so every plugin is configured the same way and
every mistake is reported as one line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from . import logs
from .errors import ConfigError


class Secret(str):
    """A string that never shows itself in logs, errors or reprs."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "***"


class Duration(float):
    """Seconds, written as ``10``, ``2.5``, ``500ms``, ``10s``, ``5m`` or ``1h``.

    Every duration gridtap takes (intervals, timeouts, waits) must be positive and finite:
    zero would poll a device flat out, and NaN or a huge value breaks the timers.
    """

    _UNITS: typing.ClassVar[dict[str, float]] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    _RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
    MAX = 30 * 86400.0

    @classmethod
    def parse(cls, text: str | float | int, allow_zero: bool = False) -> Duration:
        """``allow_zero`` for waits, where 0 means "do not wait" (never for intervals)."""
        if isinstance(text, bool):
            raise ValueError("expected a duration like 10s")
        if isinstance(text, int | float):
            seconds = float(text)
        else:
            m = cls._RE.match(str(text))
            if not m:
                raise ValueError(f"expected a duration like 10s or 500ms, got {text!r}")
            seconds = float(m.group(1)) * cls._UNITS[m.group(2) or "s"]
        if allow_zero and seconds == 0:
            return cls(0.0)
        if not seconds > 0:  # also catches NaN
            raise ValueError(f"must be greater than zero, got {text!r}")
        if seconds > cls.MAX:
            raise ValueError(f"must be at most 30 days, got {text!r}")
        return cls(seconds)

    def __str__(self) -> str:
        """The way a user writes it: ``10s``, ``500ms``, ``5m``."""
        for unit, size in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
            if self >= size and (self / size).is_integer():
                return f"{int(self / size)}{unit}"
        return f"{float(self) * 1000:g}ms" if self < 1 else f"{float(self):g}s"


def setting(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:  # noqa: A002
    """A schema field with its help text; without a default the key is required."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is list:
        item = typing.get_args(tp)[0]
        return "a list" if item is Any else "a list of " + _PLURAL.get(item, _type_name(item))
    if tp is Any:
        return "a value"
    return {
        str: "a string", int: "an integer", float: "a number", bool: "true or false",
        Duration: "a duration like 10s", Secret: "a string",
    }.get(tp, getattr(tp, "__name__", str(tp)))


_PLURAL = {str: "strings", int: "integers", float: "numbers", bool: "true/false values",
           Duration: "durations like 10s", Secret: "strings"}


def _holds_secret(tp: Any) -> bool:
    return tp is Secret or any(_holds_secret(a) for a in typing.get_args(tp))


def coerce(key: str, tp: Any, value: Any, *, from_text: bool = False) -> Any:
    """Convert ``value`` to ``tp`` or raise ConfigError naming ``key``.

    ``from_text`` is set for values from the environment and flags, which are always strings.
    """
    if tp is Any:
        return value  # validated by whoever owns the nested structure (e.g. a device's schema)
    origin = typing.get_origin(tp)
    shown = "a value that is not shown" if _holds_secret(tp) else repr(value)
    bad = ConfigError(key, f"expected {_type_name(tp)}, got {shown}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (from_text and value == ""):
            return None
        for a in args:
            try:
                return coerce(key, a, value, from_text=from_text)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        for choice in typing.get_args(tp):
            if value == choice or (from_text and str(choice) == value):
                return choice
        raise bad
    if origin is list:
        (item,) = typing.get_args(tp)
        if from_text and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise bad
        return [coerce(f"{key}[{i}]", item, v, from_text=from_text) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if from_text and str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(str(value), 0)
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif from_text:
            try:
                number = float(value)
            except ValueError:
                raise bad from None
        if number is None:
            raise bad
        if not math.isfinite(number):  # no setting means anything by NaN or infinity
            raise ConfigError(key, f"expected a finite number, got {shown}")
        return number
    if tp is Duration:
        try:
            return Duration.parse(value)
        except ValueError as e:
            raise ConfigError(key, str(e)) from None
    if tp is Secret:
        if isinstance(value, str):
            return Secret(value)
        raise ConfigError(key, "expected a string")  # never echo a secret
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    raise ConfigError(key, f"unsupported setting type {tp!r}")


def schema_fields(schema: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(schema))


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def build(schema: type, prefix: str, *layers: tuple[Mapping[str, Any], bool]) -> Any:
    """Fill ``schema`` from layers of (mapping, values_are_text), later layers winning.

    Unknown keys, wrong types and missing required values raise ConfigError naming
    ``prefix.key``.
    """
    hints = _hints(schema)
    names = {f.name for f in dataclasses.fields(schema)}
    # Secrets are known before any value is judged: a token pasted into the wrong key (or a
    # ${VAR} used twice) must not be echoed by the error about that key.
    for mapping, _from_text in layers:
        for key, raw in mapping.items():
            name = key.replace("-", "_")
            if name in hints and _holds_secret(hints[name]) and isinstance(raw, str):
                logs.register_secret(raw)
    values: dict[str, Any] = {}
    for mapping, from_text in layers:
        for key, raw in mapping.items():
            name = key.replace("-", "_")
            if name not in names:
                close = [n for n in names if n.startswith(name[:3])]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{prefix}.{key}", f"unknown key{hint}")
            values[name] = coerce(f"{prefix}.{key}", hints[name], raw, from_text=from_text)
    for f in dataclasses.fields(schema):
        if (
            f.name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{prefix}.{f.name}", "missing required value")
    return schema(**values)


def env_layer(plugin: str, schema: type, environ: Mapping[str, str] | None = None,
              aliases: Mapping[str, str] | None = None, extra_keys: tuple[str, ...] = ()) -> dict[str, str]:
    """``GRIDTAP_<PLUGIN>_<KEY>`` variables that name a key of ``schema``.

    ``aliases`` maps other variable names to keys (the replaced exporter's ``ISG_URL``, say),
    so an existing environment file keeps working; ``GRIDTAP_*`` wins where both are set.
    A ``GRIDTAP_<PLUGIN>_*`` variable that names no key is a ConfigError (with a suggestion):
    a typo in an environment file must not be ignored while the same typo in YAML is refused.
    ``extra_keys`` are keys the caller handles itself (a device's ``interval``).
    """
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    names = [f.name for f in dataclasses.fields(schema)] + list(extra_keys)
    for var, key in (aliases or {}).items():
        if key not in names:
            raise ValueError(f"env alias {var} names no setting {key!r}")
        if var in environ:
            out[key] = environ[var]
    prefix = f"GRIDTAP_{plugin.upper()}_"
    for var, value in environ.items():
        if not var.startswith(prefix):
            continue
        key = var[len(prefix):].lower()
        if key in names:
            out[key] = value
        else:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {prefix}{close[0].upper()}?)" if close else ""
            raise ConfigError(var, f"unknown setting for {plugin}{hint}")
    return out


def check_port(key: str, port: int, lowest: int = 1) -> None:
    """ConfigError naming ``key`` unless ``lowest <= port <= 65535`` (``lowest`` 0 where 0
    means "any free port"). Checked at start-up: a socket call would fail later, in its own words."""
    if not lowest <= port <= 65535:
        raise ConfigError(key, f"port must be {lowest}-65535, got {port}")


def parse_host_port(key: str, text: str, default_host: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:80`` too; an empty host is ``default_host``, port 0 any free port),
    or a ConfigError naming ``key``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(key, f"expected HOST:PORT with a port 0-65535, got {text!r}")
    return host.strip("[]") or default_host, int(port)


def check_http_url(key: str, url: str, example: str = "http://192.168.1.60") -> None:
    """ConfigError naming ``key`` unless ``url`` is an http(s) URL with a host and a port
    1-65535 (if any). A ``user:password@`` part is never echoed."""
    shown = re.sub(r"//[^/@]*@", "//", url)
    if not url.strip():
        raise ConfigError(key, f"missing value: give a URL, e.g. {example}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number or above 65535, a broken [IPv6] literal
        raise ConfigError(key, f"not a valid URL: {shown!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"expected an http:// or https:// URL with a host ({example}), got {shown!r}")
    if port is not None:
        check_port(key, port)


def _strict_loader() -> tuple[type, type]:
    """(loader class, its duplicate-key error): a SafeLoader that refuses a key given twice in
    one mapping (YAML would keep the last silently, so a second ``port:`` further down would
    quietly win). Made on first use: PyYAML is imported only by a process that reads a file."""
    global _STRICT
    if _STRICT is not None:
        return _STRICT
    import yaml

    class DuplicateKey(yaml.YAMLError):
        pass

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _value in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, typing.Hashable) and key in seen:
                    raise DuplicateKey(f"key {key!r} given twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _STRICT = (StrictLoader, DuplicateKey)
    return _STRICT


_STRICT: tuple[type, type] | None = None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or malformed file is a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise ConfigError(str(path), f"not UTF-8 text (line {line})") from None
    import yaml

    loader, duplicate_key = _strict_loader()
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except duplicate_key as e:
        raise ConfigError(str(path), str(e)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(str(path), f"not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "the top level must be a mapping of keys")
    return expand_env(data, str(path))


_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, path: str, environ: Mapping[str, str] | None = None, where: str = "") -> Any:
    """``${VAR}`` in every string value (not in keys) replaced by the environment variable, so
    a token can live in an environment file instead of the config file; ``$${`` is a literal
    ``${``. An unset variable is a ConfigError naming it and the key."""
    environ = os.environ if environ is None else environ
    if isinstance(data, dict):
        return {k: expand_env(v, path, environ, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, path, environ, f"{where}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return "${"
        if name not in environ:
            raise ConfigError(f"{path}: {where}", f"environment variable {name} is not set (used as ${{{name}}})")
        return environ[name]

    return _ENV_REF.sub(value, data)
