"""Growatt OpenAPI v1: endpoints, device families, the envelope, error classes, the HTTP client.

Facts (../../shared/specs/growatt.md §3-§8): one ``token`` header; GET endpoints take query
parameters, POST endpoints form bodies, and the wrong verb is HTTP 405; every reply is
``{"error_code": 0, "error_msg": ..., "data": ...}`` with HTTP 200 also for API errors, and
only ``error_code`` means anything (``error_msg`` is "", null, "success" or a code word).
A reply that is not JSON (an HTML login or CDN page) or not 2xx is a transport error.
"""

from __future__ import annotations

import enum
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gridtap import __version__
from gridtap.config import Secret

REGIONS = {
    "eu": "https://openapi.growatt.com/v1/",
    "us": "https://openapi-us.growatt.com/v1/",
    "cn": "https://openapi-cn.growatt.com/v1/",
    "au": "https://openapi-au.growatt.com/v1/",
}
#: Hosts Growatt retired for the API (v4 answers -1 "use the new domain"): old -> new.
RETIRED_HOSTS = {
    "server.growatt.com": "openapi.growatt.com",
    "server-api.growatt.com": "openapi.growatt.com",
    "server-us.growatt.com": "openapi-us.growatt.com",
    "server-cn.growatt.com": "openapi-cn.growatt.com",
}


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str  # "GET" or "POST"
    #: Documented calls per day on top of the 5-minute rule (plant/list, plant/energy: 10).
    per_day: int | None = None
    #: Discovery: a refused token here stops everything (there is nothing else to read).
    discovery: bool = False


PLANT_LIST = Endpoint("plant/list", "GET", per_day=10, discovery=True)
PLANT_DETAILS = Endpoint("plant/details", "GET")
PLANT_DATA = Endpoint("plant/data", "GET")
PLANT_ENERGY = Endpoint("plant/energy", "GET", per_day=10)
PLANT_POWER = Endpoint("plant/power", "GET")
DEVICE_LIST = Endpoint("device/list", "GET", discovery=True)
TLX_LAST = Endpoint("device/tlx/tlx_last_data", "POST")
TLX_INFO = Endpoint("device/tlx/tlx_data_info", "GET")
MIX_LAST = Endpoint("device/mix/mix_last_data", "POST")
MIX_INFO = Endpoint("device/mix/mix_data_info", "GET")
INV_LAST = Endpoint("device/inverter/last_new_data", "GET")
INV_INFO = Endpoint("device/inverter/inv_data_info", "GET")
INV_DAY_ENERGY = Endpoint("device/inverter/day_energy", "GET")

ENDPOINTS: dict[str, Endpoint] = {e.path: e for e in (
    PLANT_LIST, PLANT_DETAILS, PLANT_DATA, PLANT_ENERGY, PLANT_POWER, DEVICE_LIST, TLX_LAST, TLX_INFO, MIX_LAST,
    MIX_INFO, INV_LAST, INV_INFO, INV_DAY_ENERGY)}


@dataclass(frozen=True)
class Family:
    """A device family, chosen by ``device/list``'s numeric ``type`` (never the model text)."""

    name: str  # label value: min (MIN / TLX), mix (SPH / MIX hybrid), inverter (classic)
    last: Endpoint
    last_param: str  # the SN parameter of the "last data" call (tlx_sn, mix_sn, device_sn)
    info: Endpoint


#: device/list ``type`` -> family.
FAMILIES: dict[int, Family] = {
    7: Family("min", TLX_LAST, "tlx_sn", TLX_INFO),
    5: Family("mix", MIX_LAST, "mix_sn", MIX_INFO),
    1: Family("inverter", INV_LAST, "device_sn", INV_INFO),
}
#: device/list types we know but do not read (spec §8.1), for the one log line that says so.
OTHER_TYPES = {2: "storage", 3: "datalogger / smart meter / sensor", 4: "MAX", 6: "SPA", 8: "PCS", 9: "HPS",
               10: "PBD", 11: "GroBoost"}


class Problem(enum.Enum):
    """What an error means for the scheduler (spec §6: by endpoint *and* code)."""

    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    NEW_DOMAIN = "new_domain"
    SERVER = "server_error"


class GrowattError(Exception):
    """A call that gave no data; ``code`` is the metric label (``10012``, ``http_405``, ``transport``)."""

    code: str = "error"


class TransportError(GrowattError):
    """No API answer at all: network error, non-2xx, or a body that is not the JSON envelope."""

    def __init__(self, endpoint: str, code: str, detail: str) -> None:
        self.endpoint = endpoint
        self.code = code
        super().__init__(f"{endpoint}: {detail}")


class ApiError(GrowattError):
    """The envelope's ``error_code`` was not 0."""

    def __init__(self, endpoint: str, error_code: int, message: str) -> None:
        self.endpoint = endpoint
        self.error_code = error_code
        self.code = str(error_code)
        self.message = message
        self.problem = classify(endpoint, error_code)
        super().__init__(f"{endpoint}: error {error_code}" + (f" ({message})" if message else ""))


_NOT_FOUND = {
    "plant/details": (10002,), "plant/data": (10002,), "plant/energy": (10002,), "plant/power": (10002,),
    "device/list": (10003,),
    "device/tlx/tlx_last_data": (10002, 10003), "device/mix/mix_last_data": (10002, 10003),
    "device/inverter/last_new_data": (10002, 10003),
}


