"""``gridtap growatt backfill --days N``: history from Growatt, within the call budget.

Per plant: ``plant/energy`` (daily energy, at most 7 days a call, 10 calls a day) and one
``plant/power`` per day (288 five-minute powers), through the same budget and discovery cache
as ``gridtap run growatt`` (3 s between calls; a call repeated inside its 5-minute window
waits for it, saying so). Written:

* InfluxDB (line protocol, real timestamps in the plant's time zone): the 5-minute powers as
  ``growatt_plant_power_watts`` (the live series), the day's energy and peak power at local
  midnight, the hourly mean power at each hour; on stdout, or to ``--influx-url``;
* a Pushgateway (``--pushgateway URL``): the daily energy and peak power with a ``date``
  label and the hourly means with ``date`` and ``hour``, in the job ``<job>-history`` so the
  live groups are left alone (a Pushgateway cannot take timestamps).

Progress goes to stderr: a bar on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from gridtap.errors import ConfigError, GridtapError, OutputError

if TYPE_CHECKING:  # imported when a command runs, so `gridtap --help` stays light
    from .api import Endpoint, Reply
    from .poller import Poller

MAX_DAYS = 95  # Growatt returns no history older than about 95 days
ENERGY_SPAN = 7  # plant/energy: at most 7 days per call with time_unit=day


class BackfillError(GridtapError):
    """The history could not be fetched (completely); what was fetched is written."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .plugin import GrowattConfig

    parser.add_argument("--days", type=int, required=True, help=f"how many days back (1-{MAX_DAYS})")
    parser.add_argument("--end", metavar="YYYY-MM-DD", help="last day to fetch (default: yesterday, plant time)")
    parser.add_argument("--config", metavar="FILE", help="YAML config file (the growatt device in it)")
    parser.add_argument("--name", metavar="DEVICE", help="device name (label device=); picks the device in --config")
    parser.add_argument("--influx-url", metavar="URL", help="write to this InfluxDB (1.x /write, or 2.x with "
                                                           "--influx-org/--influx-bucket) instead of stdout")
    parser.add_argument("--influx-db", metavar="DB", help="InfluxDB 1.x database")
    parser.add_argument("--influx-org", metavar="ORG", help="InfluxDB 2.x organisation")
    parser.add_argument("--influx-bucket", metavar="BUCKET", help="InfluxDB 2.x bucket")
    parser.add_argument("--pushgateway", metavar="URL", help="push the daily and hourly figures (date labels) to "
                                                             "this Pushgateway instead")
    parser.add_argument("--job", default=None, help="Pushgateway job (default: the config's, +'-history')")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                        help="progress on stderr: a bar on a terminal, lines otherwise (default auto)")
    group = parser.add_argument_group("growatt settings (also GRIDTAP_GROWATT_<KEY>, GROWATT_TOKEN, or the config "
                                      "file)")
    for f in dataclasses.fields(GrowattConfig):
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", metavar="VALUE",
                           help=f.metadata.get("help", ""))


@dataclass
class Plan:
    plant_id: str
    days: list[dt.date]
    zone: dt.tzinfo

    @property
    def energy_chunks(self) -> list[tuple[dt.date, dt.date]]:
        out = []
        for i in range(0, len(self.days), ENERGY_SPAN):
            chunk = self.days[i:i + ENERGY_SPAN]
            out.append((chunk[0], chunk[-1]))
        return out


class Progress:
    """``[#####.....] 3/8 plant/power 2026-06-18`` on a terminal, one line per step otherwise."""

    def __init__(self, total: int, mode: str, out: TextIO = sys.stderr) -> None:
        self.total, self.done, self.out = total, 0, out
        self.mode = ("bar" if out.isatty() else "lines") if mode == "auto" else mode
        self._bar_open = False  # the bar's line has not been ended yet

    def step(self, what: str) -> None:
        self.done += 1
        self.show(what)

    def show(self, what: str) -> None:
        if self.mode == "bar":
            width = 30
            full = int(width * self.done / max(1, self.total))
            self.out.write(f"\r[{'#' * full}{'.' * (width - full)}] {self.done}/{self.total} {what[:60]:<60}")
            self.out.flush()
            self._bar_open = True
        elif self.mode == "lines":
            self.out.write(f"growatt backfill: {self.done}/{self.total} {what}\n")
            self.out.flush()

    def note(self, text: str) -> None:
        self._end_bar()
        if self.mode != "none":
            self.out.write(f"growatt backfill: {text}\n")
            self.out.flush()

    def finish(self) -> None:
        self._end_bar()

    def _end_bar(self) -> None:
        if self._bar_open:
            self.out.write("\n")
            self.out.flush()
            self._bar_open = False


