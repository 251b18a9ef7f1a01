"""A stand-in for paho's client that keeps what the MQTT output publishes, for tests that read
discovery configs and state payloads without a broker."""

from __future__ import annotations

import json
from typing import Any


class _Published:
    rc = 0

    def wait_for_publish(self, timeout: float = 0) -> None:
        pass


class RecordingClient:
    """``sent`` holds (topic, payload as text, retain, MQTT v5 properties) in publishing order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool, Any]] = []

    def publish(self, topic: str, payload: Any, qos: int = 0, retain: bool = False, properties: Any = None) -> Any:
        self.sent.append((topic, payload.decode() if isinstance(payload, bytes) else payload, retain, properties))
        return _Published()

    def discovery(self) -> list[dict[str, Any]]:
        """The last Home Assistant discovery config of each entity, with its ``component``
        (sensor, binary_sensor) from the topic; cleared (empty) configs are left out."""
        configs: dict[str, dict[str, Any]] = {}
        for topic, payload, _retain, _props in self.sent:
            if topic.startswith("homeassistant/") and topic.endswith("/config") and payload:
                cfg = json.loads(payload)
                configs[cfg["unique_id"]] = {**cfg, "component": topic.split("/")[1]}
        return list(configs.values())
