"""The Tesla Powerwall plugin: the Powerwall 2 / Powerwall+ gateway's local HTTPS JSON API.

Each collection reads the endpoints the seed exporter (foogod/powerwall_exporter) reads, in
its order (spec 3), through :class:`.client.PowerwallClient`, which owns the login, the
back-off and the retries. An endpoint that answers with an error (502 while the sitemaster
is stopped) is left out and ``powerwall_endpoint_ok{endpoint}`` says 0; the rest is served.
No answer at all (after the retries), a changed pinned certificate, or a login the gateway
refuses make the whole collection fail, so ``powerwall_up`` is 0 and nothing stale is served.

Users of the seed keep their config file and flags: :meth:`PowerwallPlugin.adapt_config` reads
its ``web:``/``device:`` file, :meth:`PowerwallPlugin.rewrite_argv` its ``--config.file``,
``--log.style``, ``--debug`` and ``--fetchcert``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gridtap.config import Duration, Secret, setting
from gridtap.errors import ConfigError, DeviceError, InputError
from gridtap.model import Metric
from gridtap.plugin import Command, Plugin

from . import metrics as m
from .tls import Address

log = logging.getLogger("gridtap.powerwall")

SEED_EMAIL = "powerwall_exporter@example.org"
#: /api/meters/<category> that answered 404 are asked again after this long (most sites have
#: only site and solar meters; the others 404 on every collection).
ABSENT_METER_RECHECK = 3600.0


@dataclass
class PowerwallConfig:
    gateway_address: str = setting(help="the gateway: HOST or HOST:PORT (IP address or name; port 443 by default)")
    login_password: Secret = setting(help="the gateway's customer password (better: GRIDTAP_POWERWALL_LOGIN_PASSWORD)")
    login_email: str = setting(SEED_EMAIL, help="e-mail address sent with the login (the gateway does not check it)")
    tls_cert_file: str | None = setting(
        None, help="PEM certificate to pin (written by `gridtap powerwall fetchcert`); unset: not verified")
    tls_server_name: str = setting("powerwall", help="TLS server name (SNI) sent to the gateway: powerwall, teg "
                                                     "or powerpack (it refuses names it does not know)")
    timeout: Duration = setting(Duration(2.0), help="time to wait for one HTTP request")
    retry_interval: Duration = setting(Duration(1.0), help="time between retries after a network error")
    retry_timeout: Duration | None = setting(
        None, help="keep retrying network errors this long per collection (e.g. 10s for a flaky Wi-Fi; below the "
                   "interval, as the last reading stays published meanwhile); unset: no retries")
    token_file: str | None = setting(
        None, help="state file that keeps the login token across restarts (default: gridtap's state folder, "
                   "$GRIDTAP_STATE_DIR/powerwall/<device>.json); none: memory only")
    meter_details: bool = setting(True, help="also read /api/meters/<category> for per-meter series (dev_*)")


class PowerwallPlugin(Plugin):
    """Tesla Powerwall 2 / Powerwall+ through the Backup Gateway's local API."""

    name: ClassVar[str] = "powerwall"
    description: ClassVar[str] = "Tesla Powerwall 2 / Powerwall+ via the gateway's local HTTPS API"
    config_schema: ClassVar[type] = PowerwallConfig
    simulator_module = ".simulator"
    metrics = m.ALL
    default_interval: ClassVar[float] = 15.0
    default_listen: ClassVar[str | None] = ":9871"  # foogod/powerwall_exporter's port
    #: Each battery block and each meter with a serial is a physical device of its own (Home Assistant).
    subdevice_labels: ClassVar[tuple[str, ...]] = ("serial",)
    commands = {"fetchcert": Command("write the gateway's TLS certificate to tls_cert_file, to pin it",
                                     "gridtap_plugins.powerwall.fetchcert")}

    def __init__(self, config: PowerwallConfig, device: str) -> None:
        super().__init__(config, device)
        from . import client, tls

        self.where = f"{self.name}/{device}"
        self.address = Address.parse(config.gateway_address, f"{self.where}.gateway_address")
        if not config.tls_server_name.strip() or any(c in config.tls_server_name for c in " /:"):
            raise ConfigError(f"{self.where}.tls_server_name", f"expected a host name such as powerwall, got "
                                                               f"{config.tls_server_name!r}")
        pinned = tls.load_pinned(config.tls_cert_file, f"{self.where}.tls_cert_file") if config.tls_cert_file \
            else None
        self.client = client.PowerwallClient(
            self.address, config.login_email, config.login_password.reveal(), timeout=float(config.timeout),
            retry_interval=float(config.retry_interval),
            retry_timeout=float(config.retry_timeout) if config.retry_timeout is not None else 0.0,
            server_name=config.tls_server_name, pinned_der=pinned, pin_path=config.tls_cert_file,
            store=self._store(config, device))
        self._lock = threading.Lock()
        self._absent_meters: dict[str, float] = {}
        self._failing: dict[str, str] = {}
        self._duplicates: frozenset[str] = frozenset()
        self._failed_before = False
        self._facts: dict[str, Any] = {}
        self._tls_said = False

    def _store(self, config: PowerwallConfig, device: str) -> Any:
        from gridtap import state

        from .client import TokenStore, default_store

        where = config.token_file
        if where is not None and where.strip().lower() in ("none", "off", ""):
            return None
        if where is None:
            return default_store(device)
        path = Path(where).expanduser()
        state.ensure_dir(path.parent, f"{self.where}.token_file")
        return TokenStore(path)

    def _say_tls_mode(self) -> None:
        """Once, at the first collection (not at start: a listener that cannot bind is then the only line)."""
        if self._tls_said:
            return
        self._tls_said = True
        if self.client.pinned_sha256:
            from .tls import shown_fingerprint

            log.info("%s: TLS certificate of %s pinned from %s (SHA-256 %s)", self.where, self.address,
                     self.config.tls_cert_file, shown_fingerprint(self.client.pinned_sha256))
        else:
            log.info("%s: the TLS certificate of %s is not verified (no tls_cert_file); pin it with "
                     "`gridtap powerwall fetchcert --config FILE`", self.where, self.address)

    # ------------------------------------------------------------------ collection
    def collect(self) -> list[Metric]:
        with self._lock:
            self._say_tls_mode()
            try:
                out = self._collect()
            except DeviceError as e:
                from .client import BackingOff

                # The scheduler logs a new error only at debug level while the device is already
                # down; a new back-off (each costs a login attempt) is worth one line at any time.
                if isinstance(e, BackingOff) and self._failed_before and str(e) != self._facts.get("error"):
                    log.warning("%s: %s", self.where, e)
                self._failed_before = True
                self._facts["error"] = str(e)
                raise
            self._failed_before = False
            self._facts.pop("error", None)
            return out

    def _collect(self) -> list[Metric]:
        from .client import ApiError

        c = self.client
        c.check_backoff()
        ctx = c.new_collection()
        out: list[Metric] = []
        ok: dict[str, int] = {}
        failures: dict[str, str] = {}
        duplicates: set[str] = set()
        for endpoint, decode in m.ENDPOINTS:
            try:
                doc = c.get(endpoint, ctx, auth=endpoint != "status")
                if endpoint == "system_status":
                    out += m.system_status_metrics(doc, set(), duplicates.add)
                elif endpoint == "meters/aggregates":
                    samples, categories = m.aggregates_metrics(doc)
                    out += samples
                    if self.config.meter_details:
                        out += self._meters(categories, ctx, ok, failures)
                else:
                    out += decode(doc)
                    if endpoint == "status" and isinstance(doc, dict):
                        self._facts.update({k: doc[k] for k in ("version", "din", "device_type", "teg_type")
                                            if isinstance(doc.get(k), str)})
                ok[endpoint] = 1
            except ApiError as e:
                ok[endpoint], failures[endpoint] = 0, str(e)
            except m.DocumentError as e:
                ok[endpoint], failures[endpoint] = 0, f"{endpoint}: unexpected answer: {e}"
        c.finish_collection(ctx)
        self._report(failures, duplicates)
        if not any(ok.values()):
            raise DeviceError("; ".join(dict.fromkeys(failures.values())))
        out += [m.ENDPOINT_OK(v, endpoint=k) for k, v in ok.items()]
        kept, dropped = m.unique(out)
        if dropped:
            log.debug("%s: %d duplicate samples dropped", self.where, len(dropped))
        return kept

    def _meters(self, categories: list[str], ctx: Any, ok: dict[str, int], failures: dict[str, str]) -> list[Metric]:
        from urllib.parse import quote

        from .client import ApiError

        out: list[Metric] = []
        now = self.client.clock()
        for category in categories:
            if self._absent_meters.get(category, 0.0) > now:
                continue
            endpoint = f"meters/{category}"
            try:
                out += m.meters_metrics(category, self.client.get(f"meters/{quote(category, safe='')}", ctx))
                ok[endpoint] = 1
            except ApiError as e:
                if e.status == 404:  # no meter of this kind: an answer, not a failure (and never a login)
                    self._absent_meters[category] = now + ABSENT_METER_RECHECK
                    continue
                ok[endpoint], failures[endpoint] = 0, str(e)
            except m.DocumentError as e:
                ok[endpoint], failures[endpoint] = 0, f"{endpoint}: unexpected answer: {e}"
        return out

    def _report(self, failures: dict[str, str], duplicates: set[str]) -> None:
        """One line when the set of failing endpoints changes, one when they recover."""
        if failures != self._failing:
            if failures:
                log.warning("%s: partial collection: %s", self.where, "; ".join(dict.fromkeys(failures.values())))
            elif self._failing:
                log.info("%s: every endpoint answers again", self.where)
            self._failing = dict(failures)
        if duplicates and frozenset(duplicates) != self._duplicates:
            log.warning("%s: battery blocks with a serial seen before were left out: %s", self.where,
                        ", ".join(sorted(duplicates)))
        self._duplicates = frozenset(duplicates)

    def diagnostics(self) -> list[Metric]:
        c = self.client
        out = [m.LOGINS(n, result=k) for k, n in sorted(c.logins.items())]
        out += [m.REQUESTS(n, code=k) for k, n in sorted(c.requests.items())]
        out.append(m.BACKOFF(round(c.backoff_remaining(), 3)))
        return out

    def status(self) -> dict[str, Any]:
        c = self.client
        facts: dict[str, Any] = {"gateway": str(self.address), "tls": "pinned" if c.pinned_sha256 else "not verified",
                                 "logged_in": c.token is not None}
        facts.update({k: v for k, v in self._facts.items() if k != "error"})
        if c.backoff is not None and c.backoff_remaining() > 0:
            facts["backoff_until"] = c.backoff.until
        if self._failing:
            facts["failing_endpoints"] = sorted(self._failing)
        return facts

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ the seed's config and flags
    @classmethod
    def rewrite_argv(cls, argv: list[str]) -> list[str]:
        """``run powerwall --config.file=F --log.style=json --debug [--fetchcert]`` as gridtap spells it.

        The seed's spellings mean "be the exporter": without an ``--output``, /metrics is served.
        ``--fetchcert`` becomes ``gridtap powerwall fetchcert``.
        """
        head, rest = argv[:2], argv[2:]
        out: list[str] = []
        seed_style = fetch = False
        i = 0
        while i < len(rest):
            arg = rest[i]
            flag, eq, value = arg.partition("=")
            if flag in ("--config.file", "--log.style"):
                seed_style = True
                ours = "--config" if flag == "--config.file" else "--log-format"
                if eq:
                    out += [ours, value]
                else:  # the value is the next argument; without one, argparse says so
                    out.append(ours)
            elif arg == "--debug":
                seed_style = True
                out += ["--log-level", "debug"]
            elif arg == "--fetchcert":
                fetch = True
            else:
                out.append(arg)
            i += 1
        if fetch:
            return ["powerwall", "fetchcert", *out]
        if seed_style and not any(a == "--output" or a.startswith("--output=") for a in out):
            out += ["--output", "prometheus"]
        return [*head, *out]

    @classmethod
    def adapt_config(cls, loaded: dict[str, Any], path: str) -> dict[str, Any]:
        """A powerwall_exporter file (``web:`` and ``device:``) as gridtap's ``devices:`` form."""
        if not isinstance(loaded, dict) or not ({"web", "device"} & set(loaded)):
            return loaded
        from .seedconfig import adapt

        return adapt(path)

    # ------------------------------------------------------------------ gridtap decode
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--endpoint", metavar="ENDPOINT",
                            help="which API answer the file is: status, system_status/soe, operation, sitemaster, "
                                 "troubleshooting/problems, system_status, meters/aggregates, meters/<category>, "
                                 "networks (default: from the file name, e.g. system_status.soe.json)")

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        endpoint = getattr(args, "endpoint", None) or endpoint_from_filename(getattr(args, "file", "") or "")
        if endpoint is None:
            raise InputError("powerwall: say which API answer this is with --endpoint (the file name does not say)")
        try:
            decoder = m.decoder_for(endpoint)
        except KeyError:
            raise InputError(f"powerwall: no decoder for endpoint {endpoint!r}") from None
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise InputError(f"powerwall: {endpoint}: not JSON ({e})") from None
        try:
            return m.unique(decoder(doc))[0]
        except m.DocumentError as e:
            raise InputError(f"powerwall: {e}") from None



def endpoint_from_filename(name: str) -> str | None:
    """``system_status.soe.json`` / ``api.meters.site.json`` -> the endpoint; None if it does not say."""
    stem = Path(name).name
    for suffix in (".json", ".err"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    else:
        return None
    stem = stem.removeprefix("api.")
    candidate = stem.replace(".", "/")
    try:
        m.decoder_for(candidate)
    except KeyError:
        return None
    return candidate
