"""The Intergas gas-boiler plugin: service port (tty or TCP bridge) or LAN2RF gateway.

Each collection polls the configured blocks one by one. A block that fails is left out of
the result (nothing stale is served) and ``intergas_block_ok{block=...}`` says 0; only when
every block fails does :meth:`IntergasPlugin.collect` raise ``DeviceError``, which the
framework reports as ``intergas_up 0``.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from gridtap.config import Duration, Secret, check_http_url, setting
from gridtap.errors import ConfigError, DeviceError, InputError
from gridtap.model import Metric
from gridtap.plugin import Plugin

from . import metrics as m
from .decode import BLOCKS, DecodeError, decode_block, decode_lan2rf
from .transport import BlockError, LinkError, SerialTransport, port_url

if TYPE_CHECKING:
    from .lan2rf import Lan2rfClient

log = logging.getLogger(__name__)

DEFAULT_COMMANDS = ["S?", "S2", "CRC", "HN", "V?"]

#: pyserial URL schemes that name a network peer: without a host and a port they fail only
#: at the first collection, with pyserial's garbled parse messages.
_NETWORK_SCHEMES = ("socket", "rfc2217")


def check_port_setting(port: str) -> None:
    """ConfigError naming ``intergas.port`` unless ``port`` is a usable address.

    Checked at start-up so a typo is one config error (exit 2), not a device that is
    reported down forever. A tty path is left to the open: the adapter may appear later.
    """
    if not port.strip():
        raise ConfigError("intergas.port", "missing value: give a tty path (/dev/ttyUSB0) or socket://host:port")
    url = port_url(port)
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in _NETWORK_SCHEMES:
        return
    expected = f"expected {scheme}://HOST:PORT with a port 1-65535, got {port!r}"
    try:
        parts = urllib.parse.urlsplit(url)
        number = parts.port
    except ValueError:  # a port that is not a number or above 65535, a broken [IPv6] literal
        raise ConfigError("intergas.port", expected) from None
    if not parts.hostname or number is None or not 1 <= number <= 65535:
        raise ConfigError("intergas.port", expected)


@dataclass
class IntergasConfig:
    port: str | None = setting(
        None, help="service port: a tty path (/dev/ttyUSB0) or a TCP bridge socket://host:port",
    )
    gateway_url: str | None = setting(None, help="LAN2RF / intouch gateway base URL (instead of port)")
    heater: int = setting(0, help="LAN2RF heater slot (0..7)")
    username: str | None = setting(None, help="LAN2RF basic-auth user; set for gateways that need /protect/")
    password: Secret | None = setting(None, help="LAN2RF basic-auth password")
    timeout: Duration = setting(Duration(1.0), help="time to wait for one 32-byte reply (or one HTTP request)")
    gas_meter_divisor: float = setting(10000.0, help="raw gas-meter counts per cubic meter (calibrate if off)")
    flag_bit_order: Literal["normative", "reference"] = setting(
        "normative", help="status flag bit order: normative (bit 0 = LSB) or the seed exporter's reversed order",
    )
    commands: list[str] = setting(
        list(DEFAULT_COMMANDS), help="blocks to poll each time, from S?, S2, CRC, HN, V?, REV",
    )
    drop_sentinels: bool = setting(
        True, help="leave out 327.67 (absent) and <= -50.81 (unconnected) temperatures, and the pressure "
        "while the pressure-sensor flag is clear",
    )


class IntergasPlugin(Plugin):
    """Intergas HRE / Kombi Kompakt / Prestige boilers."""

    name: ClassVar[str] = "intergas"
    description: ClassVar[str] = "Intergas gas boilers via the service port (tty/TCP) or a LAN2RF gateway"
    config_schema: ClassVar[type] = IntergasConfig
    simulator_module = ".simulator"
    metrics = m.ALL
    default_interval: ClassVar[float] = 10.0

    #: Seconds before reopening a vanished port: first delay, doubling up to the maximum.
    reopen_backoff: tuple[float, float] = (1.0, 30.0)

    def __init__(self, config: IntergasConfig, device: str) -> None:
        super().__init__(config, device)
        if (config.port is None) == (config.gateway_url is None):
            raise ConfigError("intergas.port", "set exactly one of port (service port) or gateway_url (LAN2RF)")
        unknown = [c for c in config.commands if c not in BLOCKS]
        if unknown:
            raise ConfigError("intergas.commands", f"unknown block(s) {unknown}; choose from {', '.join(BLOCKS)}")
        if not config.commands and config.port is not None:
            raise ConfigError("intergas.commands", "poll at least one block")
        if config.port is not None:
            check_port_setting(config.port)
        if config.gateway_url is not None:
            check_http_url("intergas.gateway_url", config.gateway_url)
        # The YAML/flag layer already refuses NaN and infinity; a config built in code does not
        # pass through it, and a NaN divisor would turn every gas counter into NaN.
        divisor = config.gas_meter_divisor
        if not (math.isfinite(divisor) and divisor > 0):
            raise ConfigError("intergas.gas_meter_divisor", f"must be a finite number > 0, got {divisor}")
        if not 0 <= config.heater <= 7:
            raise ConfigError("intergas.heater", "a LAN2RF gateway has heater slots 0..7")
        self.options = m.Options(gas_meter_divisor=config.gas_meter_divisor, drop_sentinels=config.drop_sentinels)
        self.reference_order = config.flag_bit_order == "reference"
        self._lock = threading.Lock()
        self.transport: SerialTransport | None = None
        self.gateway: Lan2rfClient | None = None
        self._heater_serial: str | None = None
        if config.port is not None:
            self.transport = SerialTransport(config.port, float(config.timeout), backoff=self.reopen_backoff)
        else:
            assert config.gateway_url is not None
            password = config.password.reveal() if config.password is not None else None
            from .lan2rf import Lan2rfClient  # the HTTP stack only for a gateway

            self.gateway = Lan2rfClient(config.gateway_url, username=config.username, password=password,
                                        timeout=float(config.timeout))

    # ------------------------------------------------------------------ collection
    def collect(self) -> list[Metric]:
        with self._lock:
            if self.gateway is not None:
                return self._collect_gateway(self.gateway)
            assert self.transport is not None
            return self._collect_serial(self.transport)

    def _collect_serial(self, transport: SerialTransport) -> list[Metric]:
        out: list[Metric] = []
        ok: dict[str, int] = {}
        errors: list[str] = []
        link_down = False
        for block in self.config.commands:
            if link_down:
                ok[block] = 0
                continue
            try:
                raw = transport.query(block)
                decoded = decode_block(block, raw, self.reference_order)
                out += m.block_metrics(block, decoded, self.options)
                ok[block] = 1
            except LinkError as e:
                link_down = True
                ok[block] = 0
                errors.append(str(e))
            except (BlockError, DecodeError) as e:
                ok[block] = 0
                errors.append(str(e))
        if not any(ok.values()):
            # Silence on every block: a half-open TCP bridge or a wedged adapter. Start afresh.
            transport.close()
            raise DeviceError("no valid block: " + "; ".join(dict.fromkeys(errors)))
        out += [m.BLOCK_OK(v, block=k) for k, v in ok.items()]
        return out

    def _collect_gateway(self, gateway: Lan2rfClient) -> list[Metric]:
        heater = self.config.heater
        if self._heater_serial is None:
            slots = gateway.heaters()
            if heater >= len(slots) or slots[heater] is None:
                raise DeviceError(f"LAN2RF: no heater bound in slot {heater} (yet)")
            self._heater_serial = slots[heater]
            log.info("LAN2RF heater %d: serial %s", heater, self._heater_serial)
        try:
            decoded = decode_lan2rf(gateway.data(heater))
        except (DeviceError, DecodeError) as e:
            self._heater_serial = None  # look the heater up again next time
            raise DeviceError(str(e)) from None
        return [*m.lan2rf_metrics(decoded, self.options), m.BLOCK_OK(1, block="lan2rf")]

    def close(self) -> None:
        with self._lock:
            if self.transport is not None:
                self.transport.close()
            if self.gateway is not None:
                self.gateway.close()

    # ------------------------------------------------------------------ gridtap decode
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--block", required=True, choices=BLOCKS, help="which command the bytes answer")
        parser.add_argument("--flag-bit-order", choices=("normative", "reference"), default="normative",
                            help="S? flag bit order (default normative: bit 0 = LSB)")

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        block = getattr(args, "block", None)
        if block not in BLOCKS:
            raise InputError(f"intergas: --block must be one of {', '.join(BLOCKS)}")
        if len(data) != 32:
            raise InputError(f"intergas: a {block} block is 32 bytes, got {len(data)}")
        reference = getattr(args, "flag_bit_order", "normative") == "reference"
        return m.block_metrics(block, decode_block(block, data, reference))

    def __repr__(self) -> str:
        where = self.config.port or self.config.gateway_url
        return f"IntergasPlugin(device={self.device!r}, at={where!r})"
