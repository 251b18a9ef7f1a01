"""``gridtap``: the command Telegraf's execd, collectd's exec and people run.

Every user mistake ends as one line on stderr and exit code 2; a device that cannot be
read ends ``--once`` with one line and exit code 1. Tracebacks only with ``--log-level debug``.

A process imports what its command uses when it uses it: ``--version`` builds no plugin's
parser, ``run PLUGIN`` loads that one plugin (not every installed one), and the encoders,
the listener and the push clients are imported by the modes that write with them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import console, logs
from .errors import ConfigError, GridtapError, InputError

if TYPE_CHECKING:
    from . import devices, plugin, runtime, sinks
    from .schedule import Collector

log = logging.getLogger("gridtap")

OUTPUTS = ("influx", "collectd", "prometheus", "pushgateway", "mqtt")


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on a bad flag."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"gridtap: {message} (see --help)\n")

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse swallows write errors; --help into a full disk must be said, not lost.
        if message and (file is None or file is sys.stdout):
            console.write(message)
        elif message:
            super()._print_message(message, file)


class _Version(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> None:
        from . import __version__

        parser._print_message(f"gridtap {__version__}\n", sys.stdout)
        parser.exit()


def _version_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action=_Version)


def _common_options(p: argparse.ArgumentParser) -> None:
    _version_option(p)
    p.add_argument("--log-format", choices=["auto", "text", "logfmt", "json", "telegraf"], default=None,
                   help="log style on stderr (auto: telegraf prefixes for --output influx, else text)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                   help="log level (default info)")


def _push_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pushgateway", metavar="URL",
                   help="Pushgateway URL (or config key pushgateway.url; more settings in the config file "
                        "or GRIDTAP_PUSHGATEWAY_<KEY>)")
    p.add_argument("--mqtt", metavar="HOST[:PORT]",
                   help="MQTT broker (or config key mqtt.host; username, password, prefixes in the config file "
                        "or GRIDTAP_MQTT_<KEY>)")


def _plugin_flags(p: argparse.ArgumentParser, cls: type[plugin.Plugin]) -> None:
    import dataclasses

    group = p.add_argument_group(f"{cls.name} settings (also GRIDTAP_{cls.name.upper()}_<KEY> or the config file)")
    for f in dataclasses.fields(cls.config_schema):
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        shown = "required" if required else _shown_default(default)
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", metavar="VALUE",
                           help=f"{f.metadata.get('help', '')} ({shown})")


def _shown_default(value: Any) -> str:
    """A default as a user would write it on the command line (``1s``, ``on``, ``S?,S2``)."""
    if value is None:
        return "default: unset"
    if isinstance(value, bool):
        return f"default: {'on' if value else 'off'}"
    if isinstance(value, list):
        return f"default: {','.join(map(str, value))}" if value else "default: none"
    return f"default: {value}"


def _plugin_classes() -> list[type[plugin.Plugin]]:
    """Every installed plugin class."""
    from . import plugin

    out = []
    for name in plugin.names():
        try:
            out.append(plugin.load(name))
        except Exception as e:  # a broken third-party plugin must not break the others
            print(f"gridtap: plugin {name} failed to load: {e}", file=sys.stderr)
    return out


def build_parser(classes: Sequence[type[plugin.Plugin]], command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone: a process parsing ``run PLUGIN``
    need not build (and import) every plugin's simulator and decoder options."""
    top = _Parser(prog="gridtap", description="Read home-energy devices; feed Telegraf, collectd, Prometheus.")
    _version_option(top)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    if command in (None, "run"):
        run = sub.add_parser("run", help="collect one device and write one output (execd, exec, /metrics)",
                             description="Collect one device and write its metrics to one output.")
        _version_option(run)
        run_sub = run.add_subparsers(dest="plugin", metavar="PLUGIN", required=True, parser_class=_Parser)
        for cls in classes:
            p = run_sub.add_parser(cls.name, help=cls.description, description=cls.description)
            p.add_argument("--output", choices=OUTPUTS, default="influx",
                           help="influx: line protocol on stdout (Telegraf execd); collectd: PUTVAL on stdout "
                                "(collectd exec); prometheus: serve /metrics; pushgateway: push to --pushgateway; "
                                "mqtt: publish to --mqtt with Home Assistant discovery (default influx)")
            p.add_argument("--once", action="store_true",
                           help="collect one batch, print it and exit (0 ok, 1 device unreadable)")
            p.add_argument("--wait", metavar="DURATION",
                           help=f"with --once: keep trying this long for a first good collection "
                                f"(default {cls.once_wait:g}s)")
            p.add_argument("--signal", choices=["STDIN", "none"], default="none",
                           help="influx only: STDIN = collect on each newline (Telegraf signal = \"STDIN\"); "
                                "none = collect every --interval (default none)")
            p.add_argument("--interval", metavar="DURATION", help="time between collections, e.g. 10s")
            p.add_argument("--listen", metavar="HOST:PORT", help="prometheus only: address of /metrics")
            p.add_argument("--config", metavar="FILE", help="YAML config file")
            p.add_argument("--name", metavar="DEVICE", help="device name (label device=); picks the device in --config")
            p.add_argument("--uint", action="store_true",
                           help="influx only: write integers above the int64 range with the u suffix (InfluxDB 2, "
                                "Telegraf); without it they are clamped, as influxd 1.x rejects u")
            _push_options(p)
            _common_options(p)
            _plugin_flags(p, cls)

    if command in (None, "serve"):
        serve = sub.add_parser("serve", help="collect many devices in one process and serve /metrics",
                               description="Collect every device of a config file; serve Prometheus /metrics.")
        serve.add_argument("--config", metavar="FILE", required=True, help="YAML config file with a devices list")
        serve.add_argument("--listen", metavar="HOST:PORT", help="address of /metrics (default 127.0.0.1:9870)")
        _push_options(serve)
        _common_options(serve)

    if command in (None, "decode"):
        dec = sub.add_parser("decode", help="decode a captured frame, block or page",
                             description="Decode a capture (hex text or binary) into metrics.")
        _version_option(dec)
        dec_sub = dec.add_subparsers(dest="plugin", metavar="PLUGIN", required=True, parser_class=_Parser)
        for cls in classes:
            p = dec_sub.add_parser(cls.name, help=cls.description)
            p.add_argument("file", nargs="?", default="-", help="capture file, or - for stdin (default -)")
            p.add_argument("--format", choices=["influx", "prometheus", "json"], default="json",
                           help="output format (default json)")
            p.add_argument("--input", choices=["auto", "hex", "binary"], default="auto",
                           help="how to read the file: hex text (# comments allowed), raw bytes, or guess (default)")
            _common_options(p)
            cls.add_decode_arguments(p)

    if command in (None, "simulate"):
        sim = sub.add_parser("simulate", help="run a device simulator on loopback",
                             description="Serve a device's real protocol on loopback, from generated data or captures.")
        _version_option(sim)
        sim_sub = sim.add_subparsers(dest="plugin", metavar="DEVICE", required=True, parser_class=_Parser)
        for cls in classes:
            p = sim_sub.add_parser(cls.name, help=cls.description)
            _common_options(p)
            cls.add_simulate_arguments(p)

    if command in (None, "demo"):
        demo = sub.add_parser("demo", help="simulators feeding /metrics and line protocol; no hardware needed",
                              description="Start every plugin's simulator, collect from them, serve /metrics "
                                          "and print line protocol.")
        demo.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9870", help="address of /metrics")
        demo.add_argument("--interval", metavar="DURATION", default="5s", help="time between collections")
        demo.add_argument("--duration", metavar="DURATION", help="stop after this long (default: until Ctrl-C)")
        _common_options(demo)

    if command is None:
        _plugin_commands(sub, classes)

    if command in (None, "plugins"):
        plugins_cmd = sub.add_parser("plugins", help="list installed plugins")
        _version_option(plugins_cmd)
    return top


