"""The LAN2RF / intouch gateway client (HTTP JSON), apart from the serial transport so a
process that reads the service port never loads the HTTP stack (requests, http.client, ssl).
"""

from __future__ import annotations

import http
import http.client
import json
import logging
import socket
from typing import Any

import requests

from gridtap.errors import DeviceError

log = logging.getLogger(__name__)


def request_problem(error: requests.RequestException, timeout: float) -> str:
    """What went wrong with one gateway request, in words a user can act on.

    requests' own messages repeat the URL and pool internals, and its class name alone
    ("ConnectionError") says nothing. The cause is found in the exception chain; the text is
    built from fixed phrases and the OS's error string, so neither the URL nor the
    credentials can end up in it.
    """
    if isinstance(error, requests.ConnectTimeout):
        return f"no connection within {timeout:g} s (gateway off or unreachable?)"
    if isinstance(error, requests.Timeout):
        return f"no reply within {timeout:g} s"
    if isinstance(error, requests.exceptions.SSLError):
        return "TLS handshake failed (wrong scheme, or an untrusted certificate)"
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects"
    for cause in _causes(error):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (wrong address or port?)"
        if isinstance(cause, socket.gaierror):
            return "cannot resolve the gateway's host name"
        if isinstance(cause, http.client.RemoteDisconnected):
            return "the gateway closed the connection without a reply"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by the gateway"
        if isinstance(cause, TimeoutError):
            return f"no reply within {timeout:g} s"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
    return f"request failed ({type(error).__name__})"


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and everything it wraps (requests → urllib3 → socket), outermost first."""
    out: list[BaseException] = []
    todo: list[object] = [error]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is seen for seen in out):
            continue
        out.append(e)
        # urllib3 keeps the cause in .reason (MaxRetryError) or in args (ProtocolError).
        todo += [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
    return out


def _status_text(code: int) -> str:
    try:
        return f"HTTP {code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


class Lan2rfClient:
    """The InComfort LAN2RF / intouch gateway's JSON API (read-only).

    With a username the ``/protect/`` prefix and HTTP basic auth are used (gateway firmware
    1.30+); without, the plain paths of older gateways.
    """

    UNBOUND = "000W00000"

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        url = base_url if "://" in base_url else "http://" + base_url
        self.base = url.rstrip("/") + ("/protect" if username else "")
        self.timeout = timeout
        self.session = session or requests.Session()
        if username:
            self.session.auth = (username, password or "")

    def close(self) -> None:
        self.session.close()

    @staticmethod
    def parse(text: str) -> Any:
        """JSON, with the upstream workaround for the gateway's invalid ``\\`` escapes."""
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return json.loads(text.replace("\\", "0"))

    def _get(self, path: str) -> Any:
        url = f"{self.base}/{path}"
        try:
            r = self.session.get(url, timeout=self.timeout)
        except requests.RequestException as e:
            raise DeviceError(f"LAN2RF {path}: {request_problem(e, self.timeout)}") from None
        if r.status_code == 401:
            raise DeviceError(f"LAN2RF {path}: authentication failed (HTTP 401)")
        if r.status_code != 200:
            raise DeviceError(f"LAN2RF {path}: {_status_text(r.status_code)}")
        try:
            return self.parse(r.text)
        except json.JSONDecodeError as e:
            raise DeviceError(f"LAN2RF {path}: invalid JSON ({e.msg})") from None

    def heaters(self) -> list[str | None]:
        """The 8 heater slots; ``None`` where empty or holding the unbound marker ``000W00000``."""
        data = self._get("heaterlist.json")
        slots = data.get("heaterlist") if isinstance(data, dict) else None
        if not isinstance(slots, list):
            raise DeviceError("LAN2RF heaterlist.json: no heaterlist array")
        return [s if isinstance(s, str) and s and s != self.UNBOUND else None for s in slots]

    def data(self, heater: int) -> dict[str, Any]:
        payload = self._get(f"data.json?heater={int(heater)}")
        if not isinstance(payload, dict):
            raise DeviceError("LAN2RF data.json: not an object")
        return payload