def run(args: argparse.Namespace) -> int:
    from gridtap import devices

    from . import api
    from .plugin import GrowattPlugin

    if getattr(args, "log_level", None) is None:  # the progress lines say what happens; keep stderr for them
        logging.getLogger("gridtap.growatt").setLevel(logging.WARNING)
    if not 1 <= args.days <= MAX_DAYS:
        raise ConfigError("--days", f"must be 1-{MAX_DAYS} (Growatt keeps about {MAX_DAYS} days), got {args.days}")
    if args.influx_url and not (args.influx_db or (args.influx_org and args.influx_bucket)):
        raise ConfigError("--influx-url", "also give --influx-db (InfluxDB 1.x) or --influx-org and --influx-bucket")
    if args.influx_url and args.pushgateway:
        raise ConfigError("--pushgateway", "write to one place at a time: --influx-url or --pushgateway")
    end = None
    if args.end:
        try:
            end = dt.date.fromisoformat(args.end)
        except ValueError:
            raise ConfigError("--end", f"expected YYYY-MM-DD, got {args.end!r}") from None
        _check_span(end, args.days)
    flags = {k[4:]: x for k, x in vars(args).items() if k.startswith("cfg_") and x is not None}
    found = devices.load_device(GrowattPlugin, config_path=args.config, name=args.name, flags=flags)
    sink = _sink(args, found.common)  # checked before any call is spent
    plugin: GrowattPlugin = found.spec.create()  # type: ignore[assignment]
    try:
        poller = plugin.poller
        discovery = poller.discover()
        # The daily cap first: nothing is spent on a history that cannot be fetched today.
        chunks = len(discovery.plants) * math.ceil(args.days / ENERGY_SPAN)
        left = (api.PLANT_ENERGY.per_day or 0) - poller.budget.calls_today(api.PLANT_ENERGY.path)
        if chunks > left:
            raise BackfillError(f"plant/energy allows {api.PLANT_ENERGY.per_day} calls a day and {max(0, left)} are "
                                f"left; {args.days} day(s) of {len(discovery.plants)} plant(s) need {chunks}: fewer "
                                "--days, or later")
        plans = []
        for pid in discovery.plants:
            zone = poller.zone(pid) or _zone_from_details(poller, pid) or dt.datetime.now().astimezone().tzinfo
            assert zone is not None
            last = end or (dt.datetime.now(zone).date() - dt.timedelta(days=1))
            plans.append(Plan(pid, [last - dt.timedelta(days=i) for i in range(args.days - 1, -1, -1)], zone))
        progress = Progress(chunks + sum(len(p.days) for p in plans), args.progress)
        influx: list[Any] = []
        pushed: list[Any] = []
        try:
            for plan in plans:
                a, b = _fetch_plan(poller, plan, progress, found.spec.name)
                influx += a
                pushed += b
        finally:
            progress.finish()
            if influx or pushed:
                sink(influx, pushed)
        progress.note(f"{len(influx)} point(s) of {sum(len(p.days) for p in plans)} day(s) written"
                      if not args.pushgateway else f"{len(pushed)} day(s) pushed")
        return 0
    finally:
        poller.save()
        plugin.close()


def _check_span(end: dt.date, days: int) -> None:
    """ConfigError for days Growatt has no history of: calls (10 plant/energy a day) spent on
    nothing. Judged by the UTC date, a day of slack either way for the plant's zone."""
    today = dt.datetime.now(dt.UTC).date()
    if end > today + dt.timedelta(days=1):
        raise ConfigError("--end", f"{end} is in the future")
    if (today - end).days + days - 1 > MAX_DAYS + 1:
        raise ConfigError("--end", f"{days} day(s) up to {end} reach back further than Growatt keeps about "
                                   f"{MAX_DAYS} days")


