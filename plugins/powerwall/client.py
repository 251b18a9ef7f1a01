"""The gateway's local HTTPS API, with the login handled so that it never locks the owner out.

Rules (spec 2.3, 5, 6; where we do better than the seed exporter it says so):

* ``/api/status`` needs no login; every other endpoint sends the token as ``AuthCookie``.
* No token yet: log in before the first authenticated request. A 401/403 answer: forget the
  token, log in once more and repeat that request once. **At most one login attempt per
  collection** (the seed could make 14 with a wrong password and so reach the 429 lockout).
* An endpoint that refuses a token fresh from a login which other endpoints accept (a 403
  "User does not have adequate access rights") refuses the *account*, not the token: it is
  remembered, its 401/403 is its answer, and it never costs a login again until it accepts
  one. A gateway that refuses its fresh token everywhere starts a back-off.
* A 404 is an answer, never a reason to log in (older clients re-logged in on the vitals 404).
* A rejected password, a 429 or a 404 on the login itself (a Powerwall 3) starts a back-off:
  no request at all until it ends, at least 5 minutes, doubling up to an hour while it
  repeats. It survives a restart when a state file is kept, unless the password changed.
* Network errors (refused, reset, timed out, a failed handshake) are retried every
  ``retry_interval``, as the seed does, but within **one budget of ``retry_timeout`` per
  collection** rather than per request. Any HTTP answer is final. A certificate that does
  not match the pinned one is never retried: it fails closed at once.
* ``timeout`` covers a request's whole answer, body included, as the seed's does (requests'
  own timeout is per socket read: a link that passes a byte now and then would hold the
  collection for ever), and an answer is read up to :data:`MAX_ANSWER` bytes.
* The token may be kept in a 0600 state file, so a restart costs no login (spec 2.3).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import secrets
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from gridtap import logs, state
from gridtap.errors import DeviceError

from . import tls
from .tls import Address

log = logging.getLogger("gridtap.powerwall")

#: First back-off after a rejected login / 429 / unsupported gateway, and its ceiling.
BACKOFF_FIRST = 300.0
BACKOFF_MAX = 3600.0
#: Steps of the doubling beyond which the wait is at BACKOFF_MAX anyway (and 2**step stays small).
_MAX_STEP = 16
BACKOFF_KINDS = ("rejected", "rate_limited", "unsupported", "refused")
_KDF_ROUNDS = 100_000
#: The longest answer read: the largest real one (system_status of two batteries) is ~6 KB.
MAX_ANSWER = 1 << 20
_CHUNK = 64 * 1024


class NetworkError(DeviceError):
    """No HTTP answer (after the retries): the rest of the collection is not attempted."""


class CertificateChanged(DeviceError):
    """The gateway presented another certificate than the pinned one: fail closed."""


class BackingOff(DeviceError):
    """Not talking to the gateway until the back-off ends (rejected login, 429, Powerwall 3)."""


class ApiError(Exception):
    """An HTTP answer that is not a usable document (non-2xx, not JSON): this endpoint only."""

    def __init__(self, endpoint: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.endpoint = endpoint
        self.status = status


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole (the names are requests.Response's)."""

    status_code: int
    reason: str
    headers: Mapping[str, str]
    content: bytes


class _Overdue(TimeoutError):
    """The whole answer did not arrive within the request's timeout."""


@dataclass
class Collection:
    """Per-collection bookkeeping: the one login attempt and the one retry budget."""

    login_attempted: bool = False
    login_error: str = ""
    retry_started: float | None = None
    #: Endpoints that refused the token of this collection's login; whether one accepted it.
    fresh_refused: set[str] = field(default_factory=set)
    fresh_accepted: bool = False


@dataclass
class Backoff:
    until: float  # wall-clock epoch seconds
    message: str
    kind: str  # rejected | rate_limited | unsupported
    step: int = 1


@dataclass
class TokenStore:
    """The state file: the token for one gateway and login, and any back-off in force."""

    path: Path
    salt: str = field(default_factory=lambda: secrets.token_hex(16))

    def load(self) -> dict[str, Any]:
        data = state.read_json(self.path)
        if not isinstance(data, dict):
            return {}
        if isinstance(data.get("salt"), str):
            self.salt = data["salt"]
        return data

    def save(self, data: dict[str, Any]) -> None:
        try:
            state.write_json(self.path, {**data, "salt": self.salt})
        except OSError as e:
            log.warning("powerwall: cannot write the state file %s: %s (the token stays in memory)", self.path,
                        e.strerror)

    def password_check(self, password: str) -> str:
        """A slow salted hash, so the file can tell "same password" without holding it."""
        return hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt.encode(), _KDF_ROUNDS).hex()