def classify(endpoint: str, code: int) -> Problem:
    """(endpoint, error_code) -> what it means. 10001-10009 differ per endpoint; 10012 means
    "device does not exist" on the settings endpoints (we never call those)."""
    if code == 10012 and not endpoint.endswith("Set"):
        return Problem.RATE_LIMITED
    if code == 10011:
        return Problem.AUTH
    if code in (10013, 10014):
        return Problem.BAD_REQUEST
    if code == -1:
        return Problem.NEW_DOMAIN
    if code in _NOT_FOUND.get(endpoint, ()):
        return Problem.NOT_FOUND
    return Problem.SERVER


@dataclass(frozen=True)
class Reply:
    """A successful envelope: ``data`` and the identifiers some endpoints put beside it."""

    data: Any
    extra: Mapping[str, Any]


def parse_envelope(endpoint: str, body: bytes | str) -> Reply:
    """The envelope of one reply; TransportError when it is not one, ApiError when it says so."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        looks = "an HTML page" if text.lstrip()[:1] == "<" else "not JSON"
        raise TransportError(endpoint, "not_json", f"the reply is {looks}, not the API's JSON") from None
    except RecursionError:  # [[[[... from a broken proxy: no envelope, and no crash either
        raise TransportError(endpoint, "not_json", "the reply is JSON nested too deep to be the API's") from None
    if not isinstance(doc, dict) or "error_code" not in doc:
        raise TransportError(endpoint, "not_json", "the reply is JSON without an error_code")
    raw_code = doc["error_code"]
    code = _error_code(raw_code)
    if code is None:
        raise TransportError(endpoint, "not_json", f"error_code is not a whole number: {str(raw_code)[:40]!r}")
    if code != 0:
        msg = doc.get("error_msg")
        raise ApiError(endpoint, code, msg if isinstance(msg, str) else "")
    extra = {k: v for k, v in doc.items() if k not in ("data", "error_code", "error_msg")}
    return Reply(doc.get("data"), extra)


def _error_code(raw: Any) -> int | None:
    """``error_code`` as an int (a number or a numeric string); None for anything else: a
    0.5 or true is no success, and 1e999 no error code."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        return int(raw.strip())
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None


def base_url(region: str, override: str | None) -> str:
    """The API root ending in ``/``: ``override`` (``/v1/`` added to a bare host) or the region's."""
    if not override:
        return REGIONS[region]
    from urllib.parse import urlsplit

    url = override.strip()
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v1/"
    return url if url.endswith("/") else url + "/"


MAX_REPLY = 4 * 1024 * 1024


class Client:
    """Makes one call at a time (the scheduler decides which); never retries by itself."""

    def __init__(self, root: str, token: Secret, timeout: float = 20.0) -> None:
        import requests  # the collection path needs it; imported here so `gridtap --help` stays light

        self.root = root
        self.timeout = timeout
        self._requests = requests
        self.session = requests.Session()
        self.session.headers.update({
            "token": token.reveal(),
            "User-Agent": f"gridtap/{__version__} (Python {platform.python_version()}; {platform.system()})",
            "Accept": "application/json",
        })

    def call(self, endpoint: Endpoint, params: Mapping[str, Any]) -> Reply:
        url = self.root + endpoint.path
        fields = {k: str(v) for k, v in params.items()}
        try:
            if endpoint.method == "GET":
                resp = self.session.get(url, params=fields, timeout=self.timeout, allow_redirects=False, stream=True)
            else:
                resp = self.session.post(url, data=fields, timeout=self.timeout, allow_redirects=False, stream=True)
            with resp:
                if not 200 <= resp.status_code < 300:
                    reason = f"HTTP {resp.status_code} {resp.reason or ''}".rstrip()
                    if 300 <= resp.status_code < 400:
                        reason += f" (redirect to {resp.headers.get('Location', '?')}; wrong region or base_url?)"
                    raise TransportError(endpoint.path, f"http_{resp.status_code}", reason)
                body = b""
                for chunk in resp.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_REPLY:  # a reply is a few kB; never hold an endless one
                        raise TransportError(endpoint.path, "too_large", f"reply over {MAX_REPLY // 1024 ** 2} MiB")
        except self._requests.Timeout:
            raise TransportError(endpoint.path, "timeout", f"no answer within {self.timeout:g} s") from None
        except self._requests.RequestException as e:
            raise TransportError(endpoint.path, "transport", _reason(e)) from None
        return parse_envelope(endpoint.path, body)

    def close(self) -> None:
        self.session.close()


def _reason(e: Exception) -> str:
    """A connection error in a few words (requests nests the socket error deep down)."""
    inner: BaseException | None = e
    for _ in range(10):  # the chain is short; never loop on a strange one
        if inner is None:
            break
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror.lower()
        inner = inner.__cause__ or inner.__context__ or (inner.args[0] if inner.args and isinstance(
            inner.args[0], BaseException) else None)
    text = str(e)
    for hint in ("Connection refused", "Name or service not known", "timed out", "certificate verify failed"):
        if hint in text:
            return hint.lower()
    return type(e).__name__
