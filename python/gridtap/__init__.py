"""gridtap: home-energy devices to Telegraf, collectd, Prometheus and MQTT.

The framework knows no device. Plugins (``gridtap.plugins`` entry points) turn a device's
bytes into :class:`gridtap.model.Metric` values; outputs turn metrics into wire formats.
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # The version is looked up on first use: importlib.metadata costs ~30 ms at start-up, and
    # most of a process never needs it.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("gridtap")
        except PackageNotFoundError:  # running from a source tree that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'gridtap' has no attribute {name!r}")
