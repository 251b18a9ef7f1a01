"""gridtap: home-energy devices to Telegraf, collectd, Prometheus and MQTT.

The framework knows no device. Plugins (``gridtap.plugins`` entry points) turn a device's
bytes into :class:`gridtap.model.Metric` values; outputs turn metrics into wire formats.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gridtap")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
