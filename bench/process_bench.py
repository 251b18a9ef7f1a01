"""Process-level figures: what a user of one gridtap process sees, beside the exporter it replaces.

Every plugin's own simulator (``Plugin.demo()``, on loopback, run by this script) is the device;
the gridtap processes measured are the real command line (``gridtap run PLUGIN --output
prometheus``, ``gridtap serve``), started fresh for each figure:

* idle RSS of ``gridtap run PLUGIN --output prometheus`` for every plugin, and of ``gridtap
  serve`` with every plugin's device in one config (VmRSS after a few collections);
* ``/metrics`` under ``wrk -t2 -c4`` (Debian's wrk), 4 concurrent Python clients (one process
  each, keep-alive) and sequential p50 / p99 over one keep-alive connection;
* ``gridtap --version`` and ``gridtap run PLUGIN --once`` start-up: the time from spawning the
  process to its first connect / bind / open of the device (an audit hook, installed through
  ``sitecustomize`` on PYTHONPATH, notes the first one; nothing in gridtap changes);
* the Goodwe proxy process's RSS after 6,000 uploads from 60 devices;
* with ``--seed-goodwe PATH`` (smlx/goodwe-exporters' ``sems_mitm_exporter``, built locally) or
  ``--seed-powerwall PATH`` (foogod/powerwall_exporter), the same figures for the seed, on the
  same traffic with the same clients, in the same run.

Prints ``result:`` / ``versus:`` / ``goal:`` lines for ``bench/run.py``. A benchmark, not a
test: it never fails on a figure, only when something could not be measured.
MB here are MiB, as ``ps`` reports RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GOALS = {
    "idle RSS, run PLUGIN --output prometheus": "<= 20 MB",
    "idle RSS, serve with every plugin": "<= 40 MB",
    "/metrics wrk -t2 -c4": ">= 2000 req/s and >= Go seed",
    "/metrics 4 Python clients": ">= Go seed",
    "/metrics sequential p99": "<= 3 ms",
    "gridtap --version": "<= 100 ms",
    "run PLUGIN --once before first device I/O": "<= 150 ms",
}

#: Written to a temporary directory put on PYTHONPATH: Python imports ``sitecustomize`` at start-up,
#: so the measured process is the unchanged ``gridtap`` command with one audit hook more.
FIRST_IO_HOOK = textwrap.dedent('''
    import os, sys, time
    _out = os.environ.get("GRIDTAP_BENCH_FIRST_IO")
    _paths = set(filter(None, os.environ.get("GRIDTAP_BENCH_PATHS", "").split(os.pathsep)))
    _seen = []

    def _first_io(event, args):
        if _seen or event not in ("socket.connect", "socket.bind", "open"):
            return
        if event == "open":
            path = args[0]
            if not (isinstance(path, str) and (path in _paths or path.startswith(("/dev/tty", "/dev/pts")))):
                return
            what = "open " + path
        else:
            address = args[1]
            if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)):
                return  # a unix socket (syslog), not the device
            if event == "socket.bind" and address[1] == 0:
                return  # an ephemeral bind (urllib3 probes for IPv6 at import so), not a listener
            what = f"{event.split('.')[1]} {address[0]}:{address[1]}"
        _seen.append(what)
        with open(_out, "w") as f:
            f.write(f"{time.monotonic()!r} {what}\\n")

    if _out:
        sys.addaudithook(_first_io)
''')


def gridtap_command() -> list[str]:
    found = shutil.which("gridtap", path=str(Path(sys.executable).parent)) or shutil.which("gridtap")
    return [found] if found else [sys.executable, "-m", "gridtap"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    parts = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    assert parts, url
    conn = http.client.HTTPConnection(parts[1], int(parts[2]), timeout=timeout)
    try:
        conn.request("GET", parts[3])
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Process:
    """A measured process, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, name: str = "") -> None:
        self.name = name or Path(argv[0]).name
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before {what}:\n{self.stderr()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if check():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: no {what} after {timeout:.0f} s:\n{self.stderr()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


# --- /metrics load -----------------------------------------------------------------------------
CLIENT = textwrap.dedent('''
    import http.client, sys, time
    host, port, path, mode, amount = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    conn = http.client.HTTPConnection(host, port, timeout=10)
    def get():
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}")
    get()
    if mode == "seq":
        out, end = [], time.perf_counter() + float(sys.argv[6])
        while len(out) < amount and time.perf_counter() < end:
            t0 = time.perf_counter()
            get()
            out.append(time.perf_counter() - t0)
        print(" ".join(f"{x:.6f}" for x in out))
    else:
        print("go", flush=True)
        sys.stdin.readline()
        n, end = 0, time.perf_counter() + amount
        while time.perf_counter() < end:
            get()
            n += 1
        print(n)
''')


def _split(url: str) -> tuple[str, str, str]:
    m = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
    assert m, url
    return m[1], m[2], m[3]


def wrk(url: str, seconds: float) -> tuple[float, str]:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed (Debian package wrk; tests/setup-and-run.sh installs it)")
    res = subprocess.run([exe, "-t2", "-c4", f"-d{seconds:g}s", url], capture_output=True, text=True,
                         timeout=seconds + 30)
    m = re.search(r"Requests/sec:\s+([\d.]+)", res.stdout)
    if res.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed: {res.stdout}{res.stderr}")
    errors = re.search(r"Non-2xx or socket errors:\s+(\d+)", res.stdout)
    note = f" ({errors[1]} non-2xx/socket errors)" if errors else ""
    return float(m[1]), note


def python_clients(url: str, clients: int, seconds: float) -> float:
    host, port, path = _split(url)
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, host, port, path, "run", str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    for p in procs:  # all connected and warmed up before the clock starts
        assert p.stdout is not None and p.stdout.readline().strip() == "go"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        if p.returncode != 0:
            raise RuntimeError(f"python client failed ({p.returncode})")
        total += int(out.split()[-1])
    return total / seconds


def sequential(url: str, requests: int, limit: float) -> tuple[float, float]:
    """Median and p99 of ``requests`` GETs in a row over one connection (fewer if ``limit`` s pass)."""
    host, port, path = _split(url)
    res = subprocess.run([sys.executable, "-c", CLIENT, host, port, path, "seq", str(requests), str(limit)],
                         capture_output=True, text=True, timeout=limit + 60)
    if res.returncode != 0:
        raise RuntimeError(f"sequential client failed: {res.stderr}")
    times = sorted(float(x) for x in res.stdout.split())
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3


# --- output ----------------------------------------------------------------------------------------
def result(key: str, value: str) -> None:
    print(f"result: {key} = {value}", flush=True)


def versus(key: str, who: str, value: str) -> None:
    print(f"versus: {key} = {who}: {value}", flush=True)


def goal(key: str, text: str) -> None:
    print(f"goal: {key} = {text}", flush=True)


def say(text: str) -> None:
    print(text, flush=True)


# --- the processes -----------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.quick = args.quick
        self.workdir = workdir
        self.gridtap = gridtap_command()
        hook_dir = workdir / "hook"
        hook_dir.mkdir()
        (hook_dir / "sitecustomize.py").write_text(FIRST_IO_HOOK)
        self.hook_dir = hook_dir

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a measured process: no GRIDTAP_ settings of ours, and bytecode
        cached (in the bench's own folder) as a pip-installed gridtap has its .pyc files, even
        where the environment says PYTHONDONTWRITEBYTECODE (every start would compile every
        module of the framework and the plugin again)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("GRIDTAP_") and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
        env["PYTHONPYCACHEPREFIX"] = str(self.workdir / "pycache")
        env.update(extra)
        return env

    def config(self, name: str, entries: list[dict[str, Any]]) -> Path:
        path = self.workdir / f"{name}.yaml"
        # JSON is YAML; the interval keeps collections coming while the process idles.
        path.write_text(json.dumps({"interval": "1s", "devices": entries}, default=str))
        return path

    # --- gridtap --version -------------------------------------------------------------------------
    def warm_up(self, plugins: list[str]) -> None:
        """One run that imports every module a measured process will, so each start after it
        finds its bytecode cached."""
        for argv in (["--version"], ["plugins"], *(["run", p, "--help"] for p in plugins)):
            subprocess.run([*self.gridtap, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=self.env(), timeout=60)

    def version(self) -> None:
        runs = 3 if self.quick else 10
        key = "gridtap --version"
        ours = self._best_of(runs, [*self.gridtap, "--version"])
        result(key, f"{ours:.0f} ms")
        if self.args.seed_goodwe:
            versus(key, "Go seed", f"{self._best_of(runs, [self.args.seed_goodwe, 'version']):.1f} ms")
        goal(key, GOALS[key])

    def _best_of(self, runs: int, argv: list[str]) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env(), check=True,
                           timeout=30)
            times.append((time.perf_counter() - t0) * 1e3)
        return min(times)  # the fastest run is the one least disturbed (bench/timing.py's rule)

    # --- run PLUGIN --once -------------------------------------------------------------------------
    def once(self, plugin: str, demo: Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]) -> None:
        key = f"run {plugin} --once before first device I/O"
        firsts, walls, what = [], [], ""
        for i in range(1 if self.quick else 5):
            with demo() as settings:
                cfg = self.config(f"once-{plugin}-{i}", [{"plugin": plugin, "name": f"bench-{plugin}", **settings}])
                marker = self.workdir / f"first-io-{plugin}-{i}"
                paths = [str(v) for v in settings.values() if isinstance(v, str) and os.path.exists(str(v))]
                env = self.env(PYTHONPATH=str(self.hook_dir), GRIDTAP_BENCH_FIRST_IO=str(marker),
                               GRIDTAP_BENCH_PATHS=os.pathsep.join(paths))
                t0 = time.monotonic()
                res = subprocess.run([*self.gridtap, "run", plugin, "--config", str(cfg), "--once", "--wait", "30s"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                     timeout=60)
                walls.append((time.monotonic() - t0) * 1e3)
                if not marker.exists():
                    raise RuntimeError(f"{key}: the process never touched the device (exit {res.returncode}): "
                                       f"{res.stderr[-500:]}")
                stamp, what = marker.read_text().split(" ", 1)
                firsts.append((float(stamp) - t0) * 1e3)
        result(key, f"{min(firsts):.0f} ms")  # the fastest of the runs, as bench/timing.py keeps them
        say(f"  {plugin} --once: first device I/O ({what.strip()}) after {min(firsts):.0f} ms "
            f"(median {statistics.median(firsts):.0f} ms), exit after {min(walls):.0f} ms")
        goal(key, GOALS["run PLUGIN --once before first device I/O"])

    # --- one plugin's /metrics process ---------------------------------------------------------------
    @contextlib.contextmanager
    def prometheus_process(self, argv: list[str], url: str, ups: list[str], name: str) -> Iterator[Process]:
        proc = Process(argv, self.env(), name)
        try:
            def ready() -> bool:
                status, body = http_get(url)
                text = body.decode(errors="replace")
                return status == 200 and all(re.search(rf"^{u}_up\{{[^}}]*\}} 1\.0$", text, re.M) for u in ups)

            try:
                proc.wait_for(ready, 30, f"{' and '.join(u + '_up 1' for u in ups)} on {url}")
            except RuntimeError as e:
                if "exited" in str(e):
                    raise
                say(f"  {name}: {e.args[0].splitlines()[0]}; measuring anyway")
            time.sleep(1.0 if self.quick else 3.0)  # a few collections at 1 s
            yield proc
        finally:
            proc.stop()

    def idle_run(self, plugin: str, demo: Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]) -> None:
        with demo() as settings:
            port = free_port()
            cfg = self.config(f"run-{plugin}", [{"plugin": plugin, "name": f"bench-{plugin}", **settings}])
            url = f"http://127.0.0.1:{port}/metrics"
            argv = [*self.gridtap, "run", plugin, "--config", str(cfg), "--output", "prometheus",
                    "--listen", f"127.0.0.1:{port}", "--interval", "1s"]
            with self.prometheus_process(argv, url, [plugin], f"run {plugin}") as proc:
                key = f"idle RSS, run {plugin} --output prometheus"
                result(key, f"{rss_mb(proc.pid):.1f} MB")
                goal(key, GOALS["idle RSS, run PLUGIN --output prometheus"])
                self.metrics_load(url, f"run {plugin}", proc)

    def idle_serve(self, demos: dict[str, Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]]) -> None:
        with contextlib.ExitStack() as stack:
            entries = [{"plugin": p, "name": f"bench-{p}", **stack.enter_context(d())} for p, d in demos.items()]
            port = free_port()
            cfg = self.config("serve", entries)
            url = f"http://127.0.0.1:{port}/metrics"
            argv = [*self.gridtap, "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{port}"]
            with self.prometheus_process(argv, url, list(demos), "serve") as proc:
                key = "idle RSS, serve with every plugin"
                result(key, f"{rss_mb(proc.pid):.1f} MB")
                say(f"  serve: {len(demos)} devices ({', '.join(demos)})")
                goal(key, GOALS[key])
                self.metrics_load(url, "serve", proc)

    def metrics_load(self, url: str, who: str, proc: Process | None, beside: str | None = None) -> None:
        """The /metrics figures of ``who`` at ``url``; with ``beside`` (a seed), as its figures
        beside those of the gridtap process ``beside`` names."""
        seconds_wrk = 1 if self.quick else 5
        seconds_py = 1 if self.quick else 10
        requests = 200 if self.quick else 2000
        _status, body = http_get(url)
        rate, note = wrk(url, seconds_wrk)
        clients = python_clients(url, 4, seconds_py)
        p50, p99 = sequential(url, requests, 3 if self.quick else 20)
        say(f"  {who}: /metrics is {len(body)} bytes; wrk {rate:.0f} req/s{note}, 4 Python clients "
            f"{clients:.0f} req/s, sequential p50 {p50:.2f} ms p99 {p99:.2f} ms"
            + (f"; RSS after the load {rss_mb(proc.pid):.1f} MB" if proc else ""))
        figures = [("/metrics wrk -t2 -c4", f"{rate:.0f} req/s"), ("/metrics 4 Python clients", f"{clients:.0f} req/s"),
                   ("/metrics sequential p50", f"{p50:.2f} ms"), ("/metrics sequential p99", f"{p99:.2f} ms")]
        for figure, value in figures:
            if beside:
                versus(f"{figure} ({beside})", who, value)
            else:
                key = f"{figure} ({who})"
                result(key, value)
                if figure in GOALS:
                    goal(key, GOALS[figure])

    # --- the Goodwe proxy under load ----------------------------------------------------------------
    def goodwe_loaded(self) -> None:
        """RSS of the proxy process after the same uploads through gridtap and (with a seed build
        whose SEMS address is loopback, as bench/goodwe_bench.py wants it) through the seed."""
        devices, frames = (10, 20) if self.quick else (60, 100)
        key = f"RSS, run goodwe after {devices * frames} uploads from {devices} devices"

        def gridtap(sems_port: int) -> tuple[Process, int]:
            listen, mport = free_port(), free_port()
            cfg = self.config("goodwe-load", [{"plugin": "goodwe", "name": "bench-goodwe", "listen_host": "127.0.0.1",
                                               "listen_port": listen, "upstream_host": "127.0.0.1",
                                               "upstream_port": sems_port}])
            proc = Process([*self.gridtap, "run", "goodwe", "--config", str(cfg), "--output", "prometheus",
                            "--listen", f"127.0.0.1:{mport}", "--interval", "1s"], self.env(), "run goodwe")
            proc.wait_for(lambda: http_get(f"http://127.0.0.1:{mport}/metrics")[0] == 200, 30, "/metrics")
            return proc, listen

        after = self._loaded(gridtap, 0, devices, frames, "gridtap")
        result(key, f"{after:.1f} MB")
        seed = self.args.seed_goodwe
        if not seed:
            return
        blob = Path(seed).read_bytes()
        upstream = self.args.seed_goodwe_upstream
        if upstream.encode() not in blob:
            say(f"  Go seed (goodwe) not loaded with uploads: {seed} does not name {upstream} as its SEMS address "
                "(a local build with a loopback SEMS address; see bench/goodwe_bench.py)")
            return
        host, _, port = upstream.rpartition(":")
        if not all(port_is_free(p) for p in (20001, 14028, int(port))):
            say("  Go seed (goodwe) not loaded with uploads: one of its fixed ports is in use")
            return

        def seed_process(_sems_port: int) -> tuple[Process, int]:
            proc = Process([seed, "serve"], self.env(), "Go seed (goodwe)")
            proc.wait_for(lambda: http_get("http://127.0.0.1:14028/metrics")[0] == 200, 15, "/metrics")
            return proc, 20001

        versus(key, "Go seed", f"{self._loaded(seed_process, int(port), devices, frames, 'Go seed', host):.1f} MB")

    def _loaded(self, start: Callable[[int], tuple[Process, int]], sems_port: int, devices: int, frames: int,
                who: str, sems_host: str = "127.0.0.1") -> float:
        import asyncio

        from gridtap_plugins.goodwe import simulator

        sems = simulator.SemsSimulator(sems_host, sems_port, bogus=False)
        sems.start()
        try:
            assert sems.address is not None
            proc, listen = start(sems.address[1])
            try:
                before = rss_mb(proc.pid)
                acked = asyncio.run(_upload(listen, devices, frames))
                time.sleep(1.5)  # a collection after the last upload
                after = rss_mb(proc.pid)
            finally:
                proc.stop()
        finally:
            sems.stop()
        say(f"  {who} proxy: {acked}/{devices * frames} uploads acknowledged through it; RSS {before:.1f} MB "
            f"before, {after:.1f} MB after")
        return after

    # --- the seeds ------------------------------------------------------------------------------------
    def seed_goodwe(self, path: str) -> None:
        """smlx/goodwe-exporters' ``sems_mitm_exporter serve``: ports 20001 and 14028 are fixed in
        it, and it resolves tcp.goodwe-power.com at start (and exits if it cannot), so it runs in a
        private mount namespace whose /etc/hosts names that host (no device connects: idle)."""
        for port in (20001, 14028):
            if not port_is_free(port):
                say(f"  Go seed (goodwe) skipped: port {port}, fixed in the seed, is in use")
                return
        hosts = self.workdir / "hosts"
        hosts.write_text("127.0.0.1 localhost\n127.0.0.1 tcp.goodwe-power.com\n")
        argv = [path, "serve"]
        if shutil.which("unshare") and os.geteuid() == 0:
            argv = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$1" serve', str(hosts), path]
        url = "http://127.0.0.1:14028/metrics"
        proc = Process(argv, self.env(), "Go seed (goodwe)")
        try:
            proc.wait_for(lambda: http_get(url)[0] == 200, 15, "/metrics")
            time.sleep(1.0 if self.quick else 3.0)
            versus("idle RSS, run goodwe --output prometheus", "Go seed", f"{rss_mb(proc.pid):.1f} MB")
            self.metrics_load(url, "Go seed", proc, beside="run goodwe")
        finally:
            proc.stop()

    def seed_powerwall(self, path: str, demo: Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]
                       ) -> None:
        """foogod/powerwall_exporter against our gateway simulator (insecure TLS, its default); it
        reads the gateway on every scrape, so its /metrics figures include the gateway's."""
        with demo() as settings:
            port = free_port()
            cfg = self.workdir / "powerwall_exporter.yaml"
            cfg.write_text(json.dumps({"web": {"listen_address": f"127.0.0.1:{port}"},
                                       "device": {"gateway_address": settings["gateway_address"],
                                                  "login_password": settings["login_password"]}}))
            url = f"http://127.0.0.1:{port}/metrics"
            proc = Process([path, f"--config.file={cfg}"], self.env(), "Go seed (powerwall)")
            try:
                proc.wait_for(lambda: http_get(url, timeout=5)[0] == 200, 15, "/metrics")
                time.sleep(1.0 if self.quick else 3.0)
                versus("idle RSS, run powerwall --output prometheus", "Go seed", f"{rss_mb(proc.pid):.1f} MB")
                self.metrics_load(url, "Go seed", proc, beside="run powerwall")
            finally:
                proc.stop()


