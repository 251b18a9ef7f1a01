"""gridtap plugin "growatt": Growatt inverters through Growatt's cloud OpenAPI v1.

The API breaks every integration that ignores its limits (one call per endpoint and
parameters per 5 minutes, 10 plant lists a day, 10012 for anything more), so every call goes
through a persisted call budget (:mod:`.poller`); ``/metrics`` only ever serves what the
last collection fetched. See README.md for the metric table and how to get a token.
"""

from __future__ import annotations

import argparse
import logging
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from gridtap import logs, state
from gridtap.budget import Clock, SystemClock
from gridtap.config import Duration, Secret, check_http_url, setting
from gridtap.errors import ConfigError
from gridtap.model import Metric
from gridtap.plugin import Command, Plugin

from . import api, poller, values
from . import metrics as m

log = logging.getLogger("gridtap.growatt")


@dataclass
class GrowattConfig:
    token: Secret = setting(help="API token: ShinePhone app > Me > API token (web-portal tokens often see no "
                                 "plant); GROWATT_TOKEN")
    region: Literal["eu", "us", "cn", "au"] = setting(
        "eu", help="Growatt server: eu (openapi.growatt.com, also the rest of the world), us, cn, au")
    base_url: str | None = setting(None, help="API root instead of the region's, e.g. a white-label server or "
                                              "the simulator (http://127.0.0.1:8080/v1/)")
    plant_id: str | None = setting(None, help="the plant to read (default: every plant the token sees)")
    device_sn: list[str] = setting([], help="serial numbers of the devices to read (default: all)")
    cache_dir: str | None = setting(None, help="discovery cache, last values and rate-limit state "
                                               "(default: $XDG_STATE_HOME/gridtap/growatt)")
    timezone: str | None = setting(None, help="time zone of the plant's clock (Europe/Berlin, GMT+1) instead of "
                                              "the one the plant reports")
    plant_power_unit: Literal["kW", "W"] = setting("kW", help="unit of plant/data current_power")
    mix_power_unit: Literal["W", "kW"] = setting("W", help="unit of SPH/MIX grid and load powers")
    power_max_age: Duration = setting(Duration(900.0), help="live values (power, voltage...) older than this "
                                                            "are left out: Growatt repeats the last ones all night")
    stale_power: Literal["absent", "zero"] = setting(
        "absent", help="powers older than power_max_age: absent, or zero (0 W at night for dashboards)")
    stale_after: Duration = setting(Duration(3600.0), help="values the API could not refresh for this long are "
                                                           "no longer served")
    discovery_ttl: Duration = setting(Duration(6 * 3600.0), help="how long the plant and device lists are "
                                                                 "reused before they are read again")
    rate_window: Duration = setting(Duration(300.0), help="one call per endpoint and parameters per this long "
                                                          "(Growatt: 5m; lower only for a server with other limits)")
    call_spacing: Duration = setting(Duration(3.0), help="time between any two calls")
    timeout: Duration = setting(Duration(20.0), help="HTTP timeout of one call")


def check_base_url(url: str) -> None:
    check_http_url("growatt.base_url", url, "https://openapi.growatt.com/v1/")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.username is not None or parts.query or parts.fragment:
        # not echoed: what is there is often the token
        raise ConfigError("growatt.base_url", "give the API root only (https://openapi.growatt.com/v1/), without "
                                              "user@, ?query or #fragment: the token goes in token")
    path = parts.path.rstrip("/")
    endpoint = next((e for e in api.ENDPOINTS if path.endswith("/" + e) or path == e), None)
    if endpoint is not None:
        raise ConfigError("growatt.base_url", f"that is the {endpoint} endpoint; give the API root, e.g. "
                                              f"{parts.scheme}://{parts.netloc}{path[:-len(endpoint)] or '/'}")
    host = (parts.hostname or "").lower()
    if host in api.RETIRED_HOSTS:
        raise ConfigError("growatt.base_url", f"{host} is retired for the API; use "
                                              f"https://{api.RETIRED_HOSTS[host]}/v1/ (or just set region)")


def _looks_like_token(text: str) -> bool:
    """Growatt tokens are 32 letters and digits: such a value is not echoed in an error."""
    return len(text) >= 24 and text.isalnum()


