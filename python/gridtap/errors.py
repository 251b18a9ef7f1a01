"""Errors a user can cause or meet. Each prints as one line; none is a traceback."""

from __future__ import annotations


class GridtapError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 1


class ConfigError(GridtapError):
    """Bad configuration: unknown key, wrong type, missing value. Exits 2."""

    exit_code = 2

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config error: {key}: {problem}")


class DeviceError(GridtapError):
    """The device could not be read this time (unreachable, timeout, bad reply)."""


class Waiting(DeviceError):
    """Nothing to report yet, and that is normal: a device that pushes on its own schedule has
    not sent its first reading since we started. Not "down": no ``<plugin>_up`` sample is
    published (so a "device down" alert does not fire on every restart), diagnostics are, and
    it is logged once at info level. The plugin decides how long waiting may last (then it
    raises a plain :class:`DeviceError`)."""


class InputError(GridtapError):
    """A file or capture given on the command line cannot be used. Exits 2."""

    exit_code = 2


class OutputError(GridtapError):
    """An output could not deliver (server unreachable, refused the data, bad credentials)."""
