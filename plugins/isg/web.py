"""The ISG web UI as a client sees it: log in through its form, keep the session, fetch pages
one at a time (spec §1.1-1.3).

What the ISG does that a naive client gets wrong:

* a wrong password is HTTP 200 with the login screen again - that is an authentication error,
  never an empty scrape;
* the PHP session expires: the next page is the login screen; one re-login per cycle, then the
  page again;
* lighttpd drops idle keep-alive connections after a few seconds without saying so: a GET that
  meets a reset connection is retried once on a fresh one;
* it is single-threaded and slow: pages are fetched sequentially, and a session is renewed
  after ``rollover`` page loads like the seed's "browser rollover".
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from gridtap.errors import DeviceError

from .page import is_login_screen

log = logging.getLogger("gridtap.isg.web")


class AuthError(DeviceError):
    """The ISG keeps answering with its login screen."""


@dataclass
class FetchResult:
    pages: dict[str, str] = field(default_factory=dict)  # page id -> HTML
    failed: dict[str, str] = field(default_factory=dict)  # page id -> why
    logins: int = 0


def describe(exc: BaseException, url: str, timeout: float) -> str:
    """A requests/urllib3 failure in a few words (connection refused, timed out, ...)."""
    import requests

    if isinstance(exc, requests.Timeout):
        return f"{url}: no answer within {timeout:g}s"
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return f"cannot reach {url}: connection refused"
        if isinstance(cause, ConnectionResetError):
            return f"{url}: connection reset by the ISG"
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot reach {url}: {cause.strerror}"
        nested = [a for a in getattr(cause, "args", ()) if isinstance(a, BaseException)]
        cause = cause.__cause__ or cause.__context__ or (nested[0] if nested else getattr(cause, "reason", None))
    text = str(exc)
    if "Connection refused" in text:
        return f"cannot reach {url}: connection refused"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return f"{url}: the ISG closed the connection"
    return f"{url}: {type(exc).__name__}"


class IsgWebClient:
    """One ISG's web UI. Thread-safe (one fetch at a time)."""

    def __init__(self, url: str, username: str | None, password: str | None, *, timeout: float = 10.0,
                 rollover: int = 60) -> None:
        self.base = url.rstrip("/") + "/"
        parts = urllib.parse.urlsplit(self.base)
        self.shown = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self.username = username
        self._password = password
        self.timeout = timeout
        self.rollover = rollover
        self._session = None  # requests.Session
        self._loads = 0
        self._lock = threading.Lock()
        self.logins = 0

    def page_url(self, page: str) -> str:
        return f"{self.base}?s={page}"

    # --- HTTP ----------------------------------------------------------------------------
    def _new_session(self):  # noqa: ANN202 - requests is imported lazily
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = "gridtap-isg"
        self._session = session
        self._loads = 0
        return session

    def _request(self, method: str, page: str, data: dict[str, str] | None = None) -> str:
        """One request; a reset connection is retried once (GET only: a POST may have landed)."""
        import requests

        session = self._session or self._new_session()
        url = self.page_url(page)
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            try:
                resp = session.request(method, url, data=data, timeout=self.timeout, allow_redirects=True)
                self._loads += 1
                if resp.status_code >= 400:
                    raise DeviceError(f"{self.shown}/?s={page}: HTTP {resp.status_code} {resp.reason}")
                if "charset=" not in resp.headers.get("Content-Type", "").lower():
                    # PHP 5.3 names no charset and requests would then pick ISO-8859-1; the
                    # ISG's pages are UTF-8 (their meta tag says so, the seed reads them so).
                    resp.encoding = "utf-8"
                return resp.text
            except (requests.ConnectionError, requests.Timeout) as e:
                refused = "refused" in describe(e, self.shown, self.timeout)
                if attempt + 1 < attempts and not refused and not isinstance(e, requests.Timeout):
                    log.debug("%s ?s=%s: %s; retrying on a fresh connection", self.shown, page, e)
                    continue
                raise DeviceError(describe(e, self.shown, self.timeout)) from None
        raise AssertionError("unreachable")

    # --- session -------------------------------------------------------------------------
    def login(self) -> str:
        """A fresh session: open ``?s=1,0`` and submit the login form if the ISG shows one.
        Returns page 1,0 as the ISG served it after logging in (a cycle need not load it again)."""
        self._new_session()
        html = self._request("GET", "1,0")
        if not is_login_screen(html):
            return html  # no credentials configured on the ISG
        if not self.username:
            raise AuthError(f"{self.shown} asks for a login: set username and password")
        form = {"make": "send", "user": self.username, "pass": self._password or ""}
        html = self._request("POST", "1,0", form)
        self.logins += 1
        if is_login_screen(html):
            self._session = None
            raise AuthError(f"{self.shown}: login as {self.username!r} refused (the ISG showed its login screen "
                            "again: wrong user name or password?)")
        log.debug("%s: logged in as %r", self.shown, self.username)
        return html

    def fetch(self, pages: Sequence[str]) -> FetchResult:
        """Every page, in order. A page that fails is in ``failed`` and the others are still
        read; an authentication failure raises :class:`AuthError`."""
        with self._lock:
            result = FetchResult()
            before = self.logins
            fresh: dict[str, str] = {}
            if self._session is None or self._loads > self.rollover:
                fresh["1,0"] = self.login()
            relogged = False
            for page in pages:
                try:
                    html = fresh.pop(page, None) or self._request("GET", page)
                    if is_login_screen(html):
                        if relogged:
                            raise AuthError(f"{self.shown}: the session ended again right after a new login")
                        log.info("%s: session expired; logging in again", self.shown)
                        relogged = True
                        after = self.login()
                        html = after if page == "1,0" else self._request("GET", page)
                        if is_login_screen(html):
                            raise AuthError(f"{self.shown}: still the login screen after logging in again")
                    result.pages[page] = html
                except AuthError:
                    raise
                except DeviceError as e:
                    # The session stays: its cookie is still good unless the ISG restarted, and
                    # then the next page shows the login screen and costs one re-login.
                    result.failed[page] = str(e)
                    if "connection refused" in str(e) or "no answer" in str(e):
                        for rest in pages[pages.index(page) + 1:]:
                            result.failed[rest] = str(e)  # don't knock on a closed door page by page
                        break
            result.logins = self.logins - before
            return result

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
