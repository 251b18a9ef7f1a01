"""MQTT output with Home Assistant discovery (shared/specs/ecosystem.md §3 Mosquitto, §4 HA discovery).

Topics (``<p>`` = ``topic_prefix``, default ``gridtap``)::

    <p>/status                          bridge: retained "online"; Last Will retained "offline"
    <p>/<plugin>/<device>/availability  retained "online"/"offline" from the batch's <plugin>_up
    <p>/<plugin>/<device>/state         one JSON object per collection, a key per sample
    <discovery_prefix>/sensor/<unique_id>/config   retained HA discovery, one per sample key

Everything in a discovery payload is derived from the :class:`MetricDef` (unit, kind, name)
and the sample's labels, never from knowledge of a device, so a new plugin gets correct
Home Assistant entities without touching this module.

Discovery form: one *single-component* config per sample (``sensor/<unique_id>/config``),
not HA 2024.11's device-based ``device/<id>/config``. Single-component discovery works with
every HA release that has MQTT discovery, and a sample key that appears later (a new label
value, a fault code that only exists while a fault is active) is one more retained message
instead of a re-send of the whole device with a growing ``cmps`` map.

State values are the model's values in base units (what /metrics shows); conversions for
HA (J -> kWh, ratio -> %, m³/s -> L/min, Unix time -> ISO timestamp) live in each entity's
``value_template``, so the state topic stays useful to non-HA subscribers. A key seen before
but absent from a collection is sent as ``null``: HA shows "unknown" instead of a stale value.

Sample kinds: gauges and counters become numeric sensors; a state set becomes a text sensor
whose state is the current state's name (no ``enum`` device class: older HA rejects it and a
value outside ``states`` would make the entity fail). Info metrics are not entities; their
labels fill the HA device block (model, sw_version, ...) via a fixed table of label names.
``<plugin>_up`` is not an entity either: it drives the availability topic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..config import Secret
from ..errors import OutputError
from ..health import health_defs
from ..model import Batch, Kind, Metric, MetricDef

log = logging.getLogger("gridtap.outputs.mqtt")

ONLINE = "online"
OFFLINE = "offline"

#: How a base unit is shown in HA: (device_class, unit_of_measurement, factor applied by the template).
#: Energy is converted to kWh because HA's ``energy`` device class only accepts Wh/kWh/MWh (J came
#: much later, 2024.x); m³/s is not an HA volume-flow unit, L/min is.
HA_UNITS: dict[str, tuple[str | None, str | None, float]] = {
    "celsius": ("temperature", "°C", 1.0),
    "watts": ("power", "W", 1.0),
    "joules": ("energy", "kWh", 1 / 3.6e6),
    "volts": ("voltage", "V", 1.0),
    "amperes": ("current", "A", 1.0),
    "hertz": ("frequency", "Hz", 1.0),
    "pascals": ("pressure", "Pa", 1.0),
    "ratio": (None, "%", 100.0),
    "seconds": ("duration", "s", 1.0),
    "bytes": ("data_size", "B", 1.0),
    "cubic_meters": ("volume", "m³", 1.0),
    "cubic_meters_per_second": ("volume_flow_rate", "L/min", 60000.0),
    "volt_amperes": ("apparent_power", "VA", 1.0),
    "": (None, None, 1.0),
}
#: Device classes HA only accepts with state_class total/total_increasing: a gauge in these
#: units (e.g. energy stored) is a ``total`` (may go up and down), never ``measurement``.
AMOUNT_CLASSES = {"energy", "volume", "gas", "water"}
#: Labels that describe the device rather than tell samples apart: not part of a sample key.
METADATA_LABELS = frozenset({"manufacturer", "vendor", "model"})
#: Label names (on any sample; on info metrics for the version/serial ones) -> HA device key.
DEVICE_LABELS = {
    "manufacturer": "manufacturer", "vendor": "manufacturer", "model": "model",
}
INFO_DEVICE_LABELS = {
    **DEVICE_LABELS,
    "serial": "serial_number", "serial_number": "serial_number",
    "sw_version": "sw_version", "software": "sw_version", "firmware": "sw_version",
    "hw_version": "hw_version", "hardware": "hw_version",
}

_NOT_KEY = re.compile(r"[^a-z0-9_]+")
_NOT_TOPIC = re.compile(r"[/+#\s\x00]+")


def sanitize(text: str) -> str:
    """``text`` lower-cased with every run of characters outside ``[a-z0-9_]`` made one ``_``."""
    return re.sub(r"_+", "_", _NOT_KEY.sub("_", text.lower())).strip("_")


def topic_segment(text: str) -> str:
    """One topic level: MQTT's separators and wildcards (``/ + #``) and blanks become ``_``."""
    return _NOT_TOPIC.sub("_", text) or "_"