def _zone_from_details(poller: Poller, plant_id: str) -> dt.tzinfo | None:
    from . import api, values

    reply = poller.call(api.PLANT_DETAILS, {"plant_id": plant_id}, target=f"plant {plant_id}")
    if reply is None or not isinstance(reply.data, dict):
        return None
    return values.parse_zone(values.normalise_record(reply.data).get("timezone"))


def _call(poller: Poller, endpoint: Endpoint, params: dict[str, Any], progress: Progress) -> Reply:
    """One history call: waits for its window if it was made a moment ago, fails on an error."""
    verdict = poller.budget.check(endpoint.path, params)
    now = poller.clock.time()
    wait = verdict.wait(now)
    if wait > poller.settings.window + poller.settings.spacing:  # a daily cap or a long back-off: not now
        raise BackfillError(f"{endpoint.path} {_shown(params)}: not allowed before {_when(verdict.at)} "
                            f"({verdict.reason}); run the backfill again then")
    if wait > poller.settings.max_wait:
        progress.note(f"waiting {wait:.0f} s for {endpoint.path} ({verdict.reason})")
        poller.clock.sleep(wait)
    reply = poller.call(endpoint, params)
    if reply is None:
        raise BackfillError(f"{endpoint.path} {_shown(params)}: {poller.last_problem or 'not allowed now'}")
    return reply


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts != float("inf") else "ever"


