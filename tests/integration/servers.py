"""Real servers on 127.0.0.1 for the integration tests.

Every helper starts its process itself, remembers its PID, polls for readiness with a
bounded timeout and stops exactly that PID again (SIGTERM, then SIGKILL). Output goes to a
log file in the test's temp dir; :meth:`Proc.log` returns it for failure messages.

Nothing here decides to skip: :func:`require` raises :class:`Missing` with the reason, and
the fixtures in ``conftest.py`` turn that into ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TELEGRAF_VERSION = "v1.37.2"
TELEGRAF_TAGS = "custom,inputs.execd,outputs.file,outputs.prometheus_client"
TELEGRAF_DIR = f"telegraf-{TELEGRAF_VERSION}-execd-file-prometheus_client"
TELEGRAF_BUILD = (
    f"GOBIN=$HOME/.cache/gridtap/{TELEGRAF_DIR} GOFLAGS=-mod=mod go install "
    f'-tags "{TELEGRAF_TAGS}" github.com/influxdata/telegraf/cmd/telegraf@{TELEGRAF_VERSION}'
    " (tests/setup-and-run.sh does this)"
)
#: A gridtap that a non-root user can run, for collectd's exec plugin (made by tests/setup-and-run.sh).
EXEC_VENV_GRIDTAP = os.environ.get("GRIDTAP_EXEC_BIN", "/opt/gridtap-venv/bin/gridtap")
EXEC_USER = "nobody"
EXEC_GROUP = "nogroup"


class Missing(Exception):
    """A binary or capability the test needs is not on this machine (reason in the message)."""


class ServerError(AssertionError):
    """A server did not come up or misbehaved; the message carries its log."""


def require(binary: str, hint: str) -> str:
    """Absolute path of ``binary`` or :class:`Missing` naming how to get it."""
    path = shutil.which(binary)
    if path is None:
        raise Missing(f"{binary} not found on PATH; {hint}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(check: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None,
               interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the process log after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - readiness probes fail until ready
            last_exc = exc
        if proc is not None and proc.popen.poll() is not None:
            raise ServerError(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}"
                              f"\n--- {proc.name} log ---\n{proc.log()}")
        if time.monotonic() > deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            log = f"\n--- {proc.name} log ---\n{proc.log()}" if proc is not None else ""
            raise ServerError(f"timed out after {timeout:.0f} s waiting for {what}{detail}{log}")
        time.sleep(interval)


@dataclass
class Proc:
    """A process we started; ``stop`` signals exactly its PID."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self, limit: int = 8000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """SIGTERM (or ``sig``) to our PID, wait, SIGKILL if needed; return the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return self.popen.returncode


def spawn(name: str, argv: Sequence[str], workdir: Path, *, env: dict[str, str] | None = None,
          stdin: int | None = subprocess.DEVNULL, stdout_pipe: bool = False, **kw: Any) -> Proc:
    """Start ``argv`` with stderr (and stdout unless piped) going to ``workdir/<name>.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        popen = subprocess.Popen(
            list(argv), stdin=stdin, stdout=subprocess.PIPE if stdout_pipe else log, stderr=log,
            env=env, cwd=workdir, **kw,
        )
    finally:
        log.close()
    return Proc(name, popen, log_path)


# --------------------------------------------------------------------------------------
# gridtap itself


def gridtap_bin() -> str:
    """The ``gridtap`` command of the Python running the tests (absolute, so servers can exec it).

    The script beside ``sys.executable`` wins over PATH, so a venv's tests test that venv.
    """
    for cand in (Path(sys.executable).with_name("gridtap"), Path(sys.prefix) / "bin" / "gridtap"):
        if cand.exists() and os.access(cand, os.X_OK):
            return str(cand)
    path = shutil.which("gridtap")
    if path is None:
        raise Missing("the gridtap command is not installed; run `pip install .` (tests/setup-and-run.sh)")
    return path


def gridtap_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_gridtap(args: Sequence[str], timeout: float = 60, input: bytes | None = None
                ) -> subprocess.CompletedProcess:
    return subprocess.run([gridtap_bin(), *args], input=input, capture_output=True, timeout=timeout,
                          env=gridtap_env(), stdin=None if input is not None else subprocess.DEVNULL)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``gridtap: ...`` line a user mistake must produce on stderr (no traceback)."""
    err = proc.stderr.decode() if isinstance(proc.stderr, bytes) else proc.stderr
    assert err.count("\n") == 1 and err.startswith("gridtap: "), err
    assert "Traceback" not in err
    return err.strip()


