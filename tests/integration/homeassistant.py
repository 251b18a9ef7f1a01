"""A real Home Assistant core on 127.0.0.1 for the integration tests.

Home Assistant is pinned (:data:`HA_VERSION`, the newest release that runs on the Python 3.13.0
the machine has through pyenv) and installed from PyPI into its own virtualenv,
``~/.cache/gridtap/ha-venv-<version>``, together with the requirements of every integration
the tests load, so Home Assistant never installs anything at run time (it runs with
``--skip-pip``). ``tests/setup-and-run.sh`` makes the venv with::

    python tests/integration/homeassistant.py install

which is idempotent (a finished venv has a ``.gridtap-ready`` marker) and fails loudly.

:func:`start_homeassistant` writes a configuration into the test's temporary folder, starts
``hass`` on a free loopback port, onboards it through its HTTP API (user, core config,
analytics, integration step), and :meth:`HomeAssistant.add_mqtt` sets up the MQTT integration
through the config-entry flow API. The websocket API (entity and device registries,
``energy/validate``) is spoken by a small script run with the Home Assistant venv's Python,
which has aiohttp, so the project needs no websocket client of its own.

Override the interpreter with GRIDTAP_HA_PYTHON and the venv folder with GRIDTAP_HA_VENV.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__:
    from . import servers
else:  # `python tests/integration/homeassistant.py install`
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import servers  # type: ignore[no-redef]

HA_VERSION = "2025.4.4"
#: pyenv's 3.13.0 (the home of whoever runs the tests, or root's), else a python3.13 on PATH.
_PYENV_313 = (Path.home() / ".pyenv/versions/3.13.0/bin/python", Path("/root/.pyenv/versions/3.13.0/bin/python"))
HA_PYTHON = os.environ.get("GRIDTAP_HA_PYTHON") or next(
    (str(p) for p in _PYENV_313 if p.exists()), shutil.which("python3.13") or "python3.13")
HA_VENV = Path(os.environ.get("GRIDTAP_HA_VENV", Path.home() / ".cache" / "gridtap" / f"ha-venv-{HA_VERSION}"))
READY_MARKER = ".gridtap-ready"
INSTALL_HINT = "create it with `python tests/integration/homeassistant.py install` (tests/setup-and-run.sh does)"
#: What configuration.yaml loads besides Home Assistant's default integrations, plus MQTT.
CONFIGURED = ("http", "api", "websocket_api", "config", "energy", "onboarding", "recorder", "history", "mqtt")
USER, PASSWORD = "gridtap", "gridtap-test-password"  # noqa: S105 - a throwaway local instance


# --- the venv --------------------------------------------------------------------------


def venv_python() -> Path:
    return HA_VENV / "bin" / "python"


def venv_ready() -> bool:
    marker = HA_VENV / READY_MARKER
    return marker.exists() and marker.read_text().strip() == HA_VERSION and venv_python().exists()


def require_venv() -> Path:
    """The venv's ``hass``, or :class:`servers.Missing` saying how to make it."""
    if not venv_ready():
        raise servers.Missing(f"no Home Assistant {HA_VERSION} venv at {HA_VENV}; {INSTALL_HINT}")
    return HA_VENV / "bin" / "hass"


