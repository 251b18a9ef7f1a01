"""Prometheus Pushgateway output: one PUT per device (shared/specs/ecosystem.md §3, Pushgateway 1.5.1).

The body is built by :func:`gridtap.outputs.prometheus.families`, so the pushed names, types
and labels are exactly those of ``/metrics`` (plus the gateway's ``job`` / grouping labels).

Grouping key: ``{"plugin": <plugin>, "device": <device>}`` (under ``job``, default ``gridtap``),
one group per *physical* device:

* ``device`` is the sample's own ``device`` label: the configured device name (every sample
  has it, ``Batch.labelled``) unless the plugin labels its own devices (a Goodwe proxy's
  ``device="meter"`` / ``"inverter"``). The gateway lets URL grouping labels override body
  labels, so grouping by the very value the series carries changes nothing in the series,
  and a query reads the same on /metrics and on the gateway.
* a plugin's ``subdevice_labels`` (``serial``, ``plant_id`` ...) that a sample carries are
  part of its group's key too, so two inverters behind one proxy are two groups.
* a group pushed earlier by a device and absent now (a physical device that went stale) is
  deleted, so the gateway never keeps a dead device's values; :class:`GroupLedger` remembers
  the groups across ``--once`` runs too.
* ``instance`` is left alone: Prometheus sets it to the gateway's address when scraping (or
  keeps "" with ``honor_labels``); a made-up ``plugin/device`` instance would also force
  base64 in every URL because of the ``/``.
* ``plugin`` separates two plugins that were given the same device name.

PUT (``push_to_gateway``) replaces the whole group, so a series a device stopped reporting
(a fault code that cleared, a failed collection that only has ``<plugin>_up 0``) disappears
from the gateway like it does from /metrics. Pushed samples carry no timestamps (the gateway
rejects them); ``gridtap_build_info`` is not pushed (it describes the exporter, not a device,
and would be repeated in every group).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import urllib.error
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, delete_from_gateway, generate_latest, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.registry import Collector

from ..config import Secret
from ..errors import GridtapError, OutputError
from ..model import Batch
from .prometheus import families

log = logging.getLogger("gridtap.outputs.pushgateway")

MAX_MESSAGE = 300  # characters of the gateway's reply kept in an error


GroupKey = tuple[tuple[str, str], ...]


def grouping_key(plugin: str, device: str) -> dict[str, str]:
    """The grouping labels (besides ``job``) of one device's group; see the module docstring."""
    return {"plugin": plugin, "device": device}


def groups(batch: Batch) -> list[tuple[GroupKey, Batch]]:
    """The batch split into one group per physical device (see the module docstring), each as
    (grouping key, a batch of its labelled samples); the configured device's own group first."""
    base: GroupKey = tuple(grouping_key(batch.plugin, batch.device).items())
    out: dict[GroupKey, list] = {base: []}
    for m in batch.labelled():
        labels = dict(m.labels)
        key = {"plugin": batch.plugin, "device": labels.get("device", batch.device)}
        key.update({k: labels[k] for k in batch.subdevice_labels if k in labels and k not in key})
        out.setdefault(tuple(key.items()), []).append(m)
    return [(key, Batch(batch.plugin, dict(key)["device"], batch.timestamp_ns, metrics, batch.ok))
            for key, metrics in out.items() if metrics or key == base]


class _Families(Collector):
    def __init__(self, fams: list[PromFamily]) -> None:
        self._fams = fams

    def collect(self) -> Iterable[PromFamily]:
        return iter(self._fams)


