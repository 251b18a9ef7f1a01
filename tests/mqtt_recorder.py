"""A stand-in for paho's client that keeps what the MQTT output publishes, for tests that read
discovery configs and state payloads without a broker."""

from __future__ import annotations

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