def _manifests(site: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in (site / "homeassistant" / "components").glob("*/manifest.json"):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def integration_requirements(site: Path) -> list[str]:
    """Requirements of the integrations Home Assistant will set up here, dependencies included.

    Read from the manifests of the installed release, so a version bump brings its own list.
    """
    text = (site / "homeassistant" / "bootstrap.py").read_text()
    start = text.index("DEFAULT_INTEGRATIONS = {")
    default = [line.split('"')[1] for line in text[start:text.index("}", start)].splitlines() if '"' in line]
    manifests = _manifests(site)
    todo, seen, reqs = [*default, *CONFIGURED], set(), []
    while todo:
        domain = todo.pop()
        if domain in seen or domain not in manifests:
            continue
        seen.add(domain)
        m = manifests[domain]
        reqs += m.get("requirements", [])
        todo += m.get("dependencies", [])
    # The auth modules load their own (multi-factor login, asked for during onboarding).
    for module in sorted((site / "homeassistant" / "auth").glob("*/*.py")):
        for line in module.read_text().splitlines():
            if line.startswith("REQUIREMENTS = ["):
                reqs += json.loads(line.split("=", 1)[1].strip())
    return sorted(set(reqs))


def install(log: Callable[[str], None] = print) -> None:
    """Make the venv (idempotent). Raises CalledProcessError / RuntimeError on any failure."""
    if venv_ready():
        log(f"cached: Home Assistant {HA_VERSION} in {HA_VENV}")
        return
    if not Path(HA_PYTHON).exists():
        raise RuntimeError(f"{HA_PYTHON} not found (Home Assistant {HA_VERSION} needs Python 3.13; "
                           "set GRIDTAP_HA_PYTHON)")
    t0 = time.monotonic()
    shutil.rmtree(HA_VENV, ignore_errors=True)
    subprocess.run([HA_PYTHON, "-m", "venv", str(HA_VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, f"homeassistant=={HA_VERSION}"], check=True)
    site = Path(subprocess.run([str(venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    reqs = integration_requirements(site)
    constraints = site / "homeassistant" / "package_constraints.txt"
    subprocess.run([*pip, "-c", str(constraints), *reqs], check=True)
    subprocess.run([str(HA_VENV / "bin" / "hass"), "--version"], check=True, capture_output=True)
    (HA_VENV / READY_MARKER).write_text(HA_VERSION + "\n")
    log(f"installed Home Assistant {HA_VERSION} and {len(reqs)} integration requirements into {HA_VENV} "
        f"in {time.monotonic() - t0:.0f} s")


# --- a running instance ----------------------------------------------------------------

WS_SCRIPT = r"""
import asyncio, json, sys
import aiohttp

async def main():
    url, token = sys.argv[1], sys.argv[2]
    commands = json.load(sys.stdin)
    out = []
    async with aiohttp.ClientSession() as s, s.ws_connect(url, max_msg_size=0) as ws:
        assert (await ws.receive_json())["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": token})
        reply = await ws.receive_json()
        assert reply["type"] == "auth_ok", reply
        for i, cmd in enumerate(commands, 1):
            await ws.send_json({"id": i, **cmd})
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == i and msg.get("type") == "result":
                    break
            out.append(msg)
    json.dump(out, sys.stdout)

asyncio.run(main())
"""


@dataclass
class HomeAssistant:
    proc: servers.Proc
    port: int
    config_dir: Path
    token: str = ""
    started_in: float = 0.0
    mqtt_entry: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: Any = None, *, form: dict[str, str] | None = None,
                auth: bool = True, timeout: float = 30) -> tuple[int, Any]:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, doc = self.request(method, path, body, **kw)
        assert 200 <= status < 300, f"{method} {path}: HTTP {status} {doc!r}\n--- hass log ---\n{self.log()}"
        return doc

    def log(self) -> str:
        path = self.config_dir / "home-assistant.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return self.proc.log()
        return text[-8000:]

    # -- setup ------------------------------------------------------------------------------

    def onboard(self) -> None:
        """Every onboarding step through the API, as the frontend would do them."""
        client_id = self.url + "/"
        done = self.ok("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "gridtap test", "username": USER, "password": PASSWORD,
            "language": "en"}, auth=False)
        tokens = self.ok("POST", "/auth/token", form={"grant_type": "authorization_code", "code": done["auth_code"],
                                                      "client_id": client_id}, auth=False)
        self.token = tokens["access_token"]
        self.ok("POST", "/api/onboarding/core_config")
        self.ok("POST", "/api/onboarding/analytics")
        self.ok("POST", "/api/onboarding/integration", {"client_id": client_id, "redirect_uri": client_id})
        steps = self.ok("GET", "/api/onboarding", auth=False)
        assert all(s["done"] for s in steps), steps

    def add_mqtt(self, broker_port: int) -> None:
        """The MQTT integration, through the config-entry flow (the UI's "Add integration")."""
        flow = self.ok("POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False})
        while flow["type"] == "form":
            assert not flow.get("errors"), flow
            step = flow["step_id"]
            data = {"broker": "127.0.0.1", "port": broker_port} if step == "broker" else {}
            flow = self.ok("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", data)
        if flow["type"] == "menu":  # newer releases ask how to set it up
            flow = self.ok("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", {"next_step_id": "broker"})
        assert flow["type"] == "create_entry", flow
        self.mqtt_entry = flow["result"]["entry_id"]
        servers.wait_until(lambda: any(e["domain"] == "mqtt" and e["state"] == "loaded"
                                       for e in self.ok("GET", "/api/config/config_entries/entry")),
                           60, "the MQTT config entry to load", self.proc)

    # -- reading ----------------------------------------------------------------------------

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.ok("GET", "/api/states")}

    def ws(self, *commands: dict[str, Any]) -> list[Any]:
        """Run websocket commands; their ``result`` values (a failed command fails the test)."""
        res = subprocess.run([str(venv_python()), "-c", WS_SCRIPT, f"ws://127.0.0.1:{self.port}/api/websocket",
                              self.token], input=json.dumps(list(commands)), capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, f"websocket helper failed: {res.stderr[-3000:]}"
        out = []
        for cmd, msg in zip(commands, json.loads(res.stdout), strict=True):
            assert msg.get("success"), f"{cmd}: {msg}"
            out.append(msg.get("result"))
        return out

    def screenshot(self, path: str, out: Path, size: str = "1280,1500") -> None:
        """A picture of a frontend page (``/config/devices/device/<id>``) by headless Chromium
        (Debian's ``chromium``), logged in through the frontend's own auth-callback. Not used by
        the tests; it made docs/ha-*.png."""
        import base64

        chromium = servers.require("chromium", "install the Debian package `chromium`")
        client_id = self.url + "/"
        flow = self.ok("POST", "/auth/login_flow", {"client_id": client_id, "handler": ["homeassistant", None],
                                                    "redirect_uri": client_id + "?auth_callback=1"}, auth=False)
        code = self.ok("POST", f"/auth/login_flow/{flow['flow_id']}", {"username": USER, "password": PASSWORD,
                                                                       "client_id": client_id}, auth=False)["result"]
        state = base64.b64encode(json.dumps({"hassUrl": self.url, "clientId": client_id}).encode()).decode()
        url = f"{self.url}{path}?auth_callback=1&code={code}&state={urllib.parse.quote(state)}"
        subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={size}", "--virtual-time-budget=20000", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=120)

    def registries(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(entity registry, device registry) entries."""
        entities, devices = self.ws({"type": "config/entity_registry/list"}, {"type": "config/device_registry/list"})
        return entities, devices


def _hass_config(port: int, config_dir: Path) -> str:
    return f"""homeassistant:
  name: gridtap test
  unit_system: metric
  time_zone: UTC
  latitude: 52.1
  longitude: 5.1
  elevation: 0
  currency: EUR
  country: NL
  internal_url: http://127.0.0.1:{port}
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
config:
energy:
onboarding:
recorder:
  db_url: sqlite:///{config_dir}/home-assistant_v2.db
  commit_interval: 1
history:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


def start_homeassistant(workdir: Path, timeout: float = 300) -> HomeAssistant:
    """``hass`` with its own config folder in ``workdir``, up, onboarded (not yet MQTT)."""
    hass = require_venv()
    config_dir = workdir / "ha-config"
    config_dir.mkdir(parents=True, exist_ok=True)
    port = servers.free_port()
    (config_dir / "configuration.yaml").write_text(_hass_config(port, config_dir))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    t0 = time.monotonic()
    proc = servers.spawn("hass", [str(hass), "--config", str(config_dir), "--skip-pip", "--log-no-color"], workdir,
                         env=env)
    ha = HomeAssistant(proc, port, config_dir)
    try:
        servers.wait_until(lambda: ha.request("GET", "/api/onboarding", auth=False, timeout=5)[0] == 200, timeout,
                           f"Home Assistant on 127.0.0.1:{port}", proc, interval=0.5)
        ha.started_in = time.monotonic() - t0
        ha.onboard()
        # Home Assistant is fully up when its core state is RUNNING.
        servers.wait_until(lambda: ha.ok("GET", "/api/config")["state"] == "RUNNING", timeout,
                           "Home Assistant to finish starting", proc, interval=0.5)
        ha.timings["start"] = time.monotonic() - t0
    except BaseException:
        proc.stop(timeout=30)
        raise
    return ha


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        print("usage: python tests/integration/homeassistant.py install", file=sys.stderr)
        sys.exit(2)
    try:
        install()
    except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
        print(f"Home Assistant venv: {e}", file=sys.stderr)
        sys.exit(1)
