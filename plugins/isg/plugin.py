"""gridtap plugin "isg": Stiebel Eltron / Tecalor heat pumps behind an ISG (Internet Service
Gateway), read through its web UI or its Modbus TCP service, with the SGReady writer.

* ``mode: web`` (the seed's default): log in, fetch the configured pages one at a time, turn
  every row into a metric (page.py); icon rows are flags kept for the life of the process.
* ``mode: modbus``: the WPM or LWZ register catalogue, chosen from the controller id, read in
  blocks of at most 125 registers and decoded in Rust (catalogue.py, rust/src/modbus.rs). An
  optional block the firmware lacks (exception 02) is marked unsupported; the rest is published.
* SGReady: ``gridtap sgready set|get`` (sgready_cli.py) and, with ``sgready_enable``, the
  Alertmanager webhook ``POST /webhooks/alertmanager`` on the /metrics listener; the requested
  state (unless it is normal, the ISG's own fallback) is kept by sgready_keeper.py: re-written
  when the read-back shows the ISG reverted it, and at the latest every ``sgready_reassert``,
  because the ISG does not latch it.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from gridtap.config import Duration, Secret, check_http_url, check_port, setting
from gridtap.errors import ConfigError, DeviceError, InputError
from gridtap.model import Metric
from gridtap.plugin import Command, Plugin

from . import metrics as m
from .sgready_keeper import MIN_REASSERT, SgreadyKeeper

if TYPE_CHECKING:
    from gridtap.routes import Route

    from .catalogue import Compiled, UserMap
    from .modbus import ModbusLink
    from .web import IsgWebClient

log = logging.getLogger("gridtap.isg")

#: The seed's pages: INFO system + heat pump, DIAGNOSE status, commissioning, contractor,
#: ISG debug, and the hidden EM-DEBUG-INFOS. One string, so --help shows ids, not 1,0,1,1,...
DEFAULT_PAGES = "1,0 1,1 2,0 2,1 2,3 2,4 4,7"
_PAGE_RE = re.compile(r"^\d{1,2}(,\d{1,2}){1,2}$")
_HOST_PORT = re.compile(r"^[^:]+:\d+$")
#: Whose heat pump it is (Home Assistant's device): Modbus cannot tell a Tecalor from a Stiebel Eltron;
#: the web UI can (its status icons, page.BRANDS), see ``_collect_web``.
MANUFACTURER = "Stiebel Eltron"


@dataclass
class IsgConfig:
    mode: Literal["web", "modbus"] = setting("web", help="web: scrape the ISG's web UI; modbus: its Modbus TCP service")
    url: str | None = setting(None, help="the ISG's web UI, e.g. http://192.168.1.50 (web mode; also ISG_URL)")
    username: str | None = setting(None, help="web UI user (also ISG_USER); unset when the ISG has no login")
    password: Secret | None = setting(None, help="web UI password (also ISG_PASSWORD)")
    host: str | None = setting(None, help="Modbus host (default: the host of url)")
    modbus_port: int = setting(502, help="Modbus TCP port")
    unit_id: int = setting(1, help="Modbus unit id (the ISG uses 1)")
    controller: Literal["auto", "wpm", "lwz"] = setting(
        "auto", help="register map: auto (from the controller id in input 5002), wpm or lwz")
    pages: str | list[str] = setting(DEFAULT_PAGES, help="web pages (?s= ids) fetched each time, in order: "
                                     "a YAML list, or one string with spaces or ; between ids ('1,0 1,1 4,7')")
    section_prefix: bool = setting(False, help="web: names are <section>_<label> (the seed's "
                                               "--metricsWithSectionPrefix; also METRICS_WITH_SECTION_PREFIX)")
    skip_circuit2: bool = setting(False, help="leave out heating circuit 2 (hk2 / HK 2; also SKIP_CIRCUIT_2)")
    session_rollover: int = setting(60, help="web: log in afresh after this many page loads")
    timeout: Duration = setting(Duration(10.0), help="time to wait for one page or Modbus answer")
    mapping_file: str | None = setting(None, help="modbus: extra/overriding registers in isg_exporter's "
                                                  "modbus-mapping.yaml format")
    sensor_faults: bool = setting(True, help="modbus: LWZ -60/-50 °C replacement values are sensor faults "
                                             "(isg_sensor_fault), not temperatures")
    sgready_enable: bool = setting(False, help="take SGReady requests: POST /webhooks/alertmanager on the "
                                               "/metrics listener; the state is re-asserted every sgready_reassert")
    sgready_switch_on: bool = setting(False, help="switch SG Ready on (holding 4001 = 1) before writing the inputs")
    sgready_reassert: Duration | None = setting(
        None, help="re-write a requested SGReady state (other than 2, normal: the ISG falls back to it) this often "
                   "even when no revert is seen (a revert seen on the read-back is re-written at once); default 5m "
                   "where the inputs read back, 30s where they read as unavailable; 30s or more (each write is a "
                   "flash write)")


class IsgPlugin(Plugin):
    name: ClassVar[str] = "isg"
    description: ClassVar[str] = "Stiebel Eltron / Tecalor heat pumps via the ISG web UI or Modbus TCP, with SGReady"
    config_schema: ClassVar[type] = IsgConfig
    simulator_module = ".simulator"
    metrics = m.ALL
    default_interval: ClassVar[float] = 60.0  # the seed's; the ISG is slow and single-threaded
    default_listen: ClassVar[str | None] = "127.0.0.1:8080"  # the seed's port (it listened on every address)
    commands: ClassVar[dict[str, Command]] = {
        "sgready": Command("set or read a heat pump's SGReady state over Modbus (gridtap sgready set 3)",
                           "gridtap_plugins.isg.sgready_cli", top_level=True),
    }
    env_aliases: ClassVar[dict[str, str]] = {
        "ISG_URL": "url", "ISG_USER": "username", "ISG_PASSWORD": "password", "SKIP_CIRCUIT_2": "skip_circuit2",
        "METRICS_WITH_SECTION_PREFIX": "section_prefix", "METRICS_SECTION_PREFIX": "section_prefix",
    }

    def __init__(self, config: IsgConfig, device: str) -> None:
        super().__init__(config, device)
        where = f"{self.name}/{device}" if device != self.name else self.name
        if config.url is not None:
            check_http_url(f"{where}.url", config.url, "http://192.168.1.50")
            parts = urllib.parse.urlsplit(config.url)
            if parts.query or parts.fragment:
                raise ConfigError(f"{where}.url", "give the ISG's address without ?s= or # (the pages are "
                                                  "the pages setting), e.g. http://192.168.1.50")
        if config.mode == "web" and config.url is None:
            raise ConfigError(f"{where}.url", "missing value: give the ISG's address, e.g. http://192.168.1.50 "
                                              "(or ISG_URL)")
        check_port(f"{where}.modbus_port", config.modbus_port)
        if not 0 <= config.unit_id <= 247:
            raise ConfigError(f"{where}.unit_id", f"must be 0-247, got {config.unit_id}")
        if config.session_rollover < 1:
            raise ConfigError(f"{where}.session_rollover", "must be 1 or more")
        if config.sgready_reassert is not None and float(config.sgready_reassert) < MIN_REASSERT:
            raise ConfigError(f"{where}.sgready_reassert", f"must be {MIN_REASSERT:g}s or more, got "
                                                           f"{float(config.sgready_reassert):g}s: each re-assertion is "
                                                           "a write to the ISG's flash memory")
        self.pages = _page_ids(f"{where}.pages", config.pages)
        self.modbus_host = _modbus_host(f"{where}.host", config.host) if config.host else \
            urllib.parse.urlsplit(config.url).hostname if config.url else None
        if (config.mode == "modbus" or config.sgready_enable) and not self.modbus_host:
            raise ConfigError(f"{where}.host", "missing value: give the ISG's host (or url)")
        self.user_map: UserMap | None = None
        if config.mapping_file:
            from .catalogue import load_user_map

            self.user_map = load_user_map(config.mapping_file)
        self._web: IsgWebClient | None = None
        self._link: ModbusLink | None = None
        self._link_lock = threading.Lock()
        self._compiled: Compiled | None = None
        self._native: Any = None
        self.unsupported: set[str] = set()
        self._block_state: dict[str, str] = {}
        self.known_flags: dict[str, set[tuple[str, str]]] = {}
        #: The web UI's brand once a page showed a status icon (Stiebel Eltron or Tecalor).
        self.brand: str | None = None
        #: Keeps a requested SGReady state (None unless sgready_enable).
        self.sgready: SgreadyKeeper | None = None
        if config.sgready_enable:
            reassert = float(config.sgready_reassert) if config.sgready_reassert is not None else None
            self.sgready = SgreadyKeeper(device, self.link, self.sgready_family, switch_on=config.sgready_switch_on,
                                         reassert=reassert)

    # --- connections -----------------------------------------------------------------------------
    def web(self) -> IsgWebClient:
        if self._web is None:
            from .web import IsgWebClient

            assert self.config.url is not None
            password = self.config.password.reveal() if self.config.password is not None else None
            self._web = IsgWebClient(self.config.url, self.config.username, password,
                                     timeout=float(self.config.timeout), rollover=self.config.session_rollover)
        return self._web

    def link(self) -> ModbusLink:
        with self._link_lock:
            if self._link is None:
                from .modbus import ModbusLink

                if not log.isEnabledFor(logging.DEBUG):  # it logs every refused connect at ERROR
                    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
                assert self.modbus_host is not None
                self._link = ModbusLink(self.modbus_host, self.config.modbus_port, self.config.unit_id,
                                        float(self.config.timeout))
            return self._link

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.sgready is not None:
            self.sgready.start()

    def close(self) -> None:
        if self.sgready is not None:
            self.sgready.close()
        if self._web is not None:
            self._web.close()
        if self._link is not None:
            self._link.close()

    # --- collection --------------------------------------------------------------------------------
    def collect(self) -> list[Metric]:
        if self.config.mode == "web":
            return self._collect_web()
        return self._collect_modbus()

    def _collect_web(self) -> list[Metric]:
        from . import page as pages

        client = self.web()
        result = client.fetch(self.pages)
        if not result.pages:
            raise DeviceError("; ".join(dict.fromkeys(result.failed.values())) or "no page could be read")
        opts = pages.Options(self.config.section_prefix, self.config.skip_circuit2)
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], Metric] = {}
        seen: dict[str, set[tuple[str, str]]] = {}
        for page_id, text in result.pages.items():
            parsed = pages.parse_page(text)
            self.brand = parsed.brand or self.brand
            r = pages.page_metrics(parsed.rows, opts, where=f"?s={page_id}")
            for s in r.metrics:
                samples[(s.name, s.labels)] = s  # a later page wins, as a later row does
            seen[page_id] = r.flags
        for s in pages.flag_metrics(seen, self.known_flags):
            key = (s.name, s.labels)
            if key not in samples or s.value:  # a flag shown on any page is on
                samples[key] = s
        out = list(samples.values())
        out += [m.WEB_PAGE_OK(1 if p in result.pages else 0, page=p) for p in self.pages]
        out.append(m.WEB_INFO(1, manufacturer=self.brand or MANUFACTURER))
        for page_id, why in result.failed.items():
            log.debug("?s=%s: %s", page_id, why)
        return out

    def _compile(self, link: ModbusLink) -> tuple[Compiled, Any]:
        from .catalogue import DEFAULT_ID, NOT_AVAILABLE, Options, compile_map, family_of, load, wire_address
        from .modbus import BlockError

        if self._compiled is not None:
            return self._compiled, self._native
        try:
            cid: int | None = link.read("input", wire_address(5002), 1)[0]
        except BlockError as e:
            if self.config.controller == "auto":
                raise DeviceError(f"{e}: cannot read the controller id; set controller: wpm or lwz") from None
            cid = None
        family = self.config.controller
        if family == "auto":
            assert cid is not None
            if cid == NOT_AVAILABLE:
                raise DeviceError("the controller id in input 5002 reads 0x8000 (not available): set controller: "
                                  "wpm or lwz")
            found = family_of(cid)
            if found is None:
                raise DeviceError(f"controller id {cid} (input 5002) is none gridtap knows (103, 104, 551: LWZ; "
                                  "390, 391, 449: WPM): set controller: wpm or lwz")
            family = found
        if cid is None or family_of(cid) != family:
            cid = DEFAULT_ID[family]
        user = self.user_map
        if user is not None and user.family != family:
            raise DeviceError(f"mapping_file is a {user.family} map but the controller is {family.upper()} (id {cid}); "
                              f"set controller: {user.family} to use it anyway")
        opts = Options(skip_circuit2=self.config.skip_circuit2, sensor_faults=self.config.sensor_faults)
        compiled = compile_map(load(family), cid, opts, user)
        self._compiled, self._native = compiled, compiled.build()
        log.info("%s: controller id %d: the %s register map (%d reads)", link.where, cid, family.upper(),
                 len(compiled.reads))
        return compiled, self._native

    def _collect_modbus(self) -> list[Metric]:
        from .modbus import BlockError

        link = self.link()
        compiled, native = self._compile(link)
        out: list[Metric] = []
        ok: dict[str, bool] = {}
        errors: list[str] = []
        for i, read in enumerate(compiled.reads):
            if read.block in self.unsupported:
                continue
            try:
                registers = link.read(read.table, read.wire, read.count)
            except BlockError as e:
                if e.code == 2 and read.optional:
                    self.unsupported.add(read.block)
                    log.info("%s: optional block %s (%s %d-%d) is not supported by this firmware "
                                "(exception 02); not read again", link.where, read.block, read.table, read.wire,
                                read.wire + read.count - 1)
                    continue
                ok[read.block] = False
                errors.append(str(e))
                self._note_block(read.block, str(e))
                continue
            out += native.metrics(i, registers)
            ok.setdefault(read.block, True)
        if not any(ok.values()):
            raise DeviceError("; ".join(dict.fromkeys(errors)) or "no register block could be read")
        for block, good in ok.items():
            if good:
                self._note_block(block, "")
        out += [m.BLOCK_OK(int(v), block=b) for b, v in ok.items()]
        name = self._controller_name(compiled)
        out.append(m.CONTROLLER_INFO(1, family=compiled.family, controller=name, id=str(compiled.controller),
                                     manufacturer=MANUFACTURER, model=name))
        return out

    def _note_block(self, block: str, error: str) -> None:
        """Log a block's failure once, and its recovery."""
        before = self._block_state.get(block, "")
        if error and error != before:
            log.warning("block %s: %s", block, error)
        elif not error and before:
            log.info("block %s: readable again", block)
        self._block_state[block] = error

    @staticmethod
    def _controller_name(compiled: Compiled) -> str:
        from .catalogue import load

        return load(compiled.family).controllers.get(compiled.controller, str(compiled.controller))

    def diagnostics(self) -> list[Metric]:
        out: list[Metric] = []
        if self._compiled is not None:
            optional = dict.fromkeys(r.block for r in self._compiled.reads if r.optional)
            out += [m.BLOCK_SUPPORTED(0 if b in self.unsupported else 1, block=b) for b in optional]
        if self._web is not None:
            out.append(m.WEB_LOGINS(self._web.logins))
        if self.sgready is not None:
            out += self.sgready.diagnostics()
        return out

    def status(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"mode": self.config.mode}
        if self._web is not None:
            facts["web"] = {"url": self._web.shown, "logins": self._web.logins, "pages": list(self.pages)}
        if self._compiled is not None:
            facts["controller"] = {"family": self._compiled.family, "id": self._compiled.controller,
                                   "name": self._controller_name(self._compiled)}
            facts["unsupported_blocks"] = sorted(self.unsupported)
        if self.sgready is not None:
            facts["sgready"] = self.sgready.status()
        return facts

    # --- SGReady -------------------------------------------------------------------------------------
    def sgready_family(self) -> str | None:
        if self._compiled is not None:
            return self._compiled.family
        return None if self.config.controller == "auto" else self.config.controller

    def routes(self) -> Sequence[Route]:
        if self.sgready is None:
            return ()
        from gridtap.routes import Route

        return (Route("POST", "/webhooks/alertmanager", self.sgready.alertmanager, acts=True, max_body=256 * 1024,
                      description="Alertmanager webhook: firing target=active -> SGReady 3, target=inactive -> 1, "
                                  "resolved -> 2"),)

    # --- the seed's flag spellings ------------------------------------------------------------------
    @classmethod
    def rewrite_argv(cls, argv: list[str]) -> list[str]:
        """``run isg --url X --user U --password P --skipCircuit2 --mode webscraping --port 8080 ...``
        (isg_exporter's flags) into gridtap's."""
        out: list[str] = []
        items = list(argv)
        has_output = any(a == "--output" or a.startswith("--output=") for a in items)
        i = 0
        flags = {"--user": "--username", "--browserRollover": "--session-rollover", "--modbusSlaveId": "--unit-id",
                 "--loglevel": "--log-level"}
        switches = {"--skipCircuit2": ("--skip-circuit2", "true"),
                    "--metricsWithSectionPrefix": ("--section-prefix", "true"), "--debug": ("--log-level", "debug")}
        levels = {"warn": "warning", "trace": "debug", "fatal": "error", "panic": "error"}
        while i < len(items):
            arg = items[i]
            name, eq, value = arg.partition("=")
            if name in switches:
                out += list(switches[name])
            elif name in flags or name in ("--mode", "--port"):
                if not eq:
                    value = items[i + 1] if i + 1 < len(items) else ""
                    i += 1
                if name == "--mode":
                    out += ["--mode", "web" if value == "webscraping" else value]
                elif name == "--port":
                    out += ["--listen", f"0.0.0.0:{value}"] + ([] if has_output else ["--output", "prometheus"])
                elif name == "--loglevel":
                    out += ["--log-level", levels.get(value, value)]
                else:
                    out += [flags[name], value]
            else:
                out.append(arg)
            i += 1
        return out

    # --- gridtap decode isg FILE ----------------------------------------------------------------------
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--section-prefix", action="store_true", help="page: names are <section>_<label>")
        parser.add_argument("--skip-circuit2", action="store_true", help="page: leave out heating circuit 2")
        parser.add_argument("--controller", choices=("wpm", "lwz"), default="wpm",
                            help="register dump: the register map (default wpm)")
        parser.add_argument("--table", choices=("input", "holding"), default="input",
                            help="register dump: which registers (default input)")
        parser.add_argument("--address", type=int, default=None, metavar="N",
                            help="register dump: the manual (1-based) address of its first register; without it "
                                 "the file is an ISG web page")

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        if getattr(args, "address", None) is None:
            return _decode_page(data, args)
        from .catalogue import DEFAULT_ID, compile_range, load

        family = getattr(args, "controller", "wpm")
        compiled = compile_range(load(family), DEFAULT_ID[family], args.table, args.address, len(data) // 2)
        native = compiled.build()
        from gridtap._native import modbus_registers

        registers = modbus_registers(data)
        out: list[Metric] = []
        offset = 0
        for i, read in enumerate(compiled.reads):
            out += native.metrics(i, registers[offset: offset + read.count])
            offset += read.count
        return out

    def __repr__(self) -> str:
        return f"IsgPlugin(device={self.device!r}, mode={self.config.mode!r})"


def _page_ids(key: str, value: str | list[str] | None) -> list[str]:
    """The page ids of the ``pages`` setting, in order, each once."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(key, f"missing value: give page ids, e.g. {DEFAULT_PAGES!r}")
    ids = re.split(r"[\s;]+", value.strip()) if isinstance(value, str) else [str(p).strip() for p in value]
    ids = list(dict.fromkeys(p for p in ids if p))
    bad = [p for p in ids if not _PAGE_RE.match(p)]
    if bad and all(p.isdigit() for p in bad):  # YAML read [1,0, 1,1] as the numbers 1, 0, 1, 1
        raise ConfigError(key, f"page ids look like 1,1 (got {bad}): quote each id in YAML: [\"1,0\", \"1,1\"], "
                               "or give one string: \"1,0 1,1\"")
    if bad or not ids:
        raise ConfigError(key, f"page ids look like 1,1 or 4,7,1; got {bad or 'none'}")
    return ids


def _modbus_host(key: str, host: str) -> str:
    """The ``host`` setting as pymodbus takes it (an IPv6 literal without its brackets)."""
    text = host.strip()
    if "://" in text:
        raise ConfigError(key, f"a host name or address, not a URL: {text.split('://', 1)[1].split('/')[0]!r}")
    if _HOST_PORT.match(text):
        raise ConfigError(key, f"{text!r}: the port goes in modbus_port; host is just the name or address")
    if not text or any(c.isspace() or c in "/?#@" for c in text):
        raise ConfigError(key, f"expected a host name or address, e.g. 192.168.1.50; got {host!r}")
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _decode_page(data: bytes, args: argparse.Namespace) -> list[Metric]:
    from . import page as pages

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if "<" not in text[:4096]:
        raise InputError("isg: not an HTML page (for a Modbus register dump give --address)")
    parsed = pages.parse_page(text)
    if parsed.login:
        raise InputError("isg: this page is the ISG's login screen (saved while logged out): no values")
    if not parsed.tables:
        raise InputError("isg: no ISG value table (form#werte table.info) in this page: is it an ISG page?")
    opts = pages.Options(getattr(args, "section_prefix", False), getattr(args, "skip_circuit2", False))
    result = pages.page_metrics(parsed.rows, opts)
    flags = pages.flag_metrics({"page": result.flags}, {})
    return result.metrics + flags