def _plugin_commands(sub: Any, classes: Sequence[type[plugin.Plugin]]) -> None:
    """``gridtap <plugin> <command>`` and top-level commands that plugins declare."""
    import importlib

    for cls in classes:
        nested = {n: c for n, c in cls.commands.items() if not c.top_level}
        for name, command in cls.commands.items():
            if command.top_level:
                p = sub.add_parser(name, help=command.help, description=command.help)
                _common_options(p)
                p.set_defaults(plugin_command=(cls.name, command.module))
                importlib.import_module(command.module).add_arguments(p)
        if nested:
            group = sub.add_parser(cls.name, help=f"{cls.name} tools: {', '.join(nested)}",
                                   description=f"{cls.description}: tools")
            _version_option(group)
            inner = group.add_subparsers(dest="tool", metavar="TOOL", required=True, parser_class=_Parser)
            for name, command in nested.items():
                p = inner.add_parser(name, help=command.help, description=command.help)
                _common_options(p)
                p.set_defaults(plugin_command=(cls.name, command.module))
                importlib.import_module(command.module).add_arguments(p)


# --- helpers --------------------------------------------------------------------------
def _duration(flag: str, text: str, allow_zero: bool = False) -> float:
    from . import config

    try:
        return float(config.Duration.parse(text, allow_zero=allow_zero))
    except ValueError as e:
        raise ConfigError(flag, str(e)) from None


