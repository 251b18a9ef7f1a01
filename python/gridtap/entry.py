"""The ``gridtap`` console script: guard the process first, then hand over to :mod:`gridtap.cli`.

Kept tiny and free of imports, so a Ctrl-C while the rest loads ends quietly with 130 and a
closed stdout is noticed before anything could reuse its file descriptor.
"""

from __future__ import annotations


def main() -> int:
    from . import console

    console.interrupted_quietly()
    console.guard_standard_streams()
    from .cli import main as cli_main

    return cli_main()