def start_simulator(device: str, workdir: Path, *extra: str, timeout: float = 20) -> tuple[Proc, str]:
    """``gridtap simulate DEVICE --tcp 127.0.0.1:PORT``; wait for its ``ready <addr>`` line.

    Returns the process and the address it printed (``127.0.0.1:PORT``).
    """
    port = free_port()
    argv = [gridtap_bin(), "simulate", device, "--tcp", f"127.0.0.1:{port}", *extra]
    proc = spawn(f"simulate-{device}", argv, workdir, env=gridtap_env(), stdout_pipe=True)
    assert proc.popen.stdout is not None
    fd = proc.popen.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""

    def ready() -> str | None:
        nonlocal buf
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(fd, 4096)
            buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("ready"):
                parts = line.split()
                return parts[1] if len(parts) > 1 else f"127.0.0.1:{port}"
        return None

    try:
        addr = wait_until(ready, timeout, f"`ready` from gridtap simulate {device} (stdout so far: {buf!r})",
                          proc)
    except BaseException:
        proc.stop()
        raise
    # Keep draining the simulator's stdout into its log so it never blocks on a full pipe.
    _drain_to_log(proc)
    return proc, addr


def _drain_to_log(proc: Proc) -> None:
    import threading

    assert proc.popen.stdout is not None
    stream = proc.popen.stdout
    os.set_blocking(stream.fileno(), True)

    def pump() -> None:
        with contextlib.suppress(Exception), open(proc.log_path, "ab") as log:
            for chunk in iter(lambda: stream.read1(4096), b""):
                log.write(chunk)
                log.flush()

    threading.Thread(target=pump, daemon=True, name=f"drain-{proc.name}").start()


# --------------------------------------------------------------------------------------
# InfluxDB 1.6


@dataclass
class InfluxDB:
    proc: Proc
    http_port: int
    db: str = "gridtap"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _request(self, method: str, path: str, body: bytes | None = None,
                 params: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, bytes]:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None and method == "POST" and path == "/query":
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def ping(self) -> bool:
        status, _ = self._request("GET", "/ping", timeout=2)
        return status == 204

    def create_db(self, name: str | None = None) -> None:
        status, body = self._request(
            "POST", "/query", urllib.parse.urlencode({"q": f'CREATE DATABASE "{name or self.db}"'}).encode()
        )
        assert status == 200 and b'"error"' not in body, f"CREATE DATABASE failed: {status} {body!r}"

    def write(self, lines: bytes | str, db: str | None = None, precision: str = "ns") -> tuple[int, str]:
        """POST line protocol to /write; (HTTP status, response body). 204 = accepted."""
        data = lines.encode() if isinstance(lines, str) else lines
        status, body = self._request("POST", "/write", data, {"db": db or self.db, "precision": precision})
        return status, body.decode(errors="replace")

    def write_chunked(self, lines: bytes, db: str | None = None, max_bytes: int = 4 << 20
                      ) -> list[tuple[int, str]]:
        """POST in chunks of whole lines below ``max_bytes``; one (status, body) per request."""
        out = []
        chunk: list[bytes] = []
        size = 0
        for line in lines.splitlines(keepends=True):
            if chunk and size + len(line) > max_bytes:
                out.append(self.write(b"".join(chunk), db))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            out.append(self.write(b"".join(chunk), db))
        return out

    def query(self, q: str, db: str | None = None) -> dict:
        """GET /query, epoch=ns; the decoded JSON (fails the test on an error)."""
        status, body = self._request("GET", "/query", params={"db": db or self.db, "q": q, "epoch": "ns"})
        assert status == 200, f"query {q!r}: HTTP {status} {body!r}"
        doc = json.loads(body)
        for res in doc.get("results", []):
            assert "error" not in res, f"query {q!r}: {res['error']}"
        return doc

    def rows(self, q: str, db: str | None = None) -> list[dict[str, Any]]:
        """Query result as a list of {column: value} (tags of GROUP BY merged in)."""
        out = []
        for res in self.query(q, db).get("results", []):
            for series in res.get("series", []) or []:
                tags = series.get("tags", {}) or {}
                for values in series.get("values", []):
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(tags)
                    out.append(row)
        return out