def stem(plugin: str, definition: MetricDef) -> str:
    """The metric name without the plugin prefix (``intergas_flow_celsius`` -> ``flow_celsius``)."""
    name = definition.name
    return name[len(plugin) + 1:] if name.startswith(plugin + "_") else name


def key_labels(device: str, metric: Metric) -> list[tuple[str, str]]:
    """The labels that tell this sample apart from its siblings (see METADATA_LABELS)."""
    return [(k, v) for k, v in metric.labels
            if k not in METADATA_LABELS and not (k == "device" and v == device)]


def sample_key(plugin: str, device: str, metric: Metric) -> str:
    """The JSON key of a sample: metric name without the plugin prefix, then label values.

    ``intergas_temperature_celsius{sensor="flow"}`` -> ``temperature_celsius_flow``. Always
    ``[a-z0-9_]`` and starting with a letter, so ``value_json.<key>`` is valid Jinja.
    """
    parts = [stem(plugin, metric.definition), *(v for _, v in key_labels(device, metric))]
    key = sanitize("_".join(parts)) or "value"
    return key if key[0].isalpha() else "m_" + key


def display_name(plugin: str, device: str, metric: Metric) -> str:
    """Entity name (HA prefixes the device name): the stem without unit/suffix, then labels."""
    d = metric.definition
    s = stem(plugin, d).removesuffix("_total").removesuffix("_info")
    if d.unit:
        s = s.replace("_" + d.unit, "") if s != d.unit else s
    words = " ".join([s.replace("_", " "), *(v for _, v in key_labels(device, metric))]).strip()
    return (words[:1].upper() + words[1:]) if words else d.name


def unique_id(plugin: str, device: str, key: str) -> str:
    """``gridtap_<plugin>_<device>_<key>``, also the discovery object_id (``[a-z0-9_]``)."""
    return f"gridtap_{sanitize(plugin)}_{sanitize(device)}_{key}"


def device_identifier(plugin: str, device: str) -> str:
    return f"gridtap_{sanitize(plugin)}_{sanitize(device)}"


@dataclass(frozen=True)
class Topics:
    """The topics of one gridtap device."""

    bridge_status: str
    availability: str
    state: str

    @classmethod
    def of(cls, topic_prefix: str, plugin: str, device: str) -> Topics:
        base = f"{topic_prefix}/{topic_segment(plugin)}/{topic_segment(device)}"
        return cls(f"{topic_prefix}/status", f"{base}/availability", f"{base}/state")


def _guard(expr: str, key: str) -> str:
    """Jinja that renders ``expr`` only for a number (null -> ``None`` = HA "unknown")."""
    return f"{{{{ {expr} if value_json.{key} is number else None }}}}"


def _num(x: float) -> str:
    """A Jinja number literal: ``3600000`` rather than ``3.6e+06``."""
    r = round(x)
    return str(r) if abs(x - r) < 1e-9 * max(1.0, abs(x)) else repr(x)


def ha_sensor_fields(plugin: str, definition: MetricDef, key: str) -> dict[str, Any]:
    """device_class / unit_of_measurement / state_class / value_template of one sample key.

    Derived from the MetricDef only: unit via :data:`HA_UNITS`, counters are
    ``total_increasing``, gauges ``measurement`` (``total`` for amounts, see AMOUNT_CLASSES),
    ``*_timestamp_seconds`` gauges are HA timestamps, state sets are plain text.
    """
    d = definition
    plain = f"{{{{ value_json.{key} }}}}"
    if d.kind is Kind.STATESET:
        return {"value_template": plain}
    if d.unit == "seconds" and d.kind is Kind.GAUGE and d.name.endswith("_timestamp_seconds"):
        return {
            "device_class": "timestamp",
            "value_template": _guard(
                f"value_json.{key} | timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false)", key),
        }
    device_class, unit, factor = HA_UNITS.get(d.unit, (None, None, 1.0))
    if d.unit == "cubic_meters":  # the energy dashboard wants gas / water meters by their class
        s = stem(plugin, d)
        device_class = "gas" if "gas" in s.split("_") else "water" if "water" in s.split("_") else device_class
    out: dict[str, Any] = {}
    if device_class:
        out["device_class"] = device_class
    if unit:
        out["unit_of_measurement"] = unit
    if d.kind is Kind.COUNTER:
        out["state_class"] = "total_increasing"
    elif device_class in AMOUNT_CLASSES:
        out["state_class"] = "total"
    else:
        out["state_class"] = "measurement"
    if factor == 1.0:
        out["value_template"] = plain
    elif factor > 1:
        out["value_template"] = _guard(f"value_json.{key} * {_num(factor)}", key)
    else:
        out["value_template"] = _guard(f"value_json.{key} / {_num(1 / factor)}", key)
    return out


