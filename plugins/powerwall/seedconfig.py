"""The seed exporter's config file (foogod/powerwall_exporter), read as it reads it.

Its layout::

    web:
      listen_address: ":9871"
      metrics_path: /metrics
    device:
      gateway_address: 192.168.1.50
      login_email: me@example.org
      login_password: secret
      tls_cert_file: /etc/powerwall.pem
      retry_interval: 1s
      retry_timeout: 1m30s

Like Go's ``yaml.UnmarshalStrict`` into string fields: unknown keys are an error, and a
scalar is taken as written (``login_password: 01234`` is the text ``01234``, not an octal
number), so the file is read again without YAML's type guessing. Durations are Go's
(``1m30s``, ``500ms``); 0 or less turns retries off, as in the seed. A bare number
(``retry_timeout: 30``) is what yaml.v2 makes of it, nanoseconds, with a warning that says so.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml

from gridtap.errors import ConfigError

from .metrics import parse_go_duration

log = logging.getLogger("gridtap.powerwall")

WEB_KEYS = ("listen_address", "metrics_path")
DEVICE_KEYS = ("gateway_address", "login_email", "login_password", "tls_cert_file", "retry_interval",
               "retry_timeout")


class _TextLoader(yaml.BaseLoader):
    """Every scalar a string (as the seed's string fields get it); a key given twice is refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _section(doc: dict[str, Any], name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    section = doc.get(name)
    if section is None or section == "":
        return {}
    if not isinstance(section, dict):
        raise ConfigError(name, "expected a mapping of keys")
    for key, value in section.items():
        if key not in allowed:
            raise ConfigError(f"{name}.{key}", f"unknown key (a powerwall_exporter file knows {name}: "
                                               f"{', '.join(allowed)})")
        if not isinstance(value, str):
            shown = "a value that is not shown" if key == "login_password" else "a list or mapping"
            raise ConfigError(f"{name}.{key}", f"expected a single value, got {shown}")
    return section


_YAML_INT = re.compile(r"^[-+]?[0-9][0-9_]*$")


def _seconds(key: str, text: str) -> float:
    if _YAML_INT.match(text) and text.strip("+-0_"):
        # yaml.v2 puts a YAML integer into a time.Duration as is: nanoseconds. The file works as it
        # did under the seed, and its owner learns why the retries never happened.
        nanoseconds = int(text.replace("_", ""))
        log.warning("%s: %s has no unit, so powerwall_exporter read it as %d ns and gridtap does too; write "
                    "%ss for %s seconds", key, text, nanoseconds, text, text)
        return nanoseconds / 1e9
    try:
        return parse_go_duration(text)
    except ValueError:
        raise ConfigError(key, f"expected a duration like 1s, 500ms or 1m30s, got {text!r}") from None


def adapt(path: str) -> dict[str, Any]:
    """gridtap's form (``listen``, ``metrics_path``, one ``devices:`` entry) of the seed file at ``path``."""
    try:
        doc = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TextLoader)  # noqa: S506 - BaseLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(str(path), f"cannot read as a powerwall_exporter config file: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise ConfigError(str(path), "the top level must be a mapping of keys")
    for key in doc:
        if key not in ("web", "device"):
            raise ConfigError(str(key), "unknown key (a powerwall_exporter file has web: and device:, a gridtap "
                                        "file devices:)")
    web = _section(doc, "web", WEB_KEYS)
    dev = _section(doc, "device", DEVICE_KEYS)
    for required in ("gateway_address", "login_password"):
        if not dev.get(required):
            raise ConfigError(f"device.{required}", "missing required value")
    device: dict[str, Any] = {"plugin": "powerwall", "name": "powerwall",
                              "gateway_address": dev["gateway_address"], "login_password": dev["login_password"]}
    if dev.get("login_email"):
        device["login_email"] = dev["login_email"]
    if dev.get("tls_cert_file"):
        device["tls_cert_file"] = dev["tls_cert_file"]
    if "retry_interval" in dev:
        # The seed retries at once with 0; gridtap waits a little, so a refused port is not hammered.
        device["retry_interval"] = max(0.1, _seconds("device.retry_interval", dev["retry_interval"]))
    if "retry_timeout" in dev:
        timeout = _seconds("device.retry_timeout", dev["retry_timeout"])
        if timeout > 0:
            device["retry_timeout"] = timeout
    out: dict[str, Any] = {"devices": [device]}
    if web.get("listen_address"):
        out["listen"] = web["listen_address"]
    if web.get("metrics_path"):
        metrics_path = web["metrics_path"]
        if not metrics_path.startswith("/"):
            raise ConfigError("web.metrics_path", f"expected a path starting with /, got {metrics_path!r}")
        out["metrics_path"] = metrics_path
    return out