def start_influxd(workdir: Path, http_port: int = 18086, bind_port: int = 18088,
                  db: str = "gridtap", timeout: float = 30) -> InfluxDB:
    """influxd 1.6 with the spec's config on 127.0.0.1 (18086/18088 unless taken; then free ports)."""
    influxd = require("influxd", "install the Debian package `influxdb` (tests/setup-and-run.sh)")
    if not port_is_free(http_port) or not port_is_free(bind_port):
        http_port, bind_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{bind_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[ifql]
  enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
    )
    proc = spawn("influxd", [influxd, "-config", str(conf)], workdir)
    server = InfluxDB(proc, http_port, db)
    try:
        wait_until(server.ping, timeout, f"influxd /ping on 127.0.0.1:{http_port}", proc)
        server.create_db()
    except BaseException:
        proc.stop()
        raise
    return server


# --------------------------------------------------------------------------------------
# promtool


def promtool_check_metrics(text: str | bytes, timeout: float = 30) -> tuple[int, str]:
    """``promtool check metrics`` on the exposition text; (exit code, stdout+stderr)."""
    promtool = require("promtool", "install the Debian package `prometheus` (tests/setup-and-run.sh)")
    data = text.encode() if isinstance(text, str) else text
    res = subprocess.run([promtool, "check", "metrics"], input=data, capture_output=True, timeout=timeout)
    return res.returncode, (res.stdout + res.stderr).decode(errors="replace")


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def scrape_until(port: int, *needles: str, timeout: float, proc: Proc | None = None) -> str:
    """Poll ``http://127.0.0.1:<port>/metrics`` (text format) until every needle is in it.

    Returns the exposition; a server not listening yet counts as "not yet".
    """
    url = f"http://127.0.0.1:{port}/metrics"

    def scraped() -> str | None:
        with contextlib.suppress(OSError):
            _, _, body = http_get(url, {"Accept": "text/plain"})
            text = body.decode()
            if all(n in text for n in needles):
                return text
        return None

    return wait_until(scraped, timeout, f"{', '.join(needles)} on {url}", proc)


# --------------------------------------------------------------------------------------
# collectd


