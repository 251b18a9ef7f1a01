"""TLS to the gateway: the address, SNI, certificate pinning and fetching the certificate.

The gateway aborts a handshake whose SNI it does not know, so every connection (the API,
``fetchcert``, the check of a changed certificate) sends the same server name, ``powerwall``
unless configured otherwise, whatever the address is.

Pinning is by exact match of the leaf certificate's SHA-256 (spec 1.1, deviation 1): the
file's certificate is the only one accepted, and a changed one fails closed. Validity dates
are not checked: the gateway's self-signed certificate is trusted because it is *that*
certificate, and an expiry check would only turn a pinned gateway off on a date.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from gridtap.errors import ConfigError

DEFAULT_PORT = 443
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
#: One label of a host name (RFC 1123; ``_`` too, as home routers hand such names out).
_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


@dataclass(frozen=True)
class Address:
    """``host`` or ``host:port`` (``[v6]:port``) of the gateway."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, key: str = "gateway_address") -> Address:
        raw = text.strip()
        example = "e.g. 192.168.1.50 or 192.168.1.50:443"
        if not raw:
            raise ConfigError(key, f"missing value: give the gateway's host or host:port, {example}")
        if "://" in raw or "/" in raw:
            raise ConfigError(key, f"expected a host or host:port without a scheme or path, {example}; got {raw!r}")
        host, port_text = raw, ""
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise ConfigError(key, f"unclosed [ in {raw!r}")
            host, rest = raw[1:end], raw[end + 1:]
            if rest and not rest.startswith(":"):
                raise ConfigError(key, f"expected [ADDRESS]:PORT, got {raw!r}")
            port_text = rest[1:]
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        if not host:
            raise ConfigError(key, f"no host in {raw!r}, {example}")
        _check_host(host, bracketed=raw.startswith("["), raw=raw, key=key)
        port = DEFAULT_PORT
        if port_text or raw.endswith(":"):
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigError(key, f"port must be 1-65535, got {port_text!r}")
            port = int(port_text)
        return cls(host, port)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORT else f"{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.netloc}"

    def __str__(self) -> str:
        return self.netloc


def _check_host(host: str, *, bracketed: bool, raw: str, key: str) -> None:
    """ConfigError unless ``host`` is an IP address or a host name: anything else would reach the
    URL as it is (``gw@other`` is a request to ``other``, ``gw?x`` one to another path)."""
    if bracketed or ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(key, f"{host!r} is not an IPv6 address (in {raw!r}); write HOST:PORT, "
                                   "[IPv6]:PORT or a bare IPv6 address") from None
        if "%" in host:
            raise ConfigError(key, f"an IPv6 zone ({host!r}) is not supported: use the gateway's IPv4 address "
                                   "or a global IPv6 address")
        return
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ConfigError(key, f"{host!r} is not a host name or IP address (letters, digits, - and . only; an "
                               "international name in its xn-- form)")


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as lower-case hex (urllib3's ``assert_fingerprint`` form)."""
    return hashlib.sha256(der).hexdigest()


def shown_fingerprint(hex_digest: str, whole: bool = False) -> str:
    """A fingerprint as browsers show it, ``AB:CD:...``: ``whole`` where a person checks it
    (fetchcert), else the first 8 bytes (enough to tell two apart in a log line)."""
    pairs = [hex_digest[i:i + 2].upper() for i in range(0, len(hex_digest), 2)]
    return ":".join(pairs) if whole else ":".join(pairs[:8]) + ":..."


def load_pinned(path: str, key: str = "tls_cert_file") -> bytes:
    """The DER of the certificate in ``path``: the file's first PEM block, which must be a
    CERTIFICATE. ConfigError (one line) for a missing, unreadable or malformed file."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}; create it with `gridtap powerwall fetchcert "
                               "--config FILE`") from None
    m = _PEM_BLOCK.search(text)
    if m is None:
        raise ConfigError(key, f"{path} holds no PEM block (-----BEGIN CERTIFICATE-----)")
    if m.group(1) != "CERTIFICATE":
        raise ConfigError(key, f"the first PEM block of {path} is a {m.group(1)}, not a CERTIFICATE")
    try:
        der = base64.b64decode("".join(m.group(2).split()), validate=True)
    except ValueError:
        raise ConfigError(key, f"the certificate in {path} is not valid base64") from None
    try:  # OpenSSL parses it: the bytes are a certificate, not just base64
        ssl.create_default_context(cadata=der)
    except ssl.SSLError:
        raise ConfigError(key, f"{path} does not hold a valid X.509 certificate") from None
    return der


def pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def fetch_certificate(address: Address, server_name: str, timeout: float) -> bytes:
    """The DER of the leaf certificate the gateway presents (no verification, SNI ``server_name``).

    OSError / ssl.SSLError when it cannot be had. No HTTP request is made.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((address.host, address.port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name or None) as tls:
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the gateway presented no certificate")
    return der