def _setup_logs(args: argparse.Namespace, common: devices.Common | None = None) -> None:
    style = args.log_format or (common.log_format if common else "auto")
    # `--once` answers with its output and exit code; routine info lines would only be noise.
    quiet = "warning" if getattr(args, "once", False) else "info"
    level = args.log_level or (common.log_level if common else None) or quiet
    if style == "auto":
        style = "telegraf" if getattr(args, "output", None) == "influx" else "text"
    logs.setup(style, level)


def _flags(args: argparse.Namespace) -> dict[str, str]:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


# --- commands -------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from . import devices, plugin, runtime
    from .schedule import Collector

    cls = plugin.load(args.plugin)
    flags = _flags(args)
    if args.interval:
        flags["interval"] = args.interval
    if not args.config:
        _setup_logs(args)
    found = devices.load_device(cls, config_path=args.config, name=args.name, flags=flags)
    common, spec = found.common, found.spec
    if args.config:
        _setup_logs(args, common)
    # An interval the user chose beats collectd's COLLECTD_INTERVAL, as flags beat the environment.
    interval_explicit = bool(args.interval) or "interval" in found.raw or "interval" in found.loaded
    device = spec.create()
    collector = Collector(device, spec.interval)
    # A push output is set up (settings checked, broker connected) before the device is read,
    # so its mistakes are reported at start-up, not after a first collection.
    delivery = (_delivery(args, common, only=args.output, configured=[(cls.name, spec.name)],
                          invocation=f"run {cls.name} {os.path.abspath(args.config) if args.config else '-'}",
                          once_interval=spec.interval if args.once else None)
                if args.output in ("pushgateway", "mqtt") else None)
    stopper = runtime.Stopper().install()
    try:
        device.start()
        if args.once:
            return _once(collector, args, delivery, stopper, interval_explicit)
        if args.output == "influx":
            return runtime.run_influx([collector], args.signal, stopper, args.uint)
        if args.output == "collectd":
            return runtime.run_collectd([collector], spec.interval, stopper, interval_explicit)
        if delivery is not None:
            return runtime.run_push([collector], spec.interval, delivery, stopper)
        listen = args.listen or ("listen" in found.loaded and common.listen) or cls.default_listen or common.listen
        return runtime.serve_prometheus([collector], listen, stopper, webhook=common, metrics_path=common.metrics_path)
    finally:
        device.close()
        if delivery is not None:
            delivery.close()  # no-op where run_push closed it already