def _describe(exc: BaseException) -> str:
    """A network failure in a few words (requests' messages repeat the whole pool and URL)."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, http.client.IncompleteRead):
            return "the answer was cut short"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, TimeoutError | requests.Timeout) or "timed out" in str(e):
            return "timed out"
        if isinstance(e, OSError) and e.errno is not None and e.strerror:
            return e.strerror.lower()
        reason = getattr(e, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None:  # urllib3's ProtocolError("Connection broken: ...", IncompleteRead(...))
            nxt = next((a for a in e.args if isinstance(a, BaseException)), None)
        e = nxt or e.__cause__ or e.__context__
    text = str(exc)
    if "RemoteDisconnected" in text or "Remote end closed" in text:
        return "the gateway closed the connection"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    return text.split(" (Caused by")[0][:160]


def _is_fingerprint_mismatch(exc: BaseException) -> bool:
    return "Fingerprints did not match" in str(exc)


class _GatewayAdapter(HTTPAdapter):
    """Every connection to the gateway: SNI ``server_name``, no CA check, and, when pinned,
    urllib3's SHA-256 fingerprint check before a byte of the request is sent."""

    def __init__(self, server_name: str, pinned_sha256: str | None) -> None:
        self.server_name = server_name
        self.pinned_sha256 = pinned_sha256
        super().__init__(max_retries=0, pool_connections=1, pool_maxsize=2)

    def build_connection_pool_key_attributes(self, request: Any, verify: Any, cert: Any = None) -> Any:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, False, cert)
        pool_kwargs["cert_reqs"] = "CERT_NONE"
        pool_kwargs["server_hostname"] = self.server_name
        if self.pinned_sha256:
            pool_kwargs["assert_fingerprint"] = self.pinned_sha256
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, False, cert)  # no CA bundle: the pin (or nothing) decides