class GrowattPlugin(Plugin):
    name: ClassVar[str] = "growatt"
    description: ClassVar[str] = "Growatt inverters (MIN/TLX, SPH/MIX, classic) via the Growatt cloud OpenAPI v1"
    config_schema: ClassVar[type] = GrowattConfig
    simulator_module = ".simulator"
    metrics = m.METRICS
    default_interval: ClassVar[float] = 300.0
    default_listen: ClassVar[str | None] = "127.0.0.1:9120"
    subdevice_labels: ClassVar[tuple[str, ...]] = ("plant_id", "device_sn")
    env_aliases: ClassVar[dict[str, str]] = {
        "GROWATT_TOKEN": "token", "GROWATT_REGION": "region", "GROWATT_BASE_URL": "base_url",
        "GROWATT_PLANT_ID": "plant_id", "GROWATT_DEVICE_SN": "device_sn", "GROWATT_CACHE_DIR": "cache_dir",
        "GROWATT_TIMEZONE": "timezone",
    }
    commands: ClassVar[dict[str, Command]] = {
        "backfill": Command("write N days of history (daily energy, hourly and peak power) as line protocol, "
                            "to InfluxDB or a Pushgateway", "gridtap_plugins.growatt.backfill"),
        "grott": Command("decode grott datalogger records to JSON (header, CRC, raw and scaled values)",
                         "gridtap_plugins.growatt.grott"),
    }

    def __init__(self, config: GrowattConfig, device: str, clock: Clock | None = None) -> None:
        super().__init__(config, device)
        logs.register_secret(config.token.reveal())
        # A token read from a file or an env file often ends in a newline or a CR: the header
        # would be refused by requests for it, on every call.
        token = Secret(config.token.reveal().strip())
        if not token.reveal():
            raise ConfigError("growatt.token", "missing value: give the API token (GROWATT_TOKEN)")
        if not token.reveal().isprintable() or any(c.isspace() for c in token.reveal()):
            raise ConfigError("growatt.token", "contains spaces or control characters (not shown); an API token "
                                               "is one word of letters and digits")
        logs.register_secret(token.reveal())
        if config.base_url is not None:
            check_base_url(config.base_url)
        if config.timezone is not None and values.parse_zone(config.timezone) is None:
            raise ConfigError("growatt.timezone", f"unknown time zone {config.timezone!r} (Europe/Berlin, GMT+1)")
        plant_id = config.plant_id.strip() if config.plant_id else None
        if plant_id is not None and not plant_id.isdigit():
            shown = "what looks like an API token (the token goes in token)" if _looks_like_token(plant_id) \
                else repr(config.plant_id)
            raise ConfigError("growatt.plant_id", f"expected the plant's number, got {shown}")
        cache_dir = state.ensure_dir(config.cache_dir or state.default_dir("growatt"), "growatt.cache_dir")
        self.clock: Clock = clock or SystemClock()
        root = api.base_url(config.region, config.base_url)
        self.client = api.Client(root, token, float(config.timeout))
        settings = poller.Settings(
            window=float(config.rate_window), spacing=float(config.call_spacing),
            discovery_ttl=float(config.discovery_ttl), stale_after=float(config.stale_after),
            plant_id=plant_id, device_sns=tuple(s.strip() for s in config.device_sn if s.strip()),
            timezone=config.timezone,
            options=m.Options(config.plant_power_unit, config.mix_power_unit, float(config.power_max_age),
                              config.stale_power))
        self.poller = poller.Poller(self.client, settings, Path(cache_dir),
                                    poller.file_stem(root, token.reveal()), self.clock,
                                    "" if config.base_url else config.region)

    def collect(self) -> list[Metric]:
        return self.poller.cycle()

    def diagnostics(self) -> list[Metric]:
        return self.poller.diagnostics()

    def status(self) -> dict[str, Any]:
        return self.poller.status()

    def close(self) -> None:
        wake = getattr(self.clock, "wake", None)
        if wake is not None:
            wake()
        self.client.close()

    def __repr__(self) -> str:
        return f"GrowattPlugin(device={self.device!r}, api={self.client.root!r})"

    # --- gridtap decode growatt FILE (grott datalogger records) --------------------------------
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--timezone", default="UTC",
                            help="time zone of the datalogger's clock for the record time (default UTC)")

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        from . import grott

        zone = values.parse_zone(getattr(args, "timezone", "UTC") or "UTC")
        if zone is None:
            raise ConfigError("--timezone", f"unknown time zone {args.timezone!r}")
        return [x for record in grott.decode_all(data) for x in grott.record_metrics(record, zone)]