def _runs_as(user: str, argv: Sequence[str]) -> tuple[bool, str]:
    """Can ``user`` run ``argv`` (exit 0)? Used to prove the exec user can start gridtap."""
    runuser = shutil.which("runuser") or shutil.which("setpriv")
    if runuser is None:
        return False, "neither runuser nor setpriv is available"
    if runuser.endswith("runuser"):
        cmd = [runuser, "-u", user, "--", *argv]
    else:
        pw = pwd.getpwnam(user)
        cmd = [runuser, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", *argv]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=60, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, repr(exc)
    return res.returncode == 0, (res.stdout + res.stderr).decode(errors="replace")[-2000:]


def collectd_exec_identity() -> tuple[str, str]:
    """(``Exec`` user spec, gridtap path that user can run) for collectd's exec plugin.

    collectd refuses to exec as root. As root we run collectd itself as root (it needs to
    switch users) and exec ``nobody:nogroup`` running the world-readable venv that
    tests/setup-and-run.sh makes (``/opt/gridtap-venv``, override with GRIDTAP_EXEC_BIN).
    As a normal user collectd can only exec as that same user, with our own ``gridtap``.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name, gridtap_bin()
    if not Path(EXEC_VENV_GRIDTAP).exists():
        raise Missing(
            f"collectd must exec gridtap as a non-root user, and {EXEC_VENV_GRIDTAP} (a venv that user "
            "`nobody` can read) does not exist; tests/setup-and-run.sh creates it "
            "(or set GRIDTAP_EXEC_BIN to a gridtap that `nobody` can run)"
        )
    ok, out = _runs_as(EXEC_USER, [EXEC_VENV_GRIDTAP, "--help"])
    if not ok:
        raise ServerError(f"user {EXEC_USER} cannot run {EXEC_VENV_GRIDTAP} --help:\n{out}")
    return f"{EXEC_USER}:{EXEC_GROUP}", EXEC_VENV_GRIDTAP


@dataclass
class Collectd:
    proc: Proc
    basedir: Path
    csv_dir: Path
    hostname: str

    def csv_files(self) -> list[Path]:
        return sorted(p for p in self.csv_dir.rglob("*") if p.is_file())

    def csv_values(self) -> dict[str, list[tuple[float, list[float]]]]:
        """``{"plugin-inst/type-inst": [(epoch, [values...]), ...]}`` for our host."""
        out: dict[str, list[tuple[float, list[float]]]] = {}
        host_dir = self.csv_dir / self.hostname
        if not host_dir.is_dir():
            return out
        for path in sorted(host_dir.rglob("*")):
            if not path.is_file():
                continue
            type_inst = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", path.name)
            ident = f"{path.parent.name}/{type_inst}"
            rows = out.setdefault(ident, [])
            for line in path.read_text(errors="replace").splitlines()[1:]:
                parts = line.split(",")
                with contextlib.suppress(ValueError):
                    rows.append((float(parts[0]), [float(v) for v in parts[1:]]))
        return out


def start_collectd(workdir: Path, exec_argv: Sequence[str], exec_user: str, hostname: str = "ci-host",
                   interval: float = 1, timeout: float = 20) -> Collectd:
    """collectd in the foreground with exec + csv plugins, logging to its log file."""
    collectd = require("collectd", "install the Debian package `collectd-core` (tests/setup-and-run.sh)")
    types_db = Path("/usr/share/collectd/types.db")
    if not types_db.exists():
        raise Missing(f"{types_db} is missing; install the Debian package `collectd-core`")
    plugin_dir = Path("/usr/lib/collectd")
    basedir = workdir / "collectd"
    csv_dir = basedir / "csv"
    csv_dir.mkdir(parents=True, exist_ok=True)
    quoted = " ".join(_collectd_quote(a) for a in exec_argv)
    conf = basedir / "collectd.conf"
    conf.write_text(
        f"""Hostname {_collectd_quote(hostname)}
FQDNLookup false
Interval {interval}
BaseDir "{basedir}"
PIDFile "{basedir}/collectd.pid"
PluginDir "{plugin_dir}"
TypesDB "{types_db}"
LoadPlugin logfile
<Plugin logfile>
  LogLevel info
  File STDOUT
  Timestamp true
</Plugin>
LoadPlugin exec
LoadPlugin csv
<Plugin exec>
  Exec {_collectd_quote(exec_user)} {quoted}
</Plugin>
<Plugin csv>
  DataDir "{csv_dir}"
  StoreRates false
</Plugin>
"""
    )
    test = subprocess.run([collectd, "-C", str(conf), "-t"], capture_output=True, timeout=timeout)
    if test.returncode != 0:
        raise ServerError(f"collectd -t rejected the config (rc {test.returncode}):\n"
                          f"{(test.stdout + test.stderr).decode(errors='replace')}\n{conf.read_text()}")
    proc = spawn("collectd", [collectd, "-C", str(conf), "-f"], basedir)
    server = Collectd(proc, basedir, csv_dir, hostname)
    try:
        wait_until(lambda: "Initialization complete" in proc.log(), timeout, "collectd initialisation", proc)
    except BaseException:
        proc.stop()
        raise
    return server


def _collectd_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------
# Telegraf


def telegraf_bin() -> str:
    """The cached Telegraf build (or TELEGRAF_BIN, or one on PATH); :class:`Missing` names the build."""
    env = os.environ.get("TELEGRAF_BIN")
    cands = [env] if env else []
    cands.append(str(Path.home() / ".cache" / "gridtap" / TELEGRAF_DIR / "telegraf"))
    which = shutil.which("telegraf")
    if which:
        cands.append(which)
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    raise Missing(f"no Telegraf binary (looked at {', '.join(c for c in cands if c)}); build it with: "
                  f"{TELEGRAF_BUILD}")


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


@dataclass
class Telegraf:
    proc: Proc
    out_path: Path
    conf_path: Path

    def output(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


def start_telegraf(workdir: Path, command: Sequence[str], signal_mode: str = "STDIN",
                   environment: Iterable[str] = (), timeout: float = 30,
                   prometheus_listen: str | None = None) -> Telegraf:
    """Telegraf with ``inputs.execd`` running ``command`` and ``outputs.file`` into the workdir;
    with ``prometheus_listen`` also ``outputs.prometheus_client`` (metric_version 2, no expiry,
    no Go/process collectors) on that address."""
    binary = telegraf_bin()
    workdir.mkdir(parents=True, exist_ok=True)
    out_path = workdir / "telegraf-out.lp"
    conf = workdir / "telegraf.conf"
    env_list = ", ".join(_toml_str(e) for e in environment)
    conf.write_text(
        f"""[agent]
  interval = "1s"
  flush_interval = "1s"
  round_interval = false
  omit_hostname = true
  debug = true

[[inputs.execd]]
  command = [{", ".join(_toml_str(c) for c in command)}]
  environment = [{env_list}]
  signal = {_toml_str(signal_mode)}
  restart_delay = "60s"
  data_format = "influx"

[[outputs.file]]
  files = [{_toml_str(str(out_path))}]
  data_format = "influx"
"""
    )
    if prometheus_listen is not None:
        with conf.open("a") as f:
            f.write(f"""
[[outputs.prometheus_client]]
  listen = {_toml_str(prometheus_listen)}
  metric_version = 2
  expiration_interval = "0s"
  collectors_exclude = ["gocollector", "process"]
  export_timestamp = false
""")
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    proc = spawn("telegraf", [binary, "--config", str(conf)], workdir, env=env)
    try:
        wait_until(lambda: "Loaded inputs" in proc.log() or "Starting Telegraf" in proc.log(), timeout,
                   "Telegraf start-up", proc)
    except BaseException:
        proc.stop()
        raise
    return Telegraf(proc, out_path, conf)


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." - comm may contain spaces/parens: split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


# --------------------------------------------------------------------------------------
# Line protocol, parsed independently of our encoder (for comparing what servers stored)


@dataclass
class LPLine:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]
    timestamp: int | None
    raw: str = field(repr=False, default="")


def _split_unescaped(s: str, sep: str, quotes: bool = False) -> list[str]:
    parts, cur, i, in_q = [], [], 0, False
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if quotes and c == '"':
            in_q = not in_q
        if c == sep and not in_q:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(s: str) -> str:
    return re.sub(r"\\([ ,=\\\"])", r"\1", s)


def _field_value(v: str) -> Any:
    if v.startswith('"'):
        assert v.endswith('"') and len(v) >= 2, f"unterminated string field {v!r}"
        return re.sub(r'\\(["\\])', r"\1", v[1:-1])
    if v.endswith("i"):
        return int(v[:-1])
    if v.endswith("u"):
        return int(v[:-1])
    if v in ("t", "T", "true", "True", "TRUE"):
        return True
    if v in ("f", "F", "false", "False", "FALSE"):
        return False
    f = float(v)
    assert math.isfinite(f), f"non-finite float {v!r} in line protocol"
    return f


def parse_line_protocol(text: str) -> list[LPLine]:
    """A strict-enough line-protocol parser (measurement, tags, fields, timestamp)."""
    out = []
    for raw in text.split("\n"):
        if not raw or raw.startswith("#"):
            continue
        sections = _split_unescaped(raw, " ", quotes=True)
        assert 2 <= len(sections) <= 3, f"bad line protocol line: {raw!r}"
        key = _split_unescaped(sections[0], ",")
        measurement = _unescape(key[0])
        tags = {}
        for t in key[1:]:
            k, v = _split_unescaped(t, "=")
            tags[_unescape(k)] = _unescape(v)
        fields = {}
        for f in _split_unescaped(sections[1], ",", quotes=True):
            k, v = _split_unescaped(f, "=", quotes=True)
            fields[_unescape(k)] = _field_value(v)
        ts = int(sections[2]) if len(sections) == 3 else None
        out.append(LPLine(measurement, tags, fields, ts, raw))
    return out


# --------------------------------------------------------------------------------------
# The powerwall simulator (gridtap simulate powerwall) with its loopback control endpoint


@dataclass
class PowerwallSim:
    proc: Proc
    address: str
    control_url: str

    def control(self, **cmd: Any) -> dict:
        req = urllib.request.Request(self.control_url + "/control", data=json.dumps(cmd).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def counters(self) -> dict:
        with urllib.request.urlopen(self.control_url + "/counters", timeout=10) as resp:
            return json.loads(resp.read())

    def certificate_pem(self) -> str:
        with urllib.request.urlopen(self.control_url + "/certificate", timeout=10) as resp:
            return json.loads(resp.read())["pem"]


def start_powerwall_sim(workdir: Path, *extra: str) -> PowerwallSim:
    """``gridtap simulate powerwall`` on a free port, with ``--control`` on another."""
    control = f"127.0.0.1:{free_port()}"
    proc, addr = start_simulator("powerwall", workdir, "--control", control, *extra)
    return PowerwallSim(proc, addr, f"http://{control}")


# --------------------------------------------------------------------------------------
# ISG simulator (web + Modbus) and Alertmanager


@dataclass
class IsgSim:
    proc: Proc
    web: str  # http://127.0.0.1:PORT
    modbus_port: int

    def state(self) -> dict[str, Any]:
        """The simulator's counters and SGReady registers (GET /_simulator/state)."""
        status, _, body = http_get(self.web + "/_simulator/state")
        assert status == 200, body
        return json.loads(body)

    def holding(self, address: int, count: int = 1) -> list[int]:
        """Holding registers from the simulator's store (wire addresses)."""
        status, _, body = http_get(f"{self.web}/_simulator/registers?table=holding&address={address}&count={count}")
        assert status == 200, body
        return json.loads(body)["values"]

    def expire_sessions(self) -> None:
        req = urllib.request.Request(self.web + "/_simulator/expire", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


def start_isg_simulator(workdir: Path, *extra: str, timeout: float = 20) -> IsgSim:
    """``gridtap simulate isg`` on free ports; parses ``ready ADDR web=URL modbus=HOST:PORT``."""
    argv = [gridtap_bin(), "simulate", "isg", "--web", "127.0.0.1:0", "--modbus", "127.0.0.1:0", *extra]
    proc = spawn("simulate-isg", argv, workdir, env=gridtap_env(), stdout_pipe=True)
    assert proc.popen.stdout is not None
    fd = proc.popen.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b""

    def ready() -> dict[str, str] | None:
        nonlocal buf
        with contextlib.suppress(BlockingIOError):
            buf += os.read(fd, 4096)
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("ready "):
                return dict(part.split("=", 1) for part in line.split()[2:] if "=" in part)
        return None

    try:
        found = wait_until(ready, timeout, f"`ready` from gridtap simulate isg (stdout so far: {buf!r})", proc)
    except BaseException:
        proc.stop()
        raise
    _drain_to_log(proc)
    return IsgSim(proc, found["web"].rstrip("/"), int(found["modbus"].rsplit(":", 1)[1]))


@dataclass
class Alertmanager:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Inject alerts through the v2 API (an ``endsAt`` in the past resolves them)."""
        req = urllib.request.Request(self.url + "/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200, resp.read()


def start_alertmanager(workdir: Path, webhook_url: str, timeout: float = 30) -> Alertmanager:
    """Debian's prometheus-alertmanager on 127.0.0.1 (no cluster gossip), one receiver posting
    every group to ``webhook_url`` quickly (group_wait 1s, group_interval 2s, resolved sent)."""
    binary = require("prometheus-alertmanager",
                     "install the Debian package `prometheus-alertmanager` (tests/setup-and-run.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "am.yml"
    conf.write_text(
        f"""route:
  receiver: sgready
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: sgready
    webhook_configs:
      - url: {json.dumps(webhook_url)}
        send_resolved: true
        max_alerts: 0
"""
    )
    port = free_port()
    proc = spawn("alertmanager", [binary, f"--config.file={conf}", f"--storage.path={workdir / 'am-data'}",
                                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                  f"--web.external-url=http://127.0.0.1:{port}"], workdir)
    server = Alertmanager(proc, port)

    def ready() -> bool:
        status, _, _ = http_get(server.url + "/-/ready", timeout=2)
        return status == 200

    try:
        wait_until(ready, timeout, f"alertmanager /-/ready on 127.0.0.1:{port}", proc)
    except BaseException:
        proc.stop()
        raise
    return server


# --------------------------------------------------------------------------------------
# Pushgateway and Prometheus (used by the growatt push tests; any plugin may use them)


@dataclass
class Pushgateway:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def groups(self) -> list[dict[str, Any]]:
        """``/api/v1/metrics``: one entry per group, ``labels`` = its grouping key (with ``job``)."""
        status, _h, body = http_get(self.url + "/api/v1/metrics", timeout=5)
        assert status == 200, body
        return json.loads(body)["data"]


def start_pushgateway(workdir: Path, timeout: float = 15) -> Pushgateway:
    """prometheus-pushgateway on a free 127.0.0.1 port, persisting into ``workdir`` (never the
    Debian default /var/lib/prometheus)."""
    binary = require("prometheus-pushgateway",
                     "install the Debian package `prometheus-pushgateway` (tests/setup-and-run.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = spawn("pushgateway", [binary, f"--web.listen-address=127.0.0.1:{port}",
                                 f"--persistence.file={workdir / 'pushgateway.store'}"], workdir)
    gateway = Pushgateway(proc, port)
    try:
        wait_until(lambda: http_get(gateway.url + "/-/ready", timeout=1)[0] == 200, timeout, "pushgateway /-/ready",
                   proc)
    except BaseException:
        proc.stop()
        raise
    return gateway


@dataclass
class Prometheus:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (each with ``metric`` labels and ``value``)."""
        status, _h, body = http_get(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
        assert status == 200, body
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]


def start_prometheus(workdir: Path, targets: Sequence[str], honor_labels: bool = True,
                     timeout: float = 30) -> Prometheus:
    """Prometheus scraping ``targets`` (HOST:PORT) every second, storage in ``workdir``."""
    binary = require("prometheus", "install the Debian package `prometheus` (tests/setup-and-run.sh)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: gridtap-test\n"
        f"    honor_labels: {'true' if honor_labels else 'false'}\n"
        f"    static_configs:\n      - targets: {json.dumps(list(targets))}\n"
    )
    proc = spawn("prometheus", [binary, f"--config.file={conf}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], workdir)
    server = Prometheus(proc, port)
    try:
        wait_until(lambda: http_get(server.url + "/-/ready", timeout=1)[0] == 200, timeout, "prometheus /-/ready",
                   proc)
    except BaseException:
        proc.stop()
        raise
    return server


# --------------------------------------------------------------------------------------
# Mosquitto


@dataclass
class Mosquitto:
    proc: Proc
    port: int


def start_mosquitto(workdir: Path, timeout: float = 10) -> Mosquitto:
    """Mosquitto on a free 127.0.0.1 port, anonymous, no persistence; ready once it takes a publish."""
    mosquitto = require("mosquitto", "install the Debian package `mosquitto` (tests/setup-and-run.sh)")
    mosquitto_pub = require("mosquitto_pub", "install the Debian package `mosquitto-clients`")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n")
    proc = spawn("mosquitto", [mosquitto, "-c", str(conf)], workdir)

    def ready() -> bool:
        res = subprocess.run([mosquitto_pub, "-h", "127.0.0.1", "-p", str(port), "-t", "ready", "-n"],
                             capture_output=True, timeout=5)
        return res.returncode == 0

    try:
        wait_until(ready, timeout, f"mosquitto on 127.0.0.1:{port}", proc, interval=0.1)
    except BaseException:
        proc.stop()
        raise
    return Mosquitto(proc, port)
