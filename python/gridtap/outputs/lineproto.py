"""Influx line protocol, encoded in Rust (``gridtap._native.encode``).

Used by the Telegraf execd runtime and by anything that writes to InfluxDB. The rules are in
``rust/src/lineproto.rs``; :mod:`gridtap.outputs.lineproto_ref` is the readable reference.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import _native
from ..model import Batch

EncodeError = _native.EncodeError


def encode(batches: Sequence[Batch], uint: bool = False) -> bytes:
    """Line protocol for ``batches``: one line per (device, label set), ns timestamps.

    ``uint`` writes unsigned integers above int64 with the ``u`` suffix (InfluxDB 1.x
    rejects it; by default they are clamped, as Telegraf does).
    """
    return _native.encode(batches, uint)
