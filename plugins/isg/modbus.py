"""Modbus TCP to the ISG (pymodbus), with the ISG's failure modes made explicit.

* exception 02 (illegal data address) means the request touched registers this firmware lacks:
  :class:`BlockError` with ``code == 2``; the caller marks an optional block unsupported;
* 04 (device failure) and 06 (busy) are transient: ``BlockError`` with that code;
* no connection (refused, timeout, the ISG's Modbus service hung) is a :class:`LinkError`; the
  next attempt waits a backoff that doubles up to a minute, so a dead ISG is not hammered.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from gridtap.errors import DeviceError

log = logging.getLogger("gridtap.isg.modbus")

_EXCEPTIONS = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
               6: "device busy", 10: "gateway path unavailable", 11: "gateway target failed to respond"}


class LinkError(DeviceError):
    """The ISG's Modbus service cannot be reached or stopped answering."""


class BlockError(DeviceError):
    """The ISG answered a request with a Modbus exception."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class ModbusLink:
    """One ISG's Modbus TCP service. Every call holds a lock: collection, SGReady writes and the
    re-assertion thread share the connection."""

    backoff = (1.0, 60.0)

    def __init__(self, host: str, port: int = 502, unit_id: int = 1, timeout: float = 5.0) -> None:
        self.host, self.port, self.unit_id, self.timeout = host, port, unit_id, timeout
        self.where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.lock = threading.RLock()
        self._client: Any = None
        self._delay = 0.0
        self._next_try = 0.0
        self._last_error = ""

    def _connect(self) -> Any:
        from pymodbus.client import ModbusTcpClient

        now = time.monotonic()
        if now < self._next_try:
            raise LinkError(f"{self._last_error} (next try in {self._next_try - now:.0f}s)")
        client = ModbusTcpClient(self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0)
        if not client.connect():
            client.close()
            self._fail(f"Modbus {self.where}: cannot connect ({_reason(client)})")
        self._client = client
        return client

    def _fail(self, message: str) -> None:
        self._delay = min(self.backoff[1], self._delay * 2 if self._delay else self.backoff[0])
        self._next_try = time.monotonic() + self._delay
        self._last_error = message
        self.close()
        raise LinkError(message)

    def _call(self, what: str, fn: str, *args: Any, **kw: Any) -> Any:
        from pymodbus.exceptions import ModbusException

        with self.lock:
            client = self._client or self._connect()
            try:
                response = getattr(client, fn)(*args, device_id=self.unit_id, **kw)
            except ModbusException as e:
                self._fail(f"Modbus {self.where}: {what}: {_short(e)}")
            except OSError as e:
                self._fail(f"Modbus {self.where}: {what}: {e.strerror or e}")
            if response.isError():
                code = getattr(response, "exception_code", 0)
                raise BlockError(f"Modbus {self.where}: {what}: exception {code:02d} "
                                 f"({_EXCEPTIONS.get(code, 'unknown')})", code)
            self._delay = 0.0
            return response

    def read(self, table: str, wire: int, count: int) -> list[int]:
        fn = "read_input_registers" if table == "input" else "read_holding_registers"
        what = f"read {table} {wire}-{wire + count - 1}"
        response = self._call(what, fn, wire, count=count)
        registers = list(response.registers)
        if len(registers) != count:
            self._fail(f"Modbus {self.where}: {what}: {len(registers)} registers in the answer")
        return registers

    def write_registers(self, wire: int, values: list[int]) -> None:
        """FC16 with quantity = len(values) (never the seed's 4-for-2)."""
        self._call(f"write holding {wire}-{wire + len(values) - 1}", "write_registers", wire, values)

    def write_register(self, wire: int, value: int) -> None:
        self._call(f"write holding {wire}", "write_register", wire, value)

    def close(self) -> None:
        with self.lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None


def _short(e: BaseException) -> str:
    text = str(e)
    for marker in ("No response received", "Connection", "timeout", "Failed to connect"):
        if marker.lower() in text.lower():
            return "no answer (connection lost or timed out)"
    return text.split("\n")[0][:120]


def _reason(client: Any) -> str:
    """Why connect() failed: pymodbus only logs it, so ask the socket layer ourselves."""
    import socket

    try:
        with socket.create_connection((client.comm_params.host, client.comm_params.port),
                                      timeout=client.comm_params.timeout_connect or 2):
            return "the service did not take the connection"
    except OSError as e:
        if isinstance(e, TimeoutError | socket.timeout):
            return "timed out"
        return (e.strerror or str(e)).lower()