def _shown(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={x}" for k, x in params.items() if k != "plant_id")


def _fetch_plan(poller: Poller, plan: Plan, progress: Progress, device: str) -> tuple[list[Any], list[Any]]:
    """(line-protocol batches, one Pushgateway batch) of one plant's history."""
    from gridtap.model import Batch

    from . import api
    from . import metrics as m
    from . import values as v

    pid = plan.plant_id
    energy: dict[dt.date, float] = {}
    for first, last in plan.energy_chunks:
        params = {"plant_id": pid, "start_date": first.isoformat(), "end_date": last.isoformat(), "time_unit": "day",
                  "page": 1, "perpage": 100}
        reply = _call(poller, api.PLANT_ENERGY, params, progress)
        energy.update(daily_energy(reply.data))
        progress.step(f"plant/energy {first} to {last}")
    influx: list[Batch] = []
    push: list[Any] = []
    for day in plan.days:
        reply = _call(poller, api.PLANT_POWER, {"plant_id": pid, "date": day.isoformat()}, progress)
        points = power_points(reply.data, plan.zone)
        midnight = dt.datetime.combine(day, dt.time(), plan.zone).timestamp()
        daily = []
        if day in energy:
            daily.append(m.DAILY_ENERGY(v.denoise(energy[day] * m.KWH), plant_id=pid))
            push.append(m.DAILY_ENERGY(v.denoise(energy[day] * m.KWH), plant_id=pid, date=day.isoformat()))
        day_points = [(t, w) for t, w in points if v.local_date(t, plan.zone) == day]
        if day_points:
            peak = max(w for _, w in day_points)
            daily.append(m.DAILY_PEAK(peak, plant_id=pid))
            push.append(m.DAILY_PEAK(peak, plant_id=pid, date=day.isoformat()))
        if daily:
            influx.append(Batch("growatt", device, int(midnight * 1e9), daily))
        for hour_start, mean in hourly_means(day_points, plan.zone):
            influx.append(Batch("growatt", device, int(hour_start * 1e9), [m.HOURLY_POWER(mean, plant_id=pid)]))
            hour = dt.datetime.fromtimestamp(hour_start, plan.zone).hour
            push.append(m.HOURLY_POWER(mean, plant_id=pid, date=day.isoformat(), hour=f"{hour:02d}"))
        for t, w in day_points:
            influx.append(Batch("growatt", device, int(t * 1e9), [m.PLANT_POWER(w, plant_id=pid)]))
        progress.step(f"plant/power {day}: {len(day_points)} five-minute values")
    batch = Batch("growatt", device, time.time_ns(), push, subdevice_labels=("plant_id",))
    return influx, [batch] if push else []


def daily_energy(data: Any) -> dict[dt.date, float]:
    """plant/energy (time_unit=day) -> {day: kWh}; "" and null entries are left out."""
    from . import values as v

    rows = data.get("energys") if isinstance(data, dict) else None
    out: dict[dt.date, float] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        try:
            day = dt.date.fromisoformat(str(row.get("date", "")))
        except ValueError:
            continue
        kwh = v.number(row.get("energy"))
        if kwh is not None and kwh >= 0:
            out[day] = kwh
    return out


def power_points(data: Any, zone: dt.tzinfo | None) -> list[tuple[float, float]]:
    """plant/power -> sorted [(Unix time, W)]; null powers (night, the future) left out.
    Growatt sends the 5-minute slots unsorted (newest first in the documentation)."""
    from . import values as v

    rows = data.get("powers") if isinstance(data, dict) else None
    out: dict[float, float] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        t = v.parse_local_time(row.get("time"), zone)
        w = v.number(row.get("power"))
        if t is not None and w is not None and w >= 0:
            out[t] = w
    return sorted(out.items())


def hourly_means(points: list[tuple[float, float]], zone: dt.tzinfo | None) -> list[tuple[float, float]]:
    """[(start of the hour, mean W of its five-minute values)] for the hours that have any."""
    hours: dict[float, list[float]] = defaultdict(list)
    for t, w in points:
        local = dt.datetime.fromtimestamp(t, zone)
        hours[local.replace(minute=0, second=0, microsecond=0).timestamp()].append(w)
    return [(h, round(math.fsum(ws) / len(ws), 3)) for h, ws in sorted(hours.items())]


def _sink(args: argparse.Namespace, common: Any) -> Any:
    """Where the history goes; set up (and checked) before the first call."""
    from gridtap import sinks
    from gridtap.outputs import lineproto

    if args.pushgateway:
        settings = sinks.pushgateway_settings(common.pushgateway, args.pushgateway)
        job = args.job or f"{settings.job}-history"

        def push(_influx: list[Any], batches: list[Any]) -> None:
            from gridtap.outputs import pushgateway

            pushgateway.push(batches, settings.url, job, timeout=float(settings.timeout),
                             username=settings.username, password=settings.password)

        _probe(f"pushgateway {settings.url}", settings.url.rstrip("/") + "/-/ready",
               (settings.username, settings.password.reveal() if settings.password else "")
               if settings.username else None)
        return push
    if args.influx_url:
        from gridtap.config import check_http_url

        check_http_url("--influx-url", args.influx_url, "http://127.0.0.1:8086")

        def write(batches: list[Any], _pushed: list[Any]) -> None:
            _influx_write(args, lineproto.encode(batches))

        _probe(f"influxdb {args.influx_url}", args.influx_url.rstrip("/") + "/ping", None)
        return write

    def stdout(batches: list[Any], _pushed: list[Any]) -> None:
        sys.stdout.buffer.write(lineproto.encode(batches))
        sys.stdout.flush()

    return stdout


def _probe(what: str, url: str, auth: tuple[str, str] | None) -> None:
    """OutputError unless ``url`` answers: the history costs calls Growatt counts, so where
    it goes is tried before the first one is made."""
    import requests

    try:
        resp = requests.get(url, timeout=10, auth=auth)
    except requests.RequestException as e:
        raise OutputError(f"{what}: cannot connect ({type(e).__name__}); nothing was fetched") from None
    if resp.status_code >= 400:
        raise OutputError(f"{what}: HTTP {resp.status_code} on {url.rsplit('/', 1)[-1]}; nothing was fetched")


def _influx_write(args: argparse.Namespace, body: bytes) -> None:
    import os

    import requests

    base = args.influx_url.rstrip("/")
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    token = os.environ.get("GRIDTAP_INFLUX_TOKEN") or os.environ.get("INFLUX_TOKEN")
    if token:
        headers["Authorization"] = f"Token {token}"
    if args.influx_db:
        url, params = f"{base}/write", {"db": args.influx_db, "precision": "ns"}
    else:
        url, params = f"{base}/api/v2/write", {"org": args.influx_org, "bucket": args.influx_bucket, "precision": "ns"}
    lines = body.split(b"\n")
    for i in range(0, len(lines), 5000):
        chunk = b"\n".join(x for x in lines[i:i + 5000] if x) + b"\n"
        try:
            resp = requests.post(url, params=params, data=chunk, headers=headers, timeout=30)
        except requests.RequestException as e:
            raise OutputError(f"influxdb {base}: cannot write: {type(e).__name__}") from None
        if resp.status_code not in (200, 204):
            raise OutputError(f"influxdb {base}: HTTP {resp.status_code} {resp.text.strip()[:200]}")
