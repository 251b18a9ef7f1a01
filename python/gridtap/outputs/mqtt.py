"""MQTT output with Home Assistant discovery (shared/specs/ecosystem.md §3 Mosquitto, §4 HA discovery).

Topics (``<p>`` = ``topic_prefix``, default ``gridtap``; ``<dp>`` = ``discovery_prefix``)::

    <p>/bridge/<bridge>/status             this process: retained "online"; Last Will retained "offline"
    <p>/<plugin>/<device>/availability     retained "online"/"offline" from the batch's <plugin>_up
    <p>/<plugin>/<device>/state            JSON, a key per sample of the configured device itself
    <p>/<plugin>/<device>/<sub>/state      JSON of one physical device behind it (``subdevice_labels``)
    <dp>/<component>/<unique_id>/config    retained HA discovery, one per sample key

Availability is per process and per device. Each process has its own bridge (``mqtt.bridge_id``,
default: made from the devices it is configured with), so stopping one process, cleanly or by
its Last Will, only makes *its* entities unavailable. Measurements also follow their device's
``<plugin>_up``; diagnostics (health, proxy counters) follow only the bridge, so they stay
visible while the device is down. While a pushing device is only "waiting" (the framework
sends no ``<plugin>_up``), the device availability is left as it was.

What the entities look like comes from the metric model (:mod:`gridtap.outputs.ha`), never
from knowledge of a device. State values are the model's values in base units (what
/metrics shows); each entity's ``value_template`` converts and rounds for HA, so the state
topics stay useful to any other subscriber. A key seen before but absent from a collection
is sent as ``null``: HA shows "unknown" instead of a stale value.

No ghosts:

* At start the process reads the retained discovery configs on the broker and clears those of
  its own bridge (or of the bridge the same invocation used last time, remembered in the state
  folder, when that bridge is not online) whose device it is no longer configured with: a
  renamed device's old entities disappear from HA.
* ``run --once`` publishes no bridge status; its state is retained (HA may subscribe after
  the process is gone), every retained message carries an MQTT 5 message expiry of 3 intervals
  and its entities ``expire_after`` the same, so a device whose once-runs stop goes unavailable
  in HA and its configs vanish from the broker.

Discovery form: one *single-component* config per sample key, not HA 2024.11's device-based
``device/<id>/config``: it works with every HA release that has MQTT discovery, and a sample
key that appears later (a fault code that only exists while a fault is active) is one more
retained message instead of a re-send of the whole device.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Secret
from ..errors import OutputError
from ..model import Batch, Kind, Metric, display_of
from . import ha
from .ha import DeviceRef, sanitize

log = logging.getLogger("gridtap.outputs.mqtt")

ONLINE = "online"
OFFLINE = "offline"
#: How long ``start()`` waits for the broker to hand over the retained discovery configs.
SCAN_TIMEOUT = 5.0

_TOPIC_UNSAFE = str.maketrans({c: "_" for c in "/+#\x00 \t\r\n"})


def topic_segment(text: str) -> str:
    """One topic level: MQTT's separators and wildcards (``/ + #``) and blanks become ``_``."""
    return text.translate(_TOPIC_UNSAFE) or "_"


def bridge_id_for(devices: Sequence[tuple[str, str]]) -> str:
    """The default bridge of a process: its configured devices, e.g. ``intergas-boiler``.

    Two processes can only share it by configuring the same devices, which would be a mistake
    anyway. Long device lists are shortened to a hash so the topic stays short.
    """
    parts = sorted({f"{topic_segment(p)}-{topic_segment(d)}" for p, d in devices}) or ["gridtap"]
    joined = "+".join(parts)
    if len(joined) <= 64:
        return joined
    return f"{parts[0][:40]}+{len(parts) - 1}-{hashlib.sha1(joined.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Topics:
    """The topics of one gridtap device (``sub``: a physical device behind it)."""

    topic_prefix: str
    plugin: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.topic_prefix}/{topic_segment(self.plugin)}/{topic_segment(self.device)}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    def state(self, sub: str | None = None) -> str:
        return f"{self.base}/{topic_segment(sub)}/state" if sub else f"{self.base}/state"


def bridge_status_topic(topic_prefix: str, bridge_id: str) -> str:
    return f"{topic_prefix}/bridge/{topic_segment(bridge_id)}/status"