DEVICE_FIELDS = ("manufacturer", "model", "sw_version", "hw_version", "serial_number")


def device_metadata(metrics: Iterable[Metric]) -> dict[str, str]:
    """manufacturer/model/sw_version/hw_version/serial_number found in label *names*.

    Tables above; never knowledge of a device. Several distinct values (a proxy that sees two
    inverters) are joined with ", ".
    """
    found: dict[str, list[str]] = {}
    for m in sorted(metrics, key=lambda m: (m.name, m.labels)):
        table = INFO_DEVICE_LABELS if m.definition.kind is Kind.INFO else DEVICE_LABELS
        for k, v in m.labels:
            field = table.get(k)
            if field and v and v not in found.setdefault(field, []):
                found[field].append(v)
    return {f: ", ".join(found[f]) for f in DEVICE_FIELDS if found.get(f)}


def device_block(plugin: str, device: str, metadata: dict[str, str]) -> dict[str, Any]:
    """HA ``device``: identifiers and name, plus what :func:`device_metadata` found."""
    block: dict[str, Any] = {"identifiers": [device_identifier(plugin, device)], "name": device}
    block.update({f: metadata[f] for f in DEVICE_FIELDS if metadata.get(f)})
    block.setdefault("manufacturer", f"gridtap {plugin}")
    return block


def origin() -> dict[str, str]:
    return {"name": "gridtap", "sw": __version__}


def is_entity(plugin: str, metric: Metric) -> bool:
    """Info metrics and ``<plugin>_up`` (availability) are not entities."""
    d = metric.definition
    return d.kind is not Kind.INFO and d.name != f"{plugin}_up"


def discovery_config(
    plugin: str,
    device: str,
    metric: Metric,
    key: str,
    device_info: dict[str, Any],
    *,
    topic_prefix: str = "gridtap",
    discovery_prefix: str = "homeassistant",
) -> tuple[str, dict[str, Any]]:
    """(topic, payload) of the retained HA discovery config of one sample key.

    The framework's own health metrics (last success, collect duration) are diagnostics and
    only follow the bridge's availability, so they stay visible while the device is down.
    """
    topics = Topics.of(topic_prefix, plugin, device)
    uid = unique_id(plugin, device, key)
    _, last_success, duration = health_defs(plugin)
    health = metric.definition.name in (last_success.name, duration.name)
    availability = [{"topic": topics.bridge_status, "payload_available": ONLINE, "payload_not_available": OFFLINE}]
    if not health:
        availability.append({"topic": topics.availability, "payload_available": ONLINE,
                             "payload_not_available": OFFLINE})
    payload: dict[str, Any] = {
        "name": display_name(plugin, device, metric),
        "unique_id": uid,
        "object_id": uid,
        "state_topic": topics.state,
        **ha_sensor_fields(plugin, metric.definition, key),
        "availability": availability,
        "availability_mode": "all",
        "device": device_info,
        "o": origin(),
    }
    if health:
        payload["entity_category"] = "diagnostic"
    return f"{discovery_prefix}/sensor/{uid}/config", payload


def json_value(metric: Metric) -> float | int | str | None:
    """A sample's value for the state JSON (NaN/Inf -> null: JSON has no such numbers)."""
    v = metric.value
    if metric.definition.kind is Kind.STATESET or isinstance(v, str):
        return str(v)
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    f = float(v)
    if not math.isfinite(f):
        return None
    return int(f) if metric.definition.integer and f.is_integer() else f


