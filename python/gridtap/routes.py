"""HTTP routes a plugin adds to the ``/metrics`` listener (a webhook, say), device-blind.

A plugin instance returns :class:`Route` objects from :meth:`gridtap.plugin.Plugin.routes`;
the listener (:mod:`gridtap.serve`) calls the handler on its own thread with a parsed
:class:`Request` and sends back the :class:`Response`. The framework, not the plugin, enforces:

* the body limit (``max_body``; larger bodies get 413 and the handler is not called),
* authentication of routes that act on a device (``acts=True``): a bearer token or basic
  auth from the ``webhook_token`` / ``webhook_username`` + ``webhook_password`` settings;
  without them such a route is only served on a loopback listener, and gridtap refuses to
  start on any other address,
* that a handler's exception becomes a 500 with one log line, never a dead listener.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    client: str

    def json(self) -> Any:
        """The body as JSON; :class:`ValueError` (with the reason) when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"body is not JSON: {e}") from None


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> Response:
        return cls(status, (json.dumps(obj, separators=(",", ":")) + "\n").encode(), "application/json")


@dataclass(frozen=True)
class Route:
    """``method`` ``path`` on the listener; ``handler`` turns a Request into a Response."""

    method: str
    path: str
    handler: Callable[[Request], Response]
    #: It changes something on a device: authentication required (see the module docstring).
    acts: bool = True
    max_body: int = 64 * 1024
    description: str = ""
