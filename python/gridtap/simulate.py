"""Running a device simulator in the foreground, the same way for every plugin.

``gridtap simulate DEVICE`` starts the plugin's simulator, prints ``ready <address>`` on
stdout once it listens (tests and scripts wait for that line), and runs until SIGTERM or
SIGINT, or until the simulator ends by itself; it then stops the simulator and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from . import console


class Simulator(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def run_in_foreground(sim: Simulator, address: Callable[[], str],
                      running: Callable[[], bool] = lambda: True) -> int:
    """Start ``sim``, announce ``ready <address()>``, wait for a signal or ``running()`` to end.

    Returns 0, or 1 with one line on stderr when the simulator cannot start (port in use...).
    """
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            sim.start()
        except (OSError, TimeoutError) as e:
            print(f"gridtap: simulator cannot start: {e}", file=sys.stderr)
            return 1
        console.write(f"ready {address()}\n")
        while not done.wait(0.2) and running():
            pass
        return 0
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