def keyed_samples(plugin: str, device: str, metrics: Iterable[Metric]) -> list[tuple[str, Metric]]:
    """(key, sample) for the entity samples of a batch; colliding keys get a stable hash suffix.

    Two label values can sanitize to the same key (``a/b`` and ``a_b``); the second one (in
    name/label order) gets ``_<6 hex of its name and labels>``.
    """
    out: list[tuple[str, Metric]] = []
    used: set[str] = set()
    for m in sorted((m for m in metrics if is_entity(plugin, m)), key=lambda m: (m.name, m.labels)):
        key = sample_key(plugin, device, m)
        if key in used:
            digest = hashlib.sha1(repr((m.name, m.labels)).encode()).hexdigest()[:6]
            key = f"{key}_{digest}"
        used.add(key)
        out.append((key, m))
    return out


def state_payload(plugin: str, device: str, metrics: Iterable[Metric], known_keys: Iterable[str] = ()
                  ) -> dict[str, Any]:
    """The state JSON of one collection; ``known_keys`` missing from it are sent as null."""
    out: dict[str, Any] = dict.fromkeys(known_keys)
    for key, m in keyed_samples(plugin, device, metrics):
        out[key] = json_value(m)
    return dict(sorted(out.items()))


def availability_of(batch: Batch) -> str:
    """``online`` when the batch's ``<plugin>_up`` is 1 (``batch.ok`` when it has none)."""
    up = f"{batch.plugin}_up"
    for m in batch.metrics:
        if m.name == up:
            try:
                return ONLINE if float(m.value) >= 1 else OFFLINE
            except (TypeError, ValueError):
                break
    return ONLINE if batch.ok else OFFLINE


@dataclass
class _Device:
    plugin: str
    device: str
    keys: dict[str, Metric]  # key -> a sample of it (its definition and labels drive discovery)
    metadata: dict[str, str]
    state: dict[str, Any]
    availability: str


