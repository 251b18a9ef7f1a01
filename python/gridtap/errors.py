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


class InputError(GridtapError):
    """A file or capture given on the command line cannot be used. Exits 2."""

    exit_code = 2


class OutputError(GridtapError):
    """An output could not deliver (server unreachable, refused the data, bad credentials)."""
