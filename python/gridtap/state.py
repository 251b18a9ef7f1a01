"""Where a plugin keeps what must survive a restart (a login token, a discovery cache, a
rate-limit ledger), and how it writes it: privately and atomically.

Default folder: ``$GRIDTAP_STATE_DIR/<plugin>``, else ``$XDG_STATE_HOME/gridtap/<plugin>``,
else ``~/.local/state/gridtap/<plugin>``; created with mode 0700. A plugin setting (``cache_dir``,
``state_file``) may name another place.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError


def default_dir(plugin: str) -> Path:
    root = os.environ.get("GRIDTAP_STATE_DIR")
    if root:
        return Path(root) / plugin
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) / "gridtap" if xdg else Path.home() / ".local" / "state" / "gridtap"
    return base / plugin


def ensure_dir(path: str | Path, key: str) -> Path:
    """``path`` as a usable private folder (created 0700); ConfigError naming ``key`` otherwise."""
    p = Path(path).expanduser()
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(key, f"cannot create {p}: {e.strerror}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(key, f"{p} is not writable")
    return p


def write_private(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, readable by the owner only (0600).

    A crash leaves the old file or the new one, never half of either.
    """
    p = Path(path)
    _remove_orphans(p)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: A temporary file this old is an orphan (its writer was killed between write and rename),
#: not one being written now.
ORPHAN_AGE = 3600.0


def _remove_orphans(path: Path) -> None:
    """Delete ``.<name>.*`` temporary files a killed writer left beside ``path``, so state
    folders stay bounded however often a process dies mid-write."""
    try:
        leftovers = list(path.parent.glob(f".{glob.escape(path.name)}.*"))
    except OSError:
        return
    for tmp in leftovers:
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > ORPHAN_AGE:
                tmp.unlink()


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``; None when it is missing or unreadable or not JSON (a state file
    is a cache: a broken one is started afresh, not a reason to stop)."""
    try:
        return json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


def write_json(path: str | Path, obj: Any) -> None:
    write_private(path, (json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n").encode())