def origin() -> dict[str, str]:
    return {"name": "gridtap", "sw": __version__}


def json_value(metric: Metric) -> float | int | str | None:
    """A sample's value for the state JSON (NaN/Inf -> null: JSON has no such numbers)."""
    v = metric.value
    if metric.definition.display is not None:
        label = display_of(metric.definition, dict(metric.labels)).state_label
        if label is not None:  # the state is the label's value; a 0 sample says no state
            return dict(metric.labels).get(label) if v else None
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


def availability_of(batch: Batch) -> str | None:
    """``online``/``offline`` from the batch's ``<plugin>_up``; without one: ``online`` for a good
    batch, None (leave as it is) for a failed one, which is a device only waiting for a push."""
    up = f"{batch.plugin}_up"
    for m in batch.metrics:
        if m.name == up:
            try:
                return ONLINE if float(m.value) >= 1 else OFFLINE
            except (TypeError, ValueError):
                return OFFLINE
    return ONLINE if batch.ok else None


# --- the entities of a batch -----------------------------------------------------------


@dataclass
class Entity:
    key: str
    sample: Metric
    design: ha.EntityDesign
    device: DeviceRef
    unique_id: str
    state_topic: str

    @property
    def discovery_topic_tail(self) -> str:
        return f"{self.design.component}/{self.unique_id}/config"


@dataclass
class _Device:
    """One configured device (a batch's plugin/device) and the physical devices behind it."""

    plugin: str
    device: str
    topics: Topics
    entities: dict[str, Entity] = field(default_factory=dict)  # unique_id -> entity
    keys: dict[str, set[str]] = field(default_factory=dict)  # state topic -> keys seen
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # device ident -> fields
    names: dict[str, str] = field(default_factory=dict)  # subid -> physical device name
    state: dict[str, dict[str, Any]] = field(default_factory=dict)  # state topic -> last JSON
    availability: str | None = None
    gateway: bool = False
    entity_ids: dict[str, str] = field(default_factory=dict)  # unique_id -> default_entity_id


def _key_values(metric: Metric, subdevice_labels: tuple[str, ...]) -> list[str]:
    """Label values that tell a sample apart from its siblings on one HA device (a state label
    does not: it is the entity's value)."""
    state = display_of(metric.definition, dict(metric.labels)).state_label if metric.definition.display else None
    return [v for k, v in metric.labels
            if k not in ha.METADATA_LABELS and k != "device" and k not in subdevice_labels and k != state]


def sample_key(plugin: str, metric: Metric, subdevice_labels: tuple[str, ...] = ()) -> str:
    """The JSON key of a sample in its state topic: the stem, then the distinguishing label values.

    ``intergas_temperature_celsius{sensor="flow"}`` -> ``temperature_celsius_flow``. Always
    ``[a-z0-9_]`` and starting with a letter, so ``value_json.<key>`` is valid Jinja.
    """
    parts = [ha.stem(plugin, metric.definition), *_key_values(metric, subdevice_labels)]
    key = sanitize("_".join(parts)) or "value"
    return key if key[0].isalpha() else "m_" + key


