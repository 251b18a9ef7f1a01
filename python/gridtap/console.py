"""stdout and stderr of the ``gridtap`` command: every write error is one line, never a traceback.

stdout carries the product (line protocol, PUTVAL, JSON, a simulator's ``ready`` line). When it
cannot take it (closed at start, a full disk, a reader that went away) the command ends with
``gridtap: cannot write to stdout: <reason>`` and exit code 1; stdout is then pointed at
/dev/null so Python's own flush at exit does not add a second complaint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import Any

from .errors import GridtapError


class StdoutError(GridtapError):
    """stdout cannot take our output. ``quiet`` for a reader that went away on purpose
    (``gridtap plugins | head -1``): the command then ends without a word."""

    quiet = False


class _ClosedStdout:
    """Stands in for a stdout that was closed when gridtap started (``cmd >&-``)."""

    encoding = "utf-8"

    def _fail(self, *_args: Any) -> Any:
        raise OSError(errno.EBADF, "stdout is closed")

    write = flush = _fail

    @property
    def buffer(self) -> _ClosedStdout:
        return self

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1


def guard_standard_streams() -> None:
    """Make sure fds 0-2 are open before anything else opens a file: a closed stdout would
    otherwise be reused by the next open (a serial port!) and our output would go there."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 1:
                sys.stdout = _ClosedStdout()  # type: ignore[assignment]
            elif fd == 0 and sys.stdin is None:
                sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
            elif fd == 2 and sys.stderr is None:
                sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def interrupted_quietly() -> None:
    """Ctrl-C before a command installs its own handling ends the process with 130, quietly."""

    def handler(*_args: Any) -> None:
        raise SystemExit(130)

    signal.signal(signal.SIGINT, handler)


def stdout_error(e: BaseException) -> StdoutError:
    """The one-line error for a failed stdout write. stdout is pointed at /dev/null from here
    on, so the interpreter's own flush at exit has nothing left to complain about."""
    with contextlib.suppress(OSError):
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    with contextlib.suppress(Exception):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for the rest of the process
    if isinstance(e, BrokenPipeError) or getattr(e, "errno", None) == errno.EPIPE:
        err = StdoutError("cannot write to stdout: the reader went away (broken pipe)")
        err.quiet = True
        return err
    reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return StdoutError(f"cannot write to stdout: {reason}")


def write(data: bytes | str) -> None:
    """Write to stdout and flush; :class:`StdoutError` when stdout cannot take it."""
    if not data:
        return
    try:
        out = sys.stdout.buffer
        out.write(data.encode() if isinstance(data, str) else data)
        out.flush()
    except (OSError, ValueError, AttributeError) as e:
        raise stdout_error(e) from None


def flush() -> None:
    """Flush what ``print`` buffered; :class:`StdoutError` when that fails."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError) as e:
        raise stdout_error(e) from None
