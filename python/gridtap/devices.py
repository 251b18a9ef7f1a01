"""Turning configuration (YAML < environment < flags) into configured plugin instances."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import config, logs, plugin
from .config import Duration, Secret
from .errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class Common:
    """Settings outside any device; the top level of a config file."""

    interval: Duration = config.setting(Duration(10.0), help="default seconds between collections")
    log_format: Literal["auto", "text", "logfmt", "json", "telegraf"] = config.setting(
        "auto", help="log style on stderr"
    )
    log_level: Literal["debug", "info", "warning", "error"] | None = config.setting(
        None, help="log level (default info; warning for run --once)")
    listen: str = config.setting("127.0.0.1:9870", help="HOST:PORT of the Prometheus /metrics server")
    metrics_path: str = config.setting(
        "/metrics", help="another path that serves the exposition too (an exporter's own web.metrics_path)")
    devices: list[Any] = config.setting([], help="the devices, each a mapping with plugin, name and settings")
    pushgateway: Any = config.setting(None, help="push every collection to a Pushgateway (url, job, ...)")
    mqtt: Any = config.setting(None, help="publish every collection over MQTT with HA discovery (host, ...)")
    webhook_token: Secret | None = config.setting(
        None, help="bearer token that webhooks acting on a device demand (GRIDTAP_WEBHOOK_TOKEN)")
    webhook_username: str | None = config.setting(None, help="basic-auth user for those webhooks")
    webhook_password: Secret | None = config.setting(None, help="basic-auth password for those webhooks")

    def webhook_auth(self) -> Any:
        from .serve import Auth

        return Auth(self.webhook_token, self.webhook_username, self.webhook_password)


@dataclass
class DeviceSpec:
    plugin_cls: type[plugin.Plugin]
    name: str
    interval: float
    settings: Any

    def create(self) -> plugin.Plugin:
        return self.plugin_cls(self.settings, self.name)


def _register_secrets(settings: Any) -> None:
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Secret):
            logs.register_secret(value.reveal())


_COMMON_ENV = ("webhook_token", "webhook_username", "webhook_password")


def load_common(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Common:
    """The top level of a config file, plus the ``GRIDTAP_WEBHOOK_*`` variables (secrets are
    better kept out of files and argv)."""
    import os

    environ = os.environ if env is None else env
    from_env = {k: environ[f"GRIDTAP_{k.upper()}"] for k in _COMMON_ENV if f"GRIDTAP_{k.upper()}" in environ}
    common = config.build(Common, "config", (raw, False), (from_env, True))
    _register_secrets(common)
    return common


def device_spec(
    plugin_cls: type[plugin.Plugin],
    raw: Mapping[str, Any],
    *,
    where: str,
    default_interval: float | None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> DeviceSpec:
    """One device from its YAML mapping, the environment and flags (later ones win)."""
    raw = dict(raw)
    raw.pop("plugin", None)
    name = raw.pop("name", None)
    if name is None:
        name = plugin_cls.name
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{where}.name", f"expected a short name of letters, digits, _.:-, got {name!r}")
    from_env = config.env_layer(plugin_cls.name, plugin_cls.config_schema, env, plugin_cls.env_aliases,
                                extra_keys=("interval",))
    interval = raw.pop("interval", None)
    interval = from_env.pop("interval", interval)  # GRIDTAP_<PLUGIN>_INTERVAL, like every other key
    if flags and flags.get("interval") is not None:
        interval = flags["interval"]
    if interval is None:
        interval = default_interval if default_interval is not None else plugin_cls.default_interval
    try:
        interval = Duration.parse(interval)
    except ValueError as e:
        raise ConfigError(f"{where}.interval", str(e)) from None
    layers: list[tuple[Mapping[str, Any], bool]] = [(raw, False)]
    layers.append((from_env, True))
    if flags:
        layers.append(({k: v for k, v in flags.items() if k != "interval" and v is not None}, True))
    settings = config.build(plugin_cls.config_schema, where, *layers)
    _register_secrets(settings)
    return DeviceSpec(plugin_cls, name, float(interval), settings)


@dataclass
class LoadedDevice:
    """One device resolved from ``--config``, the environment and flags, with the file's common
    settings (defaults when there is no file)."""

    spec: DeviceSpec
    common: Common
    #: The device's own mapping in the file and the whole file, as loaded (adapted).
    raw: dict[str, Any]
    loaded: dict[str, Any]


def load_device(
    plugin_cls: type[plugin.Plugin],
    *,
    config_path: str | None = None,
    name: str | None = None,
    flags: Mapping[str, str] | None = None,
) -> LoadedDevice:
    """The one ``plugin_cls`` device a command works on: from ``config_path`` (picked by
    ``name`` when the file has several), then ``GRIDTAP_<PLUGIN>_<KEY>``, then ``flags``
    (which may hold ``interval``). Used by ``gridtap run`` and by plugin commands
    (``gridtap sgready``, ``gridtap powerwall fetchcert``) so they read a device the same way."""
    common = load_common({})
    raw: dict[str, Any] = {}
    where = plugin_cls.name
    loaded: dict[str, Any] = {}
    if config_path:
        loaded = plugin_cls.adapt_config(config.load_yaml(config_path), config_path)
        common = load_common(loaded)
        found = devices_from_file(common, only_plugin=plugin_cls.name, only_name=name)
        if not found:
            raise ConfigError("devices", f"no {plugin_cls.name} device{' named ' + name if name else ''} "
                                         f"in {config_path}")
        if len(found) > 1:
            raise ConfigError("devices", f"{len(found)} {plugin_cls.name} devices in {config_path}; "
                                         "pick one with --name")
        where, _, raw = found[0]
        raw = dict(raw)
    if name is not None:
        raw["name"] = name
    spec = device_spec(plugin_cls, raw, where=where,
                       default_interval=float(common.interval) if config_path else None, flags=flags)
    return LoadedDevice(spec, common, raw, loaded)


def devices_from_file(
    common: Common, *, only_plugin: str | None = None, only_name: str | None = None
) -> list[tuple[str, type[plugin.Plugin], dict[str, Any]]]:
    """(where, plugin class, raw mapping) for each device entry in a config file."""
    out = []
    names: set[tuple[str, str]] = set()
    for i, entry in enumerate(common.devices):
        where = f"devices[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "expected a mapping with plugin, name and settings")
        pname = entry.get("plugin")
        if not isinstance(pname, str):
            raise ConfigError(f"{where}.plugin", "missing required value")
        if only_plugin and pname != only_plugin:
            continue
        if only_name and entry.get("name", pname) != only_name:
            continue
        key = (pname, str(entry.get("name", pname)))
        if key in names:
            raise ConfigError(f"{where}.name", f"device name {key[1]!r} is used twice for {pname}")
        names.add(key)
        out.append((where, plugin.load(pname), entry))
    return out