async def _upload(port: int, devices: int, frames: int) -> int:
    """``devices`` Goodwe meters (one serial each) upload ``frames`` data frames each through the
    proxy, each waiting for its ACK; the number acknowledged."""
    import asyncio
    import datetime as dt

    from gridtap import _native
    from gridtap_plugins.goodwe import encoder, simulator

    when = dt.datetime(2024, 4, 12, 17, 23, 43, tzinfo=encoder.BEIJING)

    async def device(i: int) -> int:
        frame = simulator.data_frame("meter", f"91000HKU{i:08d}", when, i)
        ptype = int.from_bytes(frame[10:12], "big")
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        split = _native.GoodweSplitter("inbound")
        acked = 0
        try:
            for _ in range(frames):
                writer.write(frame)
                await writer.drain()
                got = False
                while not got:
                    data = await asyncio.wait_for(reader.read(65536), 10)
                    if not data:
                        return acked
                    got = any(kind == "frame" and int.from_bytes(raw[6:8], "big") == ptype
                              for kind, raw in split.feed(data))
                acked += 1
        finally:
            writer.close()
        return acked

    return sum(await asyncio.gather(*(device(i) for i in range(devices))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes (CI): 1 s loads, one run each")
    ap.add_argument("--seed-goodwe", metavar="PATH", help="smlx/goodwe-exporters' sems_mitm_exporter binary")
    ap.add_argument("--seed-goodwe-upstream", metavar="HOST:PORT", default="127.0.0.1:20011",
                    help="the SEMS address compiled into a loopback build of the goodwe seed (default 127.0.0.1:20011)")
    ap.add_argument("--seed-powerwall", metavar="PATH", help="foogod/powerwall_exporter binary")
    ap.add_argument("--plugins", help="only these plugins (comma-separated; default: every installed one)")
    args = ap.parse_args(argv)

    from gridtap import plugin as plugins

    names = plugins.names()
    if args.plugins:
        names = [n for n in names if n in args.plugins.split(",")]
    demos = {}
    for name in names:
        cls = plugins.load(name)
        if cls.demo() is not None:
            demos[name] = cls.demo
        else:
            say(f"  {name}: no simulator (Plugin.demo) to measure against; skipped")
    say(f"  load average at the start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
        "(other processes on the machine make start-up times and p99 noisy)")
    with tempfile.TemporaryDirectory(prefix="gridtap-process-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        bench.warm_up(list(demos))
        bench.version()
        for name, demo in demos.items():
            bench.once(name, demo)
        for name, demo in demos.items():
            bench.idle_run(name, demo)
        if demos:
            bench.idle_serve(demos)
        if args.seed_goodwe:
            bench.seed_goodwe(args.seed_goodwe)
        if "goodwe" in demos:
            bench.goodwe_loaded()
        if args.seed_powerwall:
            if "powerwall" in demos:
                bench.seed_powerwall(args.seed_powerwall, demos["powerwall"])
            else:
                say("  Go seed (powerwall) skipped: no powerwall plugin with a simulator to read")
    say(f"  load average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
