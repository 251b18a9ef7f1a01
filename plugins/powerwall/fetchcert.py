"""``gridtap powerwall fetchcert --config FILE``: write the gateway's certificate to ``tls_cert_file``.

What the seed's ``--fetchcert`` does (spec 1.1), with its recommended deviations: the port of
``gateway_address`` is honoured and the same SNI is sent as in normal operation. The
connection is not verified (that is the point: the certificate is not known yet) and no
HTTP request is made, so no password is sent. The file is written 0644 (a certificate is
public), replacing any old one atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import tempfile
from pathlib import Path

from gridtap import devices
from gridtap.errors import ConfigError, DeviceError

log = logging.getLogger("gridtap.powerwall")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", required=True,
                        help="the config file (gridtap's, or the powerwall_exporter's); it must set tls_cert_file")
    parser.add_argument("--name", metavar="DEVICE", help="which powerwall device of the file (if it has several)")


def run(args: argparse.Namespace) -> int:
    from .plugin import PowerwallPlugin
    from .tls import Address, fetch_certificate, fingerprint, pem, shown_fingerprint

    found = devices.load_device(PowerwallPlugin, config_path=args.config, name=args.name)
    settings = found.spec.settings
    where = f"powerwall/{found.spec.name}"
    if not settings.tls_cert_file:
        raise ConfigError(f"{where}.tls_cert_file", "set it to the file the certificate is written to")
    address = Address.parse(settings.gateway_address, f"{where}.gateway_address")
    try:
        der = fetch_certificate(address, settings.tls_server_name, float(settings.timeout))
    except (OSError, ssl.SSLError) as e:
        reason = getattr(e, "strerror", None) or getattr(e, "reason", None) or str(e) or type(e).__name__
        raise DeviceError(f"cannot fetch the TLS certificate of {address}: {reason}") from None
    target = Path(settings.tls_cert_file).expanduser()
    _write_public(target, pem(der).encode(), f"{where}.tls_cert_file")
    log.info("TLS certificate of %s written to %s", address, target)
    # The whole fingerprint: the user compares it with what a browser shows for the gateway.
    print(f"wrote the TLS certificate of {address} to {target}\n"
          f"SHA-256 {shown_fingerprint(fingerprint(der), whole=True)}")
    return 0


def _write_public(path: Path, data: bytes, key: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise ConfigError(key, f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise ConfigError(key, f"cannot write {path}: {e.strerror}") from None
