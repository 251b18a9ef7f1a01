"""gridtap: home-energy devices to Telegraf, collectd, Prometheus and MQTT.

The framework knows no device. Plugins (``gridtap.plugins`` entry points) turn a device's
bytes into :class:`gridtap.model.Metric` values; outputs turn metrics into wire formats.
"""

from __future__ import annotations


def _installed_version() -> str | None:
    """The ``Version:`` of the first ``gridtap-*.dist-info`` on ``sys.path``: the lookup
    ``importlib.metadata.version`` makes, without its imports (~20-30 ms and ~5 MB at start-up,
    which ``gridtap --version`` and every execd child would pay)."""
    import os
    import sys

    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("gridtap-") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry or ".", name, "METADATA"), encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("Version:"):
                                return line.split(":", 1)[1].strip()
                            if not line.strip():
                                break  # end of the headers
                except OSError:
                    continue
    return None


def __getattr__(name: str) -> str:
    # The version is looked up on first use: most of a process never needs it.
    if name == "__version__":
        found = _installed_version()
        if found is None:  # an egg, a zip, or anything else: ask the standard library
            from importlib.metadata import PackageNotFoundError, version

            try:
                found = version("gridtap")
            except PackageNotFoundError:  # running from a source tree that was never installed
                found = "0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'gridtap' has no attribute {name!r}")
