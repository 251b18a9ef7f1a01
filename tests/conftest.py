"""Shared test helpers.

Real captured data lives outside the project, in ``../shared/fixtures`` (override with
GRIDTAP_FIXTURES). Tests read it in place and skip, saying why, where it is absent; the
project never copies it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridtap.captures import read_hex_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("GRIDTAP_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_path(*parts: str) -> Path:
    """Path of a shared fixture, or skip the test with the reason."""
    p = FIXTURES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared fixture {p} is absent (set GRIDTAP_FIXTURES to the shared/fixtures folder)")
    return p


def read_hex(path: Path) -> bytes:
    """Bytes of a fixture ``.hex`` file (``#`` comments, hex pairs), via the product's reader."""
    return read_hex_file(path)


@pytest.fixture(scope="session", autouse=True)
def private_state_dir() -> Iterator[Path]:
    """Every state file gridtap writes (tokens, caches, the Pushgateway ledger) goes to a
    temporary folder of this test session, never to the user's ~/.local/state; the
    environment variable reaches every gridtap process the tests start, too."""
    path = Path(tempfile.mkdtemp(prefix="gridtap-test-state-"))
    old = os.environ.get("GRIDTAP_STATE_DIR")
    os.environ["GRIDTAP_STATE_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("GRIDTAP_STATE_DIR", None)
        else:
            os.environ["GRIDTAP_STATE_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)
