"""Logging set-up: text, logfmt, json or Telegraf's ``X! `` prefixes, on stderr.

Every secret the configuration holds is registered here and masked in every record, so a
password that ends up in an exception message from a library is still never printed.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_SECRETS: set[str] = set()
_TELEGRAF_PREFIX = {"DEBUG": "D! ", "INFO": "I! ", "WARNING": "W! ", "ERROR": "E! ", "CRITICAL": "E! "}


def register_secret(value: str) -> None:
    if value:
        _SECRETS.add(value)


#: Below this length a secret is masked only where it stands alone, not inside other words:
#: a one-letter password must not turn every "e" of every message into "***".
_SHORT = 6


def redact(text: str) -> str:
    for secret in _SECRETS:
        if len(secret) >= _SHORT:
            text = text.replace(secret, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        if record.exc_info and record.levelno <= logging.DEBUG:
            message += "\n" + redact(self.formatException(record.exc_info))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z"
        if self.style_name == "json":
            return json.dumps(
                {"time": stamp, "level": record.levelname.lower(), "logger": record.name, "msg": message}
            )
        if self.style_name == "logfmt":
            quoted = message.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'time={stamp} level={record.levelname.lower()} logger={record.name} msg="{quoted}"'
        if self.style_name == "telegraf":
            # Telegraf's execd logs stderr lines by these prefixes; others count as errors.
            return _TELEGRAF_PREFIX.get(record.levelname, "I! ") + message.replace("\n", " | ")
        return f"{stamp} {record.levelname:<7} {record.name}: {message}"


def setup(style: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Libraries chat at INFO (pymodbus, urllib3); keep them quiet unless debugging.
    for noisy in ("pymodbus", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