def _delivery(args: argparse.Namespace, common: devices.Common, only: str | None = None,
              configured: list[tuple[str, str]] | None = None, invocation: str = "",
              once_interval: float | None = None) -> sinks.Delivery:
    """The push outputs asked for: by ``--output`` (``only``) or, for serve, by config/flags.
    ``configured`` (devices), ``invocation`` and ``once_interval``: see :class:`sinks.MqttSink`."""
    from . import sinks

    out: list[sinks.Sink] = []
    if only == "pushgateway" or (only is None and (args.pushgateway or common.pushgateway is not None)):
        out.append(sinks.PushgatewaySink(sinks.pushgateway_settings(common.pushgateway, args.pushgateway)))
    if only == "mqtt" or (only is None and (args.mqtt or common.mqtt is not None)):
        out.append(sinks.MqttSink(sinks.mqtt_settings(common.mqtt, args.mqtt), configured or [], invocation,
                                  once_interval))
    return sinks.Delivery(out)


def _once(collector: Collector, args: argparse.Namespace, delivery: sinks.Delivery | None,
          stopper: runtime.Stopper, interval_explicit: bool) -> int:
    from . import runtime

    wait = _duration("--wait", args.wait, allow_zero=True) if args.wait else collector.plugin.once_wait
    # The outcome is said once, below; the scheduler's per-attempt warnings would repeat it.
    logging.getLogger("gridtap.schedule").setLevel(logging.ERROR)
    deadline = time.monotonic() + wait
    batch = collector.collect_once()
    while not batch.ok and time.monotonic() < deadline and not stopper.wait(0.5):
        batch = collector.collect_once()
    if stopper.exit_code:
        return stopper.exit_code  # Ctrl-C while waiting for the device
    if not batch.ok:
        if delivery is not None:
            # A push output must learn that the device is down, or the Pushgateway would keep
            # serving the last good values (and up 1) forever.
            for sink in delivery.sinks:
                with contextlib.suppress(GridtapError):
                    sink.publish([batch])
        print(f"gridtap: {collector.name}: {collector.state.error}", file=sys.stderr)
        return 1
    if args.output == "influx":
        from .outputs import lineproto

        console.write(lineproto.encode([batch], args.uint))
    elif args.output == "collectd":
        from .outputs import collectd

        host, interval = runtime.collectd_settings(collector.interval, interval_explicit)
        console.write(collectd.encode([batch], host, interval).encode())
    elif delivery is not None:
        for sink in delivery.sinks:
            sink.publish([batch])  # an OutputError here is the one line and exit 1
    else:
        from .outputs import exposition

        console.write(exposition.render([batch]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from . import config, devices, runtime, sinks
    from .schedule import Collector

    common = devices.load_common(config.load_yaml(args.config))
    _setup_logs(args, common)
    entries = devices.devices_from_file(common)
    if not entries:
        raise ConfigError("devices", f"no devices in {args.config}")
    specs = [devices.device_spec(cls, raw, where=where, default_interval=float(common.interval))
             for where, cls, raw in entries]
    delivery = _delivery(args, common, configured=[(s.plugin_cls.name, s.name) for s in specs],
                         invocation=f"serve {os.path.abspath(args.config)}")
    collectors = [Collector(s.create(), s.interval) for s in specs]
    stopper = runtime.Stopper().install()
    worker = sinks.DeliveryWorker(delivery) if delivery.sinks else None
    if worker is not None:
        for c in collectors:
            c.subscribe(worker.submit)  # every batch as it is collected: pushed readings go out at once
    try:
        for c in collectors:
            c.plugin.start()
        return runtime.serve_prometheus(collectors, args.listen or common.listen, stopper, webhook=common,
                                        metrics_path=common.metrics_path)
    finally:
        if worker is not None:
            worker.close()
        else:
            delivery.close()
        for c in collectors:
            c.plugin.close()


def cmd_decode(args: argparse.Namespace) -> int:
    import json

    from . import captures, plugin
    from .model import Batch

    _setup_logs(args)
    cls = plugin.load(args.plugin)
    data = captures.read_capture(args.file, args.input)
    from ._native import DecodeError

    try:
        metrics = cls.decode(data, args)
    except DecodeError as e:
        raise InputError(f"{args.file}: {e}") from None
    batch = Batch(cls.name, "capture", time.time_ns(), metrics)
    if args.format == "influx":
        from .outputs import lineproto

        console.write(lineproto.encode([batch]))
    elif args.format == "prometheus":
        from .outputs import exposition

        console.write(exposition.render([batch]))
    else:
        rows = [{"name": m.name, "labels": dict(m.labels), "value": m.value} for m in metrics]
        console.write((json.dumps(rows, indent=1) + "\n").encode())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from . import plugin

    _setup_logs(args)
    return plugin.load(args.plugin).simulate(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _setup_logs(args)
    duration = _duration("--duration", args.duration) if args.duration else None
    return run_demo(args.listen, _duration("--interval", args.interval), duration)


def cmd_plugins(_args: argparse.Namespace) -> int:
    console.write("".join(f"{cls.name:<12} {cls.description}\n" for cls in _plugin_classes()))
    return 0


def cmd_plugin_command(args: argparse.Namespace) -> int:
    import importlib

    _setup_logs(args)
    _plugin, module = args.plugin_command
    return int(importlib.import_module(module).run(args))


COMMANDS = {"run": cmd_run, "serve": cmd_serve, "decode": cmd_decode, "simulate": cmd_simulate,
            "demo": cmd_demo, "plugins": cmd_plugins}


def _rewrite_argv(argv: list[str], classes: Sequence[type[plugin.Plugin]]) -> list[str]:
    """Let a plugin translate the replaced exporter's spellings (``run powerwall --config.file X``)."""
    if len(argv) >= 2 and argv[0] == "run":
        for cls in classes:
            if cls.name == argv[1]:
                return list(cls.rewrite_argv(list(argv)))
    return argv


#: Commands whose parser needs no plugin class at all.
_PLUGINLESS = ("serve", "demo", "plugins", "--version")
#: Commands whose second word names the plugin.
_PER_PLUGIN = ("run", "decode", "simulate")


def _classes_for(argv: Sequence[str]) -> list[type[plugin.Plugin]]:
    """The plugin classes the parser for ``argv`` needs: none for ``--version``, ``serve``,
    ``demo`` and ``plugins``; the one named for ``run|decode|simulate PLUGIN``; all of them
    otherwise (``--help``, a plugin's own command, a mistake to explain)."""
    if argv and argv[0] in _PLUGINLESS:
        return []
    if len(argv) >= 2 and argv[0] in _PER_PLUGIN and not argv[1].startswith("-"):
        from . import plugin

        if argv[1] in plugin.declared():
            try:
                return [plugin.load(argv[1])]
            except Exception as e:  # the same one line _plugin_classes prints, then the parser's error
                print(f"gridtap: plugin {argv[1]} failed to load: {e}", file=sys.stderr)
                return []
    return _plugin_classes()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        classes = _classes_for(words)
        words = _rewrite_argv(words, classes)  # may turn `run powerwall --fetchcert` into a plugin command
        parser = build_parser(classes, words[0] if words and words[0] in COMMANDS else None)
        try:
            args = parser.parse_args(words)
        except SystemExit:
            console.flush()  # --help / --version text: a full disk is said, not ignored
            raise
        try:
            command = cmd_plugin_command if getattr(args, "plugin_command", None) else COMMANDS[args.command]
            code = command(args)
            console.flush()
            return code
        except GridtapError as e:
            if getattr(e, "quiet", False):
                return 0
            print(f"gridtap: {logs.redact(str(e))}", file=sys.stderr)
            if getattr(args, "log_level", None) == "debug":
                log.debug("details", exc_info=True)
            return e.exit_code
    except console.StdoutError as e:
        if e.quiet:
            return 0
        print(f"gridtap: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        console.stdout_error(BrokenPipeError())  # point stdout at /dev/null: no complaint at exit
        return 0
    except OSError as e:  # a print() of --help or `plugins` into a full disk or a closed stdout
        if e.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT, errno.EFBIG):
            print(f"gridtap: {console.stdout_error(e)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