def registry_for_batch(batch: Batch) -> CollectorRegistry:
    """A registry holding exactly one batch's families (what one PUT sends)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families([batch])))
    return registry


def encode_group(batch: Batch) -> bytes:
    """The text-format (0.0.4) body pushed for ``batch``: no timestamps, ends with a newline."""
    return generate_latest(registry_for_batch(batch))


def latest_per_device(batches: Iterable[Batch]) -> list[Batch]:
    """The newest batch of each (plugin, device), in first-seen order.

    Two batches of one device in one PUT would be duplicate series, which the gateway rejects.
    """
    out: dict[tuple[str, str], Batch] = {}
    for b in batches:
        key = (b.plugin, b.device)
        if key not in out or b.timestamp_ns >= out[key].timestamp_ns:
            out[key] = b
    return list(out.values())


def push(
    batches: list[Batch],
    url: str,
    job: str = "gridtap",
    *,
    timeout: float = 10.0,
    username: str | None = None,
    password: Secret | None = None,
) -> dict[tuple[str, str], list[GroupKey]]:
    """PUT each physical device's samples (latest batch per device) to its own group.

    All groups are tried even when one is refused (a type conflict in one device must not
    starve the others); an unreachable gateway stops at the first group. Raises
    :class:`OutputError` (one line, never the password) naming the groups that failed.
    Returns the groups pushed, per (plugin, configured device).
    """
    url, username, password = _split_auth(url, username, password)
    handler = _handler(username, password)
    failures: list[str] = []
    pushed: dict[tuple[str, str], list[GroupKey]] = {}
    count = 0
    for batch in latest_per_device(batches):
        for key, group in groups(batch):
            count += 1
            name = "/".join(v for _, v in key)
            try:
                push_to_gateway(url, job, registry_for_batch(group), dict(key), timeout=timeout, handler=handler)
            except urllib.error.HTTPError as exc:
                failures.append(f"{name}: {_http_problem(exc)}")
                continue
            except OSError as exc:  # refused, DNS, timeout: the gateway itself is unreachable
                raise OutputError(_message(url, job, name, _os_problem(exc), password)) from None
            pushed.setdefault((batch.plugin, batch.device), []).append(key)
    if failures:
        what = f"{len(failures)} of {count} groups refused"
        raise OutputError(_message(url, job, what, "; ".join(failures), password))
    return pushed


def delete_groups(keys: Iterable[GroupKey], url: str, job: str = "gridtap", *, timeout: float = 10.0,
                  username: str | None = None, password: Secret | None = None) -> None:
    """DELETE the groups with these grouping keys (missing groups are fine)."""
    url, username, password = _split_auth(url, username, password)
    handler = _handler(username, password)
    for key in keys:
        try:
            delete_from_gateway(url, job, dict(key), timeout=timeout, handler=handler)
        except urllib.error.HTTPError as exc:
            raise OutputError(_message(url, job, "delete " + "/".join(v for _, v in key), _http_problem(exc),
                                       password)) from None
        except OSError as exc:
            raise OutputError(_message(url, job, "delete", _os_problem(exc), password)) from None


class GroupLedger:
    """Which groups each configured device pushed last, kept in a small state file so a later
    process (the next ``--once`` run) can delete the groups of physical devices that vanished."""

    def __init__(self, url: str, job: str, path: Path | None = None) -> None:
        if path is None:
            from .. import state

            digest = hashlib.sha1(f"{safe_url(url)} {job}".encode()).hexdigest()[:12]
            path = state.default_dir("pushgateway") / f"groups-{digest}.json"
        self.path = path
        self._loaded: dict[str, list[GroupKey]] | None = None

    def _load(self) -> dict[str, list[GroupKey]]:
        if self._loaded is None:
            from .. import state

            raw = state.read_json(self.path)
            self._loaded = {}
            if isinstance(raw, dict):
                for dev, keys in raw.items():
                    with contextlib.suppress(TypeError, ValueError):
                        self._loaded[dev] = [tuple((str(k), str(v)) for k, v in key) for key in keys]
        return self._loaded

    def vanished(self, pushed: dict[tuple[str, str], list[GroupKey]]) -> list[GroupKey]:
        """Groups pushed before by these devices but not now; the ledger then holds ``pushed``."""
        known = self._load()
        gone: list[GroupKey] = []
        changed = False
        for (plugin, device), keys in pushed.items():
            name = f"{plugin}/{device}"
            old = known.get(name, [])
            gone += [k for k in old if k not in keys]
            if sorted(old) != sorted(keys):
                known[name] = list(keys)
                changed = True
        if changed:
            self._save()
        return gone

    def forget(self, plugin: str, device: str) -> list[GroupKey]:
        keys = self._load().pop(f"{plugin}/{device}", [])
        if keys:
            self._save()
        return keys

    def _save(self) -> None:
        from .. import state

        try:
            state.ensure_dir(self.path.parent, "pushgateway state")
            state.write_json(self.path, {k: [list(map(list, key)) for key in v] for k, v in self._load().items()})
        except (OSError, GridtapError) as e:  # a ledger we cannot write costs only the clean-up
            log.debug("pushgateway: cannot keep %s: %s", self.path, e)


def delete(
    devices: Iterable[Batch | tuple[str, str]],
    url: str,
    job: str = "gridtap",
    *,
    timeout: float = 10.0,
    username: str | None = None,
    password: Secret | None = None,
) -> None:
    """DELETE the groups of ``devices`` (batches or ``(plugin, device)`` pairs), e.g. on shutdown.

    Without it the gateway keeps serving the last push forever (it never expires a group),
    so a stopped gridtap would look alive. Deleting a group that does not exist succeeds.
    """
    url, username, password = _split_auth(url, username, password)
    handler = _handler(username, password)
    seen: set[tuple[str, str]] = set()
    failures: list[str] = []
    for d in devices:
        plugin, device = (d.plugin, d.device) if isinstance(d, Batch) else d
        if (plugin, device) in seen:
            continue
        seen.add((plugin, device))
        try:
            delete_from_gateway(url, job, grouping_key(plugin, device), timeout=timeout, handler=handler)
        except urllib.error.HTTPError as exc:
            failures.append(f"{plugin}/{device}: {_http_problem(exc)}")
        except OSError as exc:
            raise OutputError(_message(url, job, f"delete {plugin}/{device}", _os_problem(exc), password)) from None
    if failures:
        raise OutputError(_message(url, job, f"delete: {len(failures)} of {len(seen)} groups refused",
                                   "; ".join(failures), password))


# ------------------------------------------------------------------------------------------


def _split_auth(url: str, username: str | None, password: Secret | None
                ) -> tuple[str, str | None, Secret | None]:
    """``http://user:pw@host`` -> (``http://host``, user, Secret(pw)); explicit arguments win.

    urllib does not do userinfo in URLs, and a URL is printed in errors while a Secret is not.
    """
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.username is None and parts.password is None:
        return url, username, password
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    user = username if username is not None else unquote(parts.username or "")
    secret = password if password is not None else Secret(unquote(parts.password or ""))
    return bare, user, secret


def _handler(username: str | None, password: Secret | None) -> Callable[..., Callable[[], None]]:
    if username is None and password is None:
        return default_handler
    secret = password.reveal() if isinstance(password, Secret) else (None if password is None else str(password))

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                data: bytes) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username or "", secret or "")

    return handler


def _http_problem(exc: urllib.error.HTTPError) -> str:
    """``HTTP 400 <the gateway's message>``; the gateway explains refusals in the body."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the status alone is still worth reporting
        body = ""
    body = re.sub(r"\s+", " ", body).strip() or str(exc.reason or "")
    if len(body) > MAX_MESSAGE:
        body = body[:MAX_MESSAGE] + "..."
    return f"HTTP {exc.code} {body}".rstrip()


def _os_problem(exc: OSError) -> str:
    reason: Any = getattr(exc, "reason", None)  # URLError wraps the socket error
    inner = reason if isinstance(reason, BaseException) else exc
    text = getattr(inner, "strerror", None) or str(reason if reason is not None else exc) or type(inner).__name__
    if isinstance(inner, TimeoutError) or "timed out" in str(text):
        text = "timed out"
    return f"cannot reach the gateway: {text}"


def safe_url(url: str) -> str:
    """``url`` without any ``user:password@`` part, for messages."""
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _message(url: str, job: str, what: str, problem: str, password: Secret | None) -> str:
    text = f"pushgateway {safe_url(url)} job={job}: {what}: {problem}"
    if password is not None:
        secret = password.reveal() if isinstance(password, Secret) else str(password)
        if secret:
            text = text.replace(secret, "***")
    return text
