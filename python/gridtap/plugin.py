"""The contract between the framework and a device plugin, and plugin discovery.

A plugin is a class registered in the ``gridtap.plugins`` entry-point group. The framework
creates one instance per configured device and calls :meth:`Plugin.collect` on that
device's own thread; it never looks inside the metrics it gets back.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import ConfigError
from .model import Metric, MetricDef

if TYPE_CHECKING:
    from .routes import Route

ENTRY_POINT_GROUP = "gridtap.plugins"


@dataclass(frozen=True)
class Command:
    """A plugin's own subcommand: ``gridtap <plugin> <name>`` (``gridtap <name>`` with ``top_level``).

    ``module`` is imported only when the command is used (or its ``--help`` is built); it
    defines ``add_arguments(parser)`` and ``run(args) -> int`` (the exit code). Errors are
    :class:`gridtap.errors.GridtapError` subclasses, printed as one line by the CLI.
    """

    help: str
    module: str
    top_level: bool = False


class Plugin(ABC):
    """One device family.

    Class attributes describe the family; an instance talks to one device.

    * ``name``: the metric prefix and line-protocol measurement (``intergas``).
    * ``config_schema``: a dataclass of the device's settings (see :mod:`gridtap.config`).
    * ``metrics``: every :class:`MetricDef` the plugin can emit (docs, HA discovery, lints).
    * ``default_interval``: seconds between collections unless the user says otherwise.
    * ``once_wait``: seconds ``run --once`` waits for a first good collection.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    config_schema: ClassVar[type]
    metrics: ClassVar[Sequence[MetricDef]] = ()
    default_interval: ClassVar[float] = 10.0
    #: How long ``run --once`` keeps trying for a first good collection. Polled devices
    #: answer at once (0); devices that push on their own schedule need to be waited for.
    once_wait: ClassVar[float] = 0.0
    #: ``HOST:PORT`` of ``/metrics`` for ``run <plugin> --output prometheus`` when neither
    #: ``--listen`` nor the config file says (the port of the exporter this plugin replaces).
    default_listen: ClassVar[str | None] = None
    #: Subcommands of this plugin (``gridtap powerwall fetchcert``); see :class:`Command`.
    commands: ClassVar[Mapping[str, Command]] = {}
    #: Labels that tell physical devices apart inside one configured device (a proxy that
    #: sees a meter and an inverter; a cloud account with several inverters). Outputs that
    #: keep one group per device (Pushgateway) keep one per value of these too.
    subdevice_labels: ClassVar[tuple[str, ...]] = ()
    #: Environment variables of the replaced exporter -> setting key (``{"ISG_URL": "url"}``);
    #: ``GRIDTAP_<PLUGIN>_<KEY>`` still works and wins.
    env_aliases: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: Any, device: str) -> None:
        self.config = config
        self.device = device
        self._updated: Callable[[], None] = _nothing

    # --- readings the device pushes ------------------------------------------------------
    def set_update_callback(self, callback: Callable[[], None]) -> None:
        """Framework side: what :meth:`updated` calls (a collection now, outputs at once)."""
        self._updated = callback

    def updated(self) -> None:
        """Plugin side: call it (from any thread) when a new reading has arrived, so the outputs
        get it now instead of at the next interval. Polled plugins never need it."""
        self._updated()

    def diagnostics(self) -> list[Metric]:
        """Samples about gridtap's side of the device (counters of a proxy, API error counts,
        rate-limit state) that stay published while the device is down or not heard from yet;
        :meth:`collect` must not return them too. Called after every collection."""
        return []

    def routes(self) -> Sequence[Route]:
        """HTTP routes this device adds to the ``/metrics`` listener (see :mod:`gridtap.routes`)."""
        return ()

    # --- configuration written for the exporter this plugin replaces ----------------------
    @classmethod
    def rewrite_argv(cls, argv: list[str]) -> list[str]:
        """``run <plugin> ...`` arguments as the replaced exporter spelt them (``--config.file``),
        rewritten to gridtap's. Called with the whole argument list; default: unchanged."""
        return argv

    @classmethod
    def adapt_config(cls, loaded: dict[str, Any], path: str) -> dict[str, Any]:
        """A config file in the replaced exporter's own format, turned into gridtap's (a
        ``devices:`` list); a gridtap file comes back unchanged. Raise ConfigError for keys
        that fit neither."""
        return loaded

    def start(self) -> None:  # noqa: B027 - optional hook
        """Begin background work (a listening proxy, say). Polled devices need nothing."""

    @abstractmethod
    def collect(self) -> list[Metric]:
        """Read the device once and return its samples.

        Blocking is fine: each device has its own thread. Raise
        :class:`gridtap.errors.DeviceError` when the device cannot be read; the framework
        then reports it down and drops its series, so nothing stale is served.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release ports, sockets and threads."""

    def status(self) -> dict[str, Any]:
        """Extra facts for ``/status`` (firmware, rate-limit windows...). Never secrets."""
        return {}

    # --- `gridtap decode PLUGIN FILE` -------------------------------------------------
    @classmethod
    def add_decode_arguments(cls, parser: argparse.ArgumentParser) -> None:  # noqa: B027
        """Add plugin-specific options of ``gridtap decode``."""

    @classmethod
    def decode(cls, data: bytes, args: argparse.Namespace) -> list[Metric]:
        """Decode a capture given on the command line into samples."""
        raise NotImplementedError(f"{cls.name} has no capture decoder")

    # --- `gridtap simulate DEVICE` and `gridtap demo` ------------------------------------
    #: The plugin's simulator module, relative to the plugin's package (``".simulator"``). It
    #: defines ``add_arguments(parser)``, ``run(args) -> int`` and, for ``gridtap demo``,
    #: ``demo_setup()``; it is imported only by those two commands, never by a collecting process.
    simulator_module: ClassVar[str | None] = None

    @classmethod
    def _simulator(cls) -> Any:
        import importlib

        if cls.simulator_module is None:
            raise NotImplementedError(f"{cls.name} has no simulator")
        return importlib.import_module(cls.simulator_module, cls.__module__.rpartition(".")[0])

    @classmethod
    def add_simulate_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add plugin-specific options of ``gridtap simulate`` (the simulator module's)."""
        if cls.simulator_module is not None:
            cls._simulator().add_arguments(parser)

    @classmethod
    def simulate(cls, args: argparse.Namespace) -> int:
        """Run the device simulator in the foreground until interrupted; return exit code."""
        return int(cls._simulator().run(args))

    @classmethod
    def demo(cls) -> AbstractContextManager[dict[str, Any]] | None:
        """A running simulator and the settings that read it, for ``gridtap demo``.

        A context manager that starts the simulator on loopback and yields the device settings
        (as a config mapping); None when the plugin has no demo.
        """
        if cls.simulator_module is None:
            return None
        setup = getattr(cls._simulator(), "demo_setup", None)
        return setup() if setup is not None else None


def _nothing() -> None:
    pass


def names() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def declared() -> dict[str, str]:
    """``{name: "module:attr"}`` of the ``gridtap.plugins`` entry points of the distributions
    installed in ``sys.path`` directories, read from their ``entry_points.txt`` as
    importlib.metadata reads them (the first distribution of a name wins), without importing
    it: importlib.metadata costs ~25 ms and ~5 MB at start-up, and every ``gridtap run`` needs
    one plugin. Anything it cannot see (a zipped egg) is still found by :func:`load`."""
    import os
    import re
    import sys

    found: dict[str, str] = {}
    seen: set[str] = set()
    for entry in sys.path:
        try:
            children = os.listdir(entry or ".")
        except OSError:
            continue
        for child in children:
            stem, dot, kind = child.rpartition(".")
            if not dot or kind not in ("dist-info", "egg-info"):
                continue
            dist = re.sub(r"[-_.]+", "_", stem.partition("-")[0]).lower()
            if dist in seen:
                continue
            seen.add(dist)
            try:
                with open(os.path.join(entry or ".", child, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            section = None
            for line in text.splitlines():
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line[1:-1].strip()
                elif section == ENTRY_POINT_GROUP and "=" in line:
                    name, _, value = line.partition("=")
                    found.setdefault(name.strip(), value.strip())
    return found


def _load_entry(value: str) -> Any:
    """What ``EntryPoint.load()`` returns for ``module:attr.attr``."""
    import importlib
    import re

    m = re.match(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$", value)
    if m is None:
        raise ConfigError("plugin", f"malformed entry point {value!r}")
    obj: Any = importlib.import_module(m["module"])
    for attr in filter(None, (m["attr"] or "").split(".")):
        obj = getattr(obj, attr)
    return obj


def load(name: str) -> type[Plugin]:
    """The plugin class called ``name``; ConfigError listing the known ones otherwise."""
    value = declared().get(name)
    if value is None:  # not in a plain directory on sys.path: ask importlib.metadata
        from importlib.metadata import entry_points

        value = next((ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name), None)
    if value is None:
        raise ConfigError("plugin", f"unknown plugin {name!r} (installed: {', '.join(names()) or 'none'})")
    cls = _load_entry(value)
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise ConfigError("plugin", f"{value} is not a gridtap Plugin")
    return cls