class MqttPublisher:
    """Publishes batches to an MQTT broker with Home Assistant discovery.

    ``start()`` connects (raising :class:`OutputError` when the broker is unreachable or
    refuses us, so a wrong host or password is reported at start-up), then paho's network
    thread reconnects by itself; on every (re)connect the bridge status, discovery and
    availability are re-published, because a broker without persistence forgets retained
    messages. ``publish()`` never raises for a broker that went away (the next collection
    publishes again); it is safe to call from any thread.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        topic_prefix: str = "gridtap",
        discovery_prefix: str = "homeassistant",
        client_id: str | None = None,
        username: str | None = None,
        password: Secret | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        retain_state: bool = False,
        keepalive: int = 60,
        connect_timeout: float = 10.0,
        ha_status_topic: str | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.host = host
        self.port = port
        self.topic_prefix = topic_prefix.rstrip("/")
        self.discovery_prefix = discovery_prefix.rstrip("/")
        self.retain_state = retain_state
        self.connect_timeout = connect_timeout
        #: HA's birth topic (HA's own default is ``homeassistant/status``, whatever the discovery prefix).
        self.ha_status_topic = ha_status_topic or f"{self.discovery_prefix}/status"
        self.status_topic = f"{self.topic_prefix}/status"
        self._keepalive = keepalive
        self._lock = threading.RLock()
        self._devices: dict[tuple[str, str], _Device] = {}
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._warned_offline = False
        self._password = password
        cid = client_id or f"gridtap-{socket.gethostname()}-{os.getpid()}"
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
        if username is not None or password is not None:
            secret = password.reveal() if isinstance(password, Secret) else password
            self._client.username_pw_set(username or "", secret)
        if tls or ca_file is not None:
            self._client.tls_set(ca_certs=ca_file)  # None: the system's CAs
        self._client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and start the network thread; :class:`OutputError` if that fails."""
        where = f"mqtt {self.host}:{self.port}"
        try:
            self._client.connect(self.host, self.port, keepalive=self._keepalive)
        except (OSError, ValueError) as exc:
            raise OutputError(self._redact(f"{where}: cannot connect: {getattr(exc, 'strerror', None) or exc}")
                              ) from None
        self._client.loop_start()
        if not self._connected.wait(self.connect_timeout) or self._connect_error:
            problem = self._connect_error or f"no answer within {self.connect_timeout:g}s"
            self._client.loop_stop()
            with contextlib.suppress(Exception):
                self._client.disconnect()
            raise OutputError(self._redact(f"{where}: broker refused the connection: {problem}"))

    def stop(self) -> None:
        """Say ``offline`` (retained) for the bridge, then disconnect cleanly.

        A clean disconnect suppresses the Last Will, hence the explicit ``offline``.
        """
        with contextlib.suppress(Exception):
            if self._client.is_connected():
                info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(timeout=2)
        with contextlib.suppress(Exception):
            self._client.disconnect()
        with contextlib.suppress(Exception):
            self._client.loop_stop()

    # -- publishing --------------------------------------------------------------------------

    def publish(self, batches: Iterable[Batch]) -> None:
        """Discovery for new sample keys, then availability and state of each batch."""
        for batch in batches:
            with self._lock:
                self._publish_batch(batch)

    def _publish_batch(self, batch: Batch) -> None:
        plugin, device = batch.plugin, batch.device
        metrics = batch.labelled()
        ident = (plugin, device)
        dev = self._devices.get(ident)
        found = device_metadata(metrics)
        if dev is None:
            dev = _Device(plugin, device, {}, found, {}, OFFLINE)
            self._devices[ident] = dev
        elif {**dev.metadata, **found} != dev.metadata:
            # New or changed metadata (a collection without the info metric keeps the old).
            dev.metadata = {**dev.metadata, **found}
            for key, sample in dev.keys.items():  # the device block changed: update every entity
                self._send_discovery(dev, key, sample)
        keyed = keyed_samples(plugin, device, metrics)
        for key, sample in keyed:
            if key not in dev.keys:
                dev.keys[key] = sample
                self._send_discovery(dev, key, sample)
        topics = Topics.of(self.topic_prefix, plugin, device)
        dev.availability = availability_of(batch)
        self._send(topics.availability, dev.availability, qos=1, retain=True)
        dev.state = state_payload(plugin, device, metrics, dev.keys)
        self._send(topics.state, json.dumps(dev.state, separators=(",", ":")), qos=0, retain=self.retain_state)

    def _send_discovery(self, dev: _Device, key: str, sample: Metric) -> None:
        info = device_block(dev.plugin, dev.device, dev.metadata)
        topic, payload = discovery_config(dev.plugin, dev.device, sample, key, info,
                                          topic_prefix=self.topic_prefix, discovery_prefix=self.discovery_prefix)
        self._send(topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":")), qos=1, retain=True)

    def _send(self, topic: str, payload: str, *, qos: int, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0 and not self._warned_offline:
            self._warned_offline = True
            log.warning("mqtt %s:%s: not connected; publishing again once the broker is back", self.host, self.port)

    def _republish_all(self) -> None:
        """Everything retained again: after a (re)connect or HA's birth message."""
        with self._lock:
            for dev in self._devices.values():
                for key, sample in dev.keys.items():
                    self._send_discovery(dev, key, sample)
                topics = Topics.of(self.topic_prefix, dev.plugin, dev.device)
                self._send(topics.availability, dev.availability, qos=1, retain=True)
                if dev.state:
                    self._send(topics.state, json.dumps(dev.state, separators=(",", ":")), qos=0,
                               retain=self.retain_state)

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            if self._connected.is_set() and self._connect_error is None:  # a reconnect; start() reports the first
                log.warning("mqtt %s:%s: broker refused the connection: %s; retrying", self.host, self.port,
                            reason_code)
            self._connect_error = str(reason_code)
            self._connected.set()
            return
        self._connect_error = None
        self._warned_offline = False
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        client.subscribe(self.ha_status_topic, qos=1)
        first = not self._connected.is_set()
        self._connected.set()
        if first:
            log.info("mqtt %s:%s: connected", self.host, self.port)
        else:
            log.info("mqtt %s:%s: reconnected; re-publishing discovery", self.host, self.port)
        self._republish_all()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        # After a refused CONNECT the refusal was reported already; the disconnect adds nothing.
        if getattr(reason_code, "value", 0) and self._connect_error is None:
            log.warning("mqtt %s:%s: disconnected (%s); reconnecting", self.host, self.port, reason_code)

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == self.ha_status_topic and message.payload.strip().lower() == ONLINE.encode():
            log.info("mqtt: Home Assistant is online; re-publishing discovery")
            self._republish_all()

    def _redact(self, text: str) -> str:
        if self._password is not None:
            secret = self._password.reveal() if isinstance(self._password, Secret) else str(self._password)
            if secret:
                text = text.replace(secret, "***")
        return text