class PowerwallClient:
    """One gateway. Thread-safe enough for one collector thread plus ``status()`` readers."""

    def __init__(
        self, address: Address, email: str, password: str, *, timeout: float = 2.0, retry_interval: float = 1.0,
        retry_timeout: float = 0.0, server_name: str = "powerwall", pinned_der: bytes | None = None,
        pin_path: str | None = None, store: TokenStore | None = None,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.address = address
        self.email = email
        self._password = password
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.retry_timeout = retry_timeout
        self.server_name = server_name
        self.pinned_sha256 = tls.fingerprint(pinned_der) if pinned_der else None
        self.pin_path = pin_path
        self.store = store
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self.token: str | None = None
        self.backoff: Backoff | None = None
        self.requests: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()
        #: Endpoints that refused a token other endpoints accepted: their 401/403 is no reason to log in.
        self.refusing: set[str] = set()
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.verify = False  # see _GatewayAdapter: SNI, and the pin when there is one
        self.session.trust_env = False  # never an HTTPS_PROXY or .netrc between us and the gateway
        self.session.cookies.set_policy(_NoCookies())
        self.session.mount("https://", _GatewayAdapter(server_name, self.pinned_sha256))
        # identity: what arrives is what is counted against MAX_ANSWER (the gateway does not compress)
        self.session.headers.update({"Accept": "application/json", "Accept-Encoding": "identity",
                                     "User-Agent": "gridtap-powerwall"})
        if not self.pinned_sha256:
            warnings.simplefilter("ignore", InsecureRequestWarning)  # said once, in words, by the plugin
        self._restore()

    # ------------------------------------------------------------------ state file
    def _restore(self) -> None:
        if self.store is None:
            return
        data = self.store.load()
        if data.get("address") != str(self.address) or data.get("email") != self.email:
            return
        token = data.get("token")
        if isinstance(token, str) and token:
            self.token = token
            logs.register_secret(token)
            log.debug("powerwall: reusing the token kept in %s", self.store.path)
        backoff = _kept_backoff(data.get("backoff"), self.wall())
        if backoff is not None:
            same_password = data["backoff"].get("password") == self.store.password_check(self._password)
            if backoff.kind != "rejected" or same_password:
                self.backoff = backoff
                log.debug("powerwall: back-off kept in %s: %s", self.store.path, self.backoff.message)

    def _save(self) -> None:
        if self.store is None:
            return
        data: dict[str, Any] = {"address": str(self.address), "email": self.email}
        if self.token:
            data["token"] = self.token
        if self.backoff is not None:
            data["backoff"] = {"until": self.backoff.until, "message": self.backoff.message,
                               "kind": self.backoff.kind, "step": self.backoff.step}
            if self.backoff.kind == "rejected":
                data["backoff"]["password"] = self.store.password_check(self._password)
        self.store.save(data)

    # ------------------------------------------------------------------ back-off
    def check_backoff(self) -> None:
        """BackingOff while a back-off is in force; clears one that has ended."""
        b = self.backoff
        if b is None:
            return
        if self.wall() < b.until:
            raise BackingOff(b.message)
        # Ended: one attempt is allowed; a repeat failure doubles the next wait (see _start_backoff).

    def backoff_remaining(self) -> float:
        b = self.backoff
        return max(0.0, b.until - self.wall()) if b is not None else 0.0

    def _start_backoff(self, kind: str, describe: Callable[[str], str], at_least: float = 0.0) -> BackingOff:
        previous = self.backoff
        step = min(previous.step + 1, _MAX_STEP) if previous is not None and previous.kind == kind else 1
        wait = min(BACKOFF_MAX, max(at_least, BACKOFF_FIRST * 2 ** (step - 1)))
        until = self.wall() + wait
        stamp = time.strftime("%H:%M:%SZ", time.gmtime(until))
        self.backoff = Backoff(until, describe(stamp), kind, step)
        self._save()
        return BackingOff(self.backoff.message)

    def _clear_backoff(self) -> None:
        if self.backoff is not None:
            self.backoff = None
            self._save()

    # ------------------------------------------------------------------ requests
    def new_collection(self) -> Collection:
        return Collection()

    def _send(self, method: str, path: str, ctx: Collection, *, token: str | None = None,
              body: dict[str, Any] | None = None) -> Answer:
        """One request with the seed's network retries (within the collection's budget)."""
        url = f"{self.address.base_url}/api/{path}"
        headers = {"Cookie": f"AuthCookie={token}"} if token else {}
        while True:
            t0 = self.clock()
            try:
                resp = self.session.request(method, url, headers=headers, json=body, timeout=self.timeout,
                                            allow_redirects=False, stream=True)
                answer = Answer(resp.status_code, resp.reason or "", resp.headers,
                                self._read_body(resp, path, t0 + self.timeout))
            except requests.exceptions.SSLError as e:
                if _is_fingerprint_mismatch(e):
                    self.requests["tls"] += 1
                    raise CertificateChanged(self._changed_message()) from None
                error: BaseException = e
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                    OSError) as e:
                error = e  # refused, reset, timed out (also _Overdue), cut short: no answer
            else:
                self.requests[str(answer.status_code)] += 1
                log.debug("powerwall: %s %s -> %d (%s)", method, url, answer.status_code,
                          "(sensitive)" if path.startswith("login/") else f"{len(answer.content)} bytes")
                return answer
            self.requests["network"] += 1
            if ctx.retry_started is None:
                ctx.retry_started = t0
            spent = self.clock() - ctx.retry_started
            reason = _describe(error)
            if self.retry_timeout <= 0 or spent >= self.retry_timeout:
                retried = f" (retried for {spent:.0f}s)" if self.retry_timeout > 0 else ""
                raise NetworkError(f"gateway {self.address} unreachable: {method} /api/{path}: {reason}{retried}") \
                    from None
            log.debug("powerwall: %s %s: %s; retrying", method, url, reason)
            self.sleep(max(0.0, min(self.retry_interval - (self.clock() - t0),
                                    self.retry_timeout - (self.clock() - ctx.retry_started))))

    def _read_body(self, resp: requests.Response, path: str, deadline: float) -> bytes:
        """The whole body by ``deadline`` (else _Overdue), at most MAX_ANSWER bytes (else ApiError).

        Each socket read waits only for what is left of the timeout. The connection goes back to
        the pool only when the body was read to its end; otherwise it is closed.
        """
        raw = resp.raw
        parts: list[bytes] = []
        size = 0
        done = False
        try:
            while True:
                left = deadline - self.clock()
                if left <= 0:
                    raise _Overdue("timed out")
                sock = getattr(raw.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(left)
                chunk = raw.read1(_CHUNK)
                if not chunk:
                    done = True
                    return b"".join(parts)
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise ApiError(path, f"answered more than {MAX_ANSWER >> 20} MiB: not the gateway's API?",
                                   resp.status_code)
                parts.append(chunk)
        finally:
            if done:
                raw.release_conn()
            else:
                resp.close()

    def _changed_message(self) -> str:
        presented = ""
        try:
            der = tls.fetch_certificate(self.address, self.server_name, self.timeout)
            presented = f" presents SHA-256 {tls.shown_fingerprint(tls.fingerprint(der))}, which"
        except OSError:
            pass
        pinned = tls.shown_fingerprint(self.pinned_sha256 or "")
        return (f"TLS certificate of gateway {self.address} changed: it{presented} is not the certificate pinned in "
                f"{self.pin_path} (SHA-256 {pinned}); nothing is read from it. If the gateway was replaced or "
                f"reset, pin its new certificate with `gridtap powerwall fetchcert --config FILE`")

    def get(self, endpoint: str, ctx: Collection, *, auth: bool = True) -> Any:
        """The JSON document of ``GET /api/<endpoint>``; ApiError for an answer that is not one."""
        with self._lock:
            self.check_backoff()
            if not auth:
                return self._document(endpoint, self._send("GET", endpoint, ctx))
            if self.token is None:
                self._login(ctx)
            resp = self._send("GET", endpoint, ctx, token=self.token)
            # With a token from this collection's login there is no second login; for an endpoint
            # known to refuse tokens that work elsewhere, a login would not help.
            if resp.status_code in (401, 403) and not ctx.login_attempted and endpoint not in self.refusing:
                log.debug("powerwall: %s answered %d: logging in again", endpoint, resp.status_code)
                self._forget_token()
                self._login(ctx)
                resp = self._send("GET", endpoint, ctx, token=self.token)
            if resp.status_code in (401, 403):
                if ctx.login_attempted:
                    ctx.fresh_refused.add(endpoint)
                    self._note_refusals(ctx)
                raise ApiError(endpoint, self._auth_failure(resp), resp.status_code)
            doc = self._document(endpoint, resp)
            self.refusing.discard(endpoint)
            if ctx.login_attempted:
                ctx.fresh_accepted = True
                self._note_refusals(ctx)
            # A good answer with the token: a back-off that has ended (a 429, say) is over, and the
            # next one starts at 5 minutes again. (/api/status needs no login, so it proves nothing.)
            self._clear_backoff()
            return doc

    def _note_refusals(self, ctx: Collection) -> None:
        """Endpoints that refused a fresh token another endpoint took refuse the account, not the token.

        Only then: were they marked on their own, a token revoked right after its login could
        leave every endpoint marked, and a dead token would never be replaced.
        """
        if ctx.fresh_accepted and ctx.fresh_refused:
            self.refusing |= ctx.fresh_refused
            ctx.fresh_refused.clear()

    def finish_collection(self, ctx: Collection) -> None:
        """BackingOff when this collection's login gave a token that every endpoint refused: the
        next collection would log in again, and the next, on the way to the gateway's lockout."""
        if not ctx.login_attempted or ctx.fresh_accepted or not ctx.fresh_refused:
            return
        with self._lock:
            refused = ", ".join(sorted(ctx.fresh_refused))
            raise self._start_backoff("refused", lambda until: (
                f"gateway {self.address} accepted the login but refuses its token ({refused}): is the "
                f"account locked out of the local API (its web page may want an update or a click)? "
                f"No new login before {until}"))

    @staticmethod
    def _auth_failure(resp: Answer) -> str:
        error, message = _error_fields(resp)
        return f"authentication failed ({resp.status_code} {error or 'no reason given'}: {message})".replace(": )", ")")

    def _forget_token(self) -> None:
        if self.token is not None:
            self.token = None
            self._save()

    def _document(self, endpoint: str, resp: Answer) -> Any:
        if resp.status_code == 429:
            raise self._rate_limited(resp)
        if not 200 <= resp.status_code < 300:
            error, message = _error_fields(resp)
            detail = f" ({error}: {message})" if error or message else " (empty body)" if not resp.content else ""
            hint = " - is the sitemaster stopped?" if resp.status_code == 502 else ""
            raise ApiError(endpoint, f"HTTP {resp.status_code} {resp.reason or ''}".strip() + detail + hint,
                           resp.status_code)
        try:
            return json.loads(resp.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            what = "an empty body" if not resp.content else f"{len(resp.content)} bytes that are not JSON ({e})"
            raise ApiError(endpoint, f"answered {what}", resp.status_code) from None

    # ------------------------------------------------------------------ login
    def _login(self, ctx: Collection) -> None:
        """Log in (at most once per collection). Sets the token or raises."""
        if ctx.login_attempted:
            raise ApiError("login", ctx.login_error or "not logged in (the login of this collection failed)",
                           None)
        ctx.login_attempted = True
        body = {"username": "customer", "email": self.email, "password": self._password, "force_sm_off": False}
        try:
            resp = self._send("POST", "login/Basic", ctx, body=body)
        except NetworkError:
            self.logins["failed"] += 1
            raise
        status = resp.status_code
        where = f"gateway {self.address}"
        if status == 404:
            self.logins["unsupported"] += 1
            raise self._start_backoff("unsupported", lambda until: (
                f"{where} answered 404 to the customer login (POST /api/login/Basic): it has no local customer "
                f"login, as a Powerwall 3 has none (its local JSON API is not reachable this way), so gridtap "
                f"cannot read it. Use a Powerwall 2 / Powerwall+ gateway address, or the Tesla app; local TEDAPI "
                f"access (the gateway's Wi-Fi, 192.168.91.1) is not supported yet. Next check at {until}"))
        if status == 429:
            self.logins["rate_limited"] += 1
            raise self._rate_limited(resp)
        if status in (401, 403):
            self.logins["rejected"] += 1
            error, message = _error_fields(resp)
            said = f"{status} {error}" + (f": {message}" if message else "") if error else f"HTTP {status}"
            if "default password" in error.lower():
                advice = ("the gateway no longer accepts its default password: set your own customer password "
                          "on the gateway's web page and put it in login_password")
            elif "physical access" in error.lower():
                advice = "the gateway wants a physical switch toggle for this account"
            else:
                advice = ("check login_password: the gateway's customer password (its web page), not the "
                          "Tesla account's")
            raise self._start_backoff("rejected", lambda until: (
                f"login to {where} rejected ({said}): {advice}; no new login attempt before {until} "
                "(a back-off, so that a wrong password never locks the gateway)"))
        token = None
        try:
            doc = json.loads(resp.content.decode("utf-8"))
            token = doc.get("token") if isinstance(doc, dict) else None
        except (UnicodeDecodeError, ValueError):
            pass
        if not 200 <= status < 300 or not isinstance(token, str) or not token:
            self.logins["failed"] += 1
            error, message = _error_fields(resp)
            said = ": ".join(t for t in (error, message) if t)
            ctx.login_error = (f"login to {where} failed: HTTP {status}" + (f" ({said})" if said else "")
                               if not 200 <= status < 300 else f"login to {where} gave no token")
            raise ApiError("login", ctx.login_error, status)
        logs.register_secret(token)
        self.token = token
        self.logins["ok"] += 1
        self._clear_backoff()
        self._save()
        log.debug("powerwall: logged in to %s", where)

    def _rate_limited(self, resp: Answer) -> BackingOff:
        retry_after = resp.headers.get("Retry-After", "")
        at_least = float(retry_after) if retry_after.isdigit() else 0.0
        error, _message = _error_fields(resp)
        return self._start_backoff("rate_limited", lambda until: (
            f"gateway {self.address} answered 429 ({error or 'too many requests'}): gridtap sends it nothing until "
            f"{until}; if this repeats, stop other tools that log in to it"), at_least)

    def close(self) -> None:
        self.session.close()


def _kept_backoff(kept: Any, now: float) -> Backoff | None:
    """The back-off a state file holds, if it is well-formed and still in force (else None: the
    file is a cache, and what does not make sense in it is ignored)."""
    if not isinstance(kept, dict):
        return None
    until, kind, step, message = kept.get("until"), kept.get("kind"), kept.get("step", 1), kept.get("message", "")
    if isinstance(until, bool) or not isinstance(until, int | float) or not now < until <= now + BACKOFF_MAX:
        return None
    if kind not in BACKOFF_KINDS or not isinstance(message, str):
        return None
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= _MAX_STEP:
        return None
    return Backoff(float(until), message, kind, step)


def _error_fields(resp: Answer) -> tuple[str, str]:
    """The ``error`` and ``message`` of a gateway error body ("", "" when there are none)."""
    try:
        doc = json.loads(resp.content.decode("utf-8")) if resp.content else None
    except (UnicodeDecodeError, ValueError):
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    return str(doc.get("error") or ""), str(doc.get("message") or "")


class _NoCookies:
    """A cookie policy that keeps nothing: the token is sent explicitly, and only it (spec 2.2)."""

    netscape = True
    rfc2965 = False
    hide_cookie2 = False

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def domain_return_ok(self, domain: str, request: Any) -> bool:
        return False

    def path_return_ok(self, path: str, request: Any) -> bool:
        return False


def default_store(device: str) -> TokenStore | None:
    """The state file under gridtap's state folder, or None (with a warning) where it cannot be made."""
    folder = state.default_dir("powerwall")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        log.warning("powerwall: cannot use %s for the login token (%s); it is kept in memory only (set token_file)",
                    folder, e.strerror)
        return None
    return TokenStore(folder / f"{device}.json")
