"""Push-style outputs (Pushgateway, MQTT) behind one small interface, and their settings.

``run --output pushgateway|mqtt`` and ``serve`` hand every fresh batch to each configured
sink. A sink that cannot deliver logs it once per change of state and keeps going: an
unreachable broker must not stop collection, nor the /metrics server.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import config, logs
from .config import Secret, setting
from .errors import ConfigError, GridtapError
from .model import Batch

log = logging.getLogger("gridtap.sinks")


@dataclass(frozen=True)
class PushgatewaySettings:
    url: str = setting(help="Pushgateway base URL, e.g. http://127.0.0.1:9091")
    job: str = setting("gridtap", help="job label of the pushed groups")
    username: str | None = setting(None, help="basic-auth user")
    password: Secret | None = setting(None, help="basic-auth password")
    timeout: config.Duration = setting(config.Duration(10.0), help="HTTP timeout")
    delete_on_exit: bool = setting(False, help="delete our groups on a clean exit (else the last push stays)")


@dataclass(frozen=True)
class MqttSettings:
    host: str = setting(help="MQTT broker host")
    port: int = setting(1883, help="MQTT broker port")
    topic_prefix: str = setting("gridtap", help="prefix of state and availability topics")
    discovery_prefix: str = setting("homeassistant", help="Home Assistant discovery prefix")
    client_id: str | None = setting(None, help="MQTT client id (default: gridtap-<host>-<pid>-<random>)")
    username: str | None = setting(None, help="MQTT user")
    password: Secret | None = setting(None, help="MQTT password")
    tls: bool = setting(False, help="connect with TLS (the broker's certificate is verified)")
    ca_file: str | None = setting(None, help="CA certificate(s) to verify the broker with instead of the "
                                             "system's; setting it turns TLS on")
    bridge_id: str | None = setting(None, help="this process's bridge: its status topic <topic_prefix>/bridge/<id>/"
                                               "status tells Home Assistant whether the process is running "
                                               "(default: made from the configured devices, e.g. intergas-boiler)")
    keepalive: int = setting(60, help="MQTT keepalive in seconds; the broker sends the Last Will (bridge offline) "
                                      "about 1.5 keepalives after the process died")


def _settings(schema: type, name: str, raw: Mapping[str, Any] | None, flags: Mapping[str, str]) -> Any:
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"config.{name}", "expected a mapping of settings")
    settings = config.build(schema, f"config.{name}", (raw or {}, False),
                            (config.env_layer(name, schema), True), (flags, True))
    for value in vars(settings).values():
        if isinstance(value, Secret):
            logs.register_secret(value.reveal())
    return settings


def pushgateway_settings(raw: Mapping[str, Any] | None, url_flag: str | None) -> PushgatewaySettings:
    """The ``pushgateway:`` section (or ``--pushgateway URL``), checked before anything is pushed."""
    settings = _settings(PushgatewaySettings, "pushgateway", raw, {"url": url_flag} if url_flag else {})
    config.check_http_url("config.pushgateway.url", settings.url, "http://127.0.0.1:9091")
    if not settings.job.strip():
        raise ConfigError("config.pushgateway.job", "must not be empty")
    return settings


def mqtt_settings(raw: Mapping[str, Any] | None, host_flag: str | None) -> MqttSettings:
    """The ``mqtt:`` section (or ``--mqtt HOST[:PORT]``); a bad address or an unreadable
    ``ca_file`` is a config error, named here."""
    flags: dict[str, str] = {}
    if host_flag:
        if "://" in host_flag:
            raise ConfigError("--mqtt", f"expected HOST[:PORT], not a URL: {host_flag!r}")
        host, sep, port = host_flag.rpartition(":")
        if sep and not port.isdigit():
            raise ConfigError("--mqtt", f"expected HOST[:PORT] with a numeric port, got {host_flag!r}")
        flags = {"host": host, "port": port} if sep else {"host": host_flag}
    settings = _settings(MqttSettings, "mqtt", raw, flags)
    if not settings.host.strip() or "://" in settings.host or "/" in settings.host:
        raise ConfigError("config.mqtt.host", f"expected a host name or address, got {settings.host!r}")
    config.check_port("config.mqtt.port", settings.port)
    if not 5 <= settings.keepalive <= 65535:
        raise ConfigError("config.mqtt.keepalive", f"expected 5..65535 seconds, got {settings.keepalive}")
    if settings.bridge_id is not None and not re.fullmatch(r"[A-Za-z0-9_.:+-]{1,64}", settings.bridge_id):
        raise ConfigError("config.mqtt.bridge_id", f"expected 1-64 letters, digits, _.:+-, got {settings.bridge_id!r}")
    if settings.ca_file is not None:
        try:
            Path(settings.ca_file).read_bytes()
        except OSError as e:
            raise ConfigError("config.mqtt.ca_file", f"cannot read {settings.ca_file}: {e.strerror}") from None
    return settings


class Sink(Protocol):
    name: str

    def publish(self, batches: list[Batch]) -> None: ...

    def close(self) -> None: ...


class PushgatewaySink:
    name = "pushgateway"

    def __init__(self, settings: PushgatewaySettings, ledger_path: Path | None = None) -> None:
        from .outputs import pushgateway

        self.settings = settings
        self.ledger = pushgateway.GroupLedger(settings.url, settings.job, ledger_path)
        self._pushed: list[Batch] = []

    def _auth(self) -> dict[str, Any]:
        s = self.settings
        return {"timeout": float(s.timeout), "username": s.username, "password": s.password}

    def publish(self, batches: list[Batch]) -> None:
        from .outputs import pushgateway

        s = self.settings
        pushed = pushgateway.push(batches, s.url, s.job, **self._auth())
        gone = self.ledger.vanished(pushed)
        if gone:  # physical devices that went stale: their groups go, as their series do on /metrics
            pushgateway.delete_groups(gone, s.url, s.job, **self._auth())
        self._pushed = batches

    def close(self) -> None:
        if self.settings.delete_on_exit and self._pushed:
            from .outputs import pushgateway

            s = self.settings
            keys = [k for b in self._pushed for k in self.ledger.forget(b.plugin, b.device)]
            pushgateway.delete_groups(keys, s.url, s.job, **self._auth())
            pushgateway.delete(self._pushed, s.url, s.job, **self._auth())


class MqttSink:
    """MQTT with Home Assistant discovery (see :mod:`gridtap.outputs.mqtt`).

    ``devices``: the (plugin, device) pairs of this process (its bridge and its ghost clean-up);
    ``invocation``: what names this process across restarts (``run intergas /etc/boiler.yaml``);
    ``once_interval``: set for ``run --once``: retained messages and entities expire after 3 of it.
    """

    name = "mqtt"

    def __init__(self, settings: MqttSettings, devices: Sequence[tuple[str, str]] = (), invocation: str = "",
                 once_interval: float | None = None) -> None:
        from . import state
        from .outputs.mqtt import MqttPublisher

        s = settings
        self.publisher = MqttPublisher(s.host, s.port, topic_prefix=s.topic_prefix,
                                       discovery_prefix=s.discovery_prefix, client_id=s.client_id,
                                       username=s.username, password=s.password, tls=s.tls or s.ca_file is not None,
                                       ca_file=s.ca_file, keepalive=s.keepalive, bridge_id=s.bridge_id,
                                       devices=devices, invocation=invocation or None,
                                       ledger_path=state.default_dir("mqtt") / "bridges.json",
                                       once_expire_after=None if once_interval is None else 3 * once_interval)
        self.publisher.start()

    def publish(self, batches: list[Batch]) -> None:
        self.publisher.publish(batches)

    def close(self) -> None:
        self.publisher.stop()


class Delivery:
    """Hands batches to sinks; one failing sink is logged (once per state) and skipped."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks
        self._failing: dict[str, str] = {}

    def publish(self, batches: list[Batch]) -> None:
        if not batches:
            return
        for sink in self.sinks:
            try:
                sink.publish(batches)
            except GridtapError as e:
                if self._failing.get(sink.name) != str(e):
                    log.warning("%s: %s", sink.name, e)
                self._failing[sink.name] = str(e)
                continue
            if self._failing.pop(sink.name, None) is not None:
                log.info("%s: delivering again", sink.name)

    def close(self) -> None:
        """Close every sink once; later calls do nothing."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            try:
                sink.close()
            except GridtapError as e:
                log.warning("%s: %s", sink.name, e)


class DeliveryWorker:
    """Hands batches to a :class:`Delivery` on its own thread, so a slow or unreachable sink
    never holds up a collector (or another device). Only the newest batch of each device waits
    in line: memory stays bounded and nothing stale is pushed after something fresher.

    A batch submitted while the thread is idle is delivered at once (pushed readings reach the
    Pushgateway and MQTT within milliseconds of their collection).
    """

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self._pending: dict[tuple[str, str], Batch] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="delivery", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        with self._cond:
            self._pending[(batch.plugin, batch.device)] = batch
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                batches = list(self._pending.values())
                self._pending.clear()
            try:
                self.delivery.publish(batches)
            except Exception:  # noqa: BLE001 - a sink bug must not end delivery for good
                log.warning("delivery failed", exc_info=True)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is pending (within ``timeout``), then close the sinks."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        self.delivery.close()