class MqttPublisher:
    """Publishes batches to an MQTT broker with Home Assistant discovery.

    ``start()`` connects (raising :class:`OutputError` when the broker is unreachable or
    refuses us, so a wrong host or password is reported at start-up), clears the discovery
    configs of devices this process no longer has, then paho's network thread reconnects by
    itself; on every (re)connect the bridge status, discovery and availability are re-published,
    because a broker without persistence forgets retained messages. ``publish()`` never raises
    for a broker that went away (the next collection publishes again); it is safe to call from
    any thread.

    ``devices``: the (plugin, device) pairs this process is configured with (the default bridge
    id and what "no longer configured" means). ``once_expire_after``: seconds; set for
    ``run --once``, see the module docstring. ``invocation``: what identifies this process
    across restarts (``run intergas /etc/gridtap/boiler.yaml``) for the bridge ledger in
    ``ledger_path``.
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
        bridge_id: str | None = None,
        devices: Sequence[tuple[str, str]] = (),
        once_expire_after: float | None = None,
        invocation: str | None = None,
        ledger_path: Path | None = None,
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
        self.configured = list(dict.fromkeys(devices))
        self.bridge_id = bridge_id or bridge_id_for(self.configured)
        self.status_topic = bridge_status_topic(self.topic_prefix, self.bridge_id)
        self.once_expire_after = once_expire_after
        self.invocation = invocation
        self.ledger_path = ledger_path
        self._keepalive = keepalive
        self._lock = threading.RLock()
        self._devices: dict[tuple[str, str], _Device] = {}
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._warned_offline = False
        self._password = password
        self._pending: list[Any] = []
        self._scan: dict[str, bytes] | None = None  # discovery topic -> retained payload, during start()
        self._bridges: dict[str, str] = {}  # bridge status topic -> retained payload, during start()
        self._scan_token = uuid.uuid4().hex
        self._scan_done = threading.Event()
        self._sync_topic = f"{self.topic_prefix}/bridge/{topic_segment(self.bridge_id)}/sync"
        self._retained_uid_topics: dict[str, str] = {}  # unique_id -> discovery topic found at start
        self._mqtt = mqtt
        # Unique per publisher: a broker disconnects the older of two clients with one id.
        cid = client_id or f"gridtap-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        protocol = mqtt.MQTTv5 if self.once else mqtt.MQTTv311
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=protocol)
        if username is not None or password is not None:
            secret = password.reveal() if isinstance(password, Secret) else password
            self._client.username_pw_set(username or "", secret)
        if tls or ca_file is not None:
            self._client.tls_set(ca_certs=ca_file)  # None: the system's CAs
        if not self.once:
            self._client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    @property
    def once(self) -> bool:
        return self.once_expire_after is not None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, start the network thread and clear ghosts; :class:`OutputError` if that fails."""
        where = f"mqtt {self.host}:{self.port}"
        if not self.once:
            self._scan = {}
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
        if not self.once:
            if not self._scan_done.wait(SCAN_TIMEOUT):
                log.warning("%s: the retained discovery configs did not arrive within %gs; "
                            "not looking for entities of renamed devices", where, SCAN_TIMEOUT)
            self._clear_ghosts()

    def stop(self) -> None:
        """Say ``offline`` (retained) for the bridge, then disconnect cleanly.

        A clean disconnect suppresses the Last Will, hence the explicit ``offline``. A once-run
        has no bridge; it waits until its messages are delivered.
        """
        with contextlib.suppress(Exception):
            if self._client.is_connected():
                if not self.once:
                    self._pending.append(self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True))
                deadline = time.monotonic() + 5
                for info in self._pending:
                    info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            self._client.disconnect()
        with contextlib.suppress(Exception):
            self._client.loop_stop()

    # -- ghosts ------------------------------------------------------------------------------

    def _clear_ghosts(self) -> None:
        """Clear retained configs of this bridge (or of the bridge this invocation had last time)
        whose device this process is no longer configured with."""
        scan, self._scan = self._scan or {}, None
        bridges, self._bridges = self._bridges, {}
        mine = {self.status_topic}
        previous = self._ledger_swap()
        if previous and previous != self.bridge_id:
            old = bridge_status_topic(self.topic_prefix, previous)
            if bridges.get(old) == ONLINE:
                log.warning("mqtt: bridge %s (this invocation's last one) is online: another gridtap process "
                            "uses it, so its entities are left alone", previous)
            else:
                mine.add(old)
        prefixes = tuple(Topics(self.topic_prefix, p, d).base + "/" for p, d in self.configured)
        ghosts: list[str] = []
        ghost_bases: set[str] = set()
        for topic, payload in scan.items():
            try:
                cfg = json.loads(payload)
                avail = [a.get("topic") for a in cfg.get("availability", [])]
                state_topic = cfg.get("state_topic", "")
                uid = cfg.get("unique_id", "")
            except (ValueError, AttributeError, TypeError):
                continue
            if not isinstance(cfg.get("o"), dict) or cfg["o"].get("name") != "gridtap" or not avail:
                continue
            if avail[0] not in mine:
                continue
            if isinstance(state_topic, str) and state_topic.startswith(prefixes):
                if uid:
                    self._retained_uid_topics[uid] = topic
                continue
            ghosts.append(topic)
            if isinstance(state_topic, str):
                ghost_bases.add(state_topic.rsplit("/state", 1)[0])
        for topic in ghosts:
            self._pending.append(self._client.publish(topic, b"", qos=1, retain=True))
        for base in ghost_bases:  # the availability topic of a configured device (not of a physical one)
            if base.count("/") == self.topic_prefix.count("/") + 2:
                self._client.publish(f"{base}/availability", b"", qos=1, retain=True)
        if ghosts:
            log.info("mqtt: cleared %d discovery configs of devices this process no longer has", len(ghosts))

    def _ledger_swap(self) -> str | None:
        """The bridge this invocation used last time (recording the current one)."""
        if self.ledger_path is None or not self.invocation:
            return None
        from .. import state

        key = f"{self.host}:{self.port} {self.topic_prefix} {self.invocation}"
        try:
            book = state.read_json(self.ledger_path) if self.ledger_path.exists() else {}
            if not isinstance(book, dict):
                book = {}
            previous = book.get(key)
            if previous != self.bridge_id:
                book[key] = self.bridge_id
                state.ensure_dir(self.ledger_path.parent, "mqtt ledger")
                state.write_json(self.ledger_path, book)
        except Exception as e:  # noqa: BLE001 - the ledger only helps cleaning up; never fatal
            log.debug("mqtt: bridge ledger %s: %s", self.ledger_path, e)
            return None
        return previous if isinstance(previous, str) else None

    # -- publishing --------------------------------------------------------------------------

    def publish(self, batches: Iterable[Batch]) -> None:
        """Discovery for new sample keys, then availability and state of each batch."""
        for batch in batches:
            with self._lock:
                self._publish_batch(batch)

    def _name_physical(self, dev: _Device, sub: str, samples: list[Metric]) -> str:
        """A physical device's name, fixed at its first appearance (see :func:`ha.physical_name`)."""
        name = dev.names.get(sub)
        if name is None:
            base = ha.physical_name(ha.naming_labels(samples), dev.device)
            taken = set(dev.names.values())
            name, n = base, 1
            while name in taken:
                n += 1
                name = f"{base} {n}"
            dev.names[sub] = name
        return name

    def _device_refs(self, dev: _Device, batch: Batch, metrics: list[Metric]) -> list[tuple[Metric, DeviceRef]]:
        """Each sample with the HA device it belongs to."""
        configured = DeviceRef(ha.device_identifier(dev.plugin, dev.device), dev.device)
        subs = [ha.subdevice_id(dict(m.labels), batch.subdevice_labels) for m in metrics]
        groups: dict[str, list[Metric]] = {}
        for m, sub in zip(metrics, subs, strict=True):
            if sub is not None:
                groups.setdefault(sub, []).append(m)
        out = []
        for m, sub in zip(metrics, subs, strict=True):
            ref = configured
            if sub is not None:
                name = self._name_physical(dev, sub, groups[sub])
                ref = DeviceRef(f"gridtap_{sanitize(dev.plugin)}_{sub}", name, sub, configured.ident)
            component = ha.display_for(dev.plugin, m).component
            if component:
                ref = DeviceRef(f"{ref.ident}_{sanitize(component)}", f"{ref.name} {component}", ref.subid, ref.ident,
                                component)
            out.append((m, ref))
        return out

    def _publish_batch(self, batch: Batch) -> None:
        plugin, device = batch.plugin, batch.device
        ident = (plugin, device)
        dev = self._devices.get(ident)
        if dev is None:
            dev = self._devices[ident] = _Device(plugin, device, Topics(self.topic_prefix, plugin, device))
        metrics = batch.labelled()
        placed = self._device_refs(dev, batch, sorted(metrics, key=lambda m: (m.name, m.labels)))
        by_device: dict[str, list[Metric]] = {}
        for m, ref in placed:
            by_device.setdefault(ref.ident, []).append(m)
        # Device metadata; an entity's device block changed -> send its discovery again.
        changed: set[str] = set()
        for ref_id, samples in by_device.items():
            found = ha.device_metadata(samples)
            old = dev.metadata.get(ref_id, {})
            if {**old, **found} != old:
                dev.metadata[ref_id] = {**old, **found}
                changed.add(ref_id)
        # Keys per state topic, collisions resolved by a stable hash suffix.
        state: dict[str, dict[str, Any]] = {}
        new: list[Entity] = []
        for m, ref in placed:
            if m.definition.kind is Kind.INFO:  # it fills the device block, it is no value
                continue
            topic = dev.topics.state(ref.subid)
            values = state.setdefault(topic, {})
            key = sample_key(plugin, m, batch.subdevice_labels)
            if key in values:
                key = f"{key}_{hashlib.sha1(repr((m.name, m.labels)).encode()).hexdigest()[:6]}"
            values[key] = json_value(m)
            # The physical device's id, whatever component and configured name: renaming a proxy
            # keeps the history of the devices behind it.
            owner = (ha.device_identifier(plugin, device) if ref.subid is None
                     else f"gridtap_{sanitize(plugin)}_{ref.subid}")
            uid = f"{owner}_{key}"
            if uid in dev.entities:
                continue
            entity_design = ha.design(plugin, m, key, _key_values(m, batch.subdevice_labels))
            if entity_design is None:
                continue
            entity = Entity(key, m, entity_design, ref, uid, topic)
            dev.entities[uid] = entity
            new.append(entity)
        gateway = any(e.device.subid is not None for e in dev.entities.values())
        if gateway != dev.gateway:  # the configured device turned out to be a proxy: its block changes
            dev.gateway = gateway
            changed.add(ha.device_identifier(plugin, device))
        for entity in dev.entities.values():
            ref = entity.device
            if entity in new or ref.ident in changed or (ref.component is not None and ref.via in changed):
                self._send_discovery(dev, entity)
        availability = availability_of(batch)
        if availability is not None:
            dev.availability = availability
            self._send(dev.topics.availability, availability, qos=1, retain=True)
        for topic, values in state.items():
            known = dev.keys.setdefault(topic, set())
            known.update(values)
            dev.state[topic] = dict(sorted({**dict.fromkeys(known), **values}.items()))
        for topic in dev.state:
            if topic not in state:  # a physical device absent from this batch: its values are gone
                dev.state[topic] = dict.fromkeys(dev.state[topic])
        for topic, values in dev.state.items():
            self._send_state(topic, values)

    # -- discovery payloads ------------------------------------------------------------------

    def device_block(self, dev: _Device, ref: DeviceRef) -> dict[str, Any]:
        """HA ``device``: identifiers, name, what the labels say, ``via_device`` for physical ones."""
        block: dict[str, Any] = {"identifiers": [ref.ident], "name": ref.name}
        meta = dev.metadata.get(ref.ident, {})
        if ref.component is not None:
            # A part (the battery of a hybrid inverter): its samples' model/serial labels name the
            # device it is part of, so only the maker is taken over.
            meta = {"manufacturer": dev.metadata.get(ref.via or "", {}).get("manufacturer", "")}
        block.update({f: meta[f] for f in ha.DEVICE_FIELDS if meta.get(f)})
        if ref.via is not None:
            block["via_device"] = ref.via
        elif dev.gateway:
            # The configured device is a gateway to physical devices (a proxy, a cloud account).
            block.setdefault("manufacturer", "gridtap")
            block.setdefault("model", f"gridtap {dev.plugin}")
            block.setdefault("sw_version", __version__)
        block.setdefault("manufacturer", ha.humanize(dev.plugin))
        return block

    def default_entity_id(self, dev: _Device, entity: Entity) -> str:
        """``<domain>.<device>_<name>``, as HA would make it, unique among this process's entities."""
        if entity.unique_id in dev.entity_ids:
            return dev.entity_ids[entity.unique_id]
        base = f"{entity.design.component}.{ha.slug(entity.device.name)}_{ha.slug(entity.design.name)}"
        taken = {v for d in self._devices.values() for v in d.entity_ids.values()}
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}_{n}"
        dev.entity_ids[entity.unique_id] = candidate
        return candidate

    def discovery_config(self, dev: _Device, entity: Entity) -> tuple[str, dict[str, Any]]:
        """(topic, payload) of the retained HA discovery config of one entity."""
        d = entity.design
        availability: list[dict[str, str]] = []
        if not self.once:
            availability.append({"topic": self.status_topic})
        if d.follows_device:
            availability.append({"topic": dev.topics.availability})
        payload: dict[str, Any] = {
            "name": d.name,
            "unique_id": entity.unique_id,
            "default_entity_id": self.default_entity_id(dev, entity),
            "state_topic": entity.state_topic,
            **d.fields,
        }
        if availability:
            payload["availability"] = [{**a, "payload_available": ONLINE, "payload_not_available": OFFLINE}
                                       for a in availability]
            payload["availability_mode"] = "all"
        if d.diagnostic:
            payload["entity_category"] = "diagnostic"
        if not d.enabled:
            payload["enabled_by_default"] = False
        if self.once_expire_after is not None:
            payload["expire_after"] = max(1, math.ceil(self.once_expire_after))
        payload["device"] = self.device_block(dev, entity.device)
        payload["o"] = origin()
        return f"{self.discovery_prefix}/{entity.discovery_topic_tail}", payload

    def _send_discovery(self, dev: _Device, entity: Entity) -> None:
        topic, payload = self.discovery_config(dev, entity)
        old = self._retained_uid_topics.pop(entity.unique_id, None)
        if old is not None and old != topic:  # the entity changed component (sensor -> binary_sensor)
            self._send(old, "", qos=1, retain=True)
        self._send(topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":")), qos=1, retain=True)

    def _send_state(self, topic: str, values: dict[str, Any]) -> None:
        # A once-run's state is retained and acknowledged: HA may subscribe after the process is gone.
        self._send(topic, json.dumps(values, separators=(",", ":")), qos=1 if self.once else 0,
                   retain=self.retain_state or self.once)

    def _send(self, topic: str, payload: str, *, qos: int, retain: bool) -> None:
        properties = None
        if self.once and retain and payload:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, math.ceil(self.once_expire_after or 0))
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos and self.once:
            self._pending.append(info)
        if info.rc != 0 and not self._warned_offline:
            self._warned_offline = True
            log.warning("mqtt %s:%s: not connected; publishing again once the broker is back", self.host, self.port)

    def _republish_all(self) -> None:
        """Everything retained again: after a (re)connect or HA's birth message."""
        with self._lock:
            for dev in self._devices.values():
                for entity in dev.entities.values():
                    self._send_discovery(dev, entity)
                if dev.availability is not None:
                    self._send(dev.topics.availability, dev.availability, qos=1, retain=True)
                for topic, values in dev.state.items():
                    self._send_state(topic, values)

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
        first = not self._connected.is_set()
        if not self.once:
            client.publish(self.status_topic, ONLINE, qos=1, retain=True)
            client.subscribe(self.ha_status_topic, qos=1)
            if first and self._scan is not None:
                client.subscribe([(f"{self.discovery_prefix}/+/+/config", 1),
                                  (f"{self.topic_prefix}/bridge/+/status", 1), (self._sync_topic, 1)])
                # Delivered after the retained messages of the subscriptions above: the scan is complete.
                client.publish(self._sync_topic, self._scan_token, qos=1)
        self._connected.set()
        if first:
            log.info("mqtt %s:%s: connected (bridge %s)", self.host, self.port, self.bridge_id)
        else:
            log.info("mqtt %s:%s: reconnected; re-publishing discovery", self.host, self.port)
        self._republish_all()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        # After a refused CONNECT the refusal was reported already; the disconnect adds nothing.
        if getattr(reason_code, "value", 0) and self._connect_error is None:
            log.warning("mqtt %s:%s: disconnected (%s); reconnecting", self.host, self.port, reason_code)

    def _on_message(self, client: Any, _userdata: Any, message: Any) -> None:
        topic = message.topic
        if topic == self.ha_status_topic:
            if message.payload.strip().lower() == ONLINE.encode():
                log.info("mqtt: Home Assistant is online; re-publishing discovery")
                self._republish_all()
            return
        if topic == self._sync_topic:
            if message.payload.decode(errors="replace") == self._scan_token and not self._scan_done.is_set():
                client.unsubscribe([f"{self.discovery_prefix}/+/+/config", f"{self.topic_prefix}/bridge/+/status",
                                    self._sync_topic])
                self._scan_done.set()
            return
        scan = self._scan
        if scan is None or not message.retain:
            return
        if topic.endswith("/status"):
            self._bridges[topic] = message.payload.decode(errors="replace")
        elif message.payload and b'"gridtap"' in message.payload:
            scan[topic] = bytes(message.payload)

    def _redact(self, text: str) -> str:
        if self._password is not None:
            secret = self._password.reveal() if isinstance(self._password, Secret) else str(self._password)
            if secret:
                text = text.replace(secret, "***")
        return text
