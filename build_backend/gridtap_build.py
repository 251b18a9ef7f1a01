"""PEP 517 backend: maturin, plus one step maturin cannot do.

The repository keeps device plugins in the top-level ``plugins/`` folder (one folder per
device, as Telegraf does). maturin copies that folder into the wheel as ``plugins/``; a
top-level package of that name would clash with anything else called ``plugins``, so this
wrapper renames it to ``gridtap_plugins/`` inside the finished wheel and rewrites RECORD.
Everything else is maturin's own hook, unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

import maturin
from maturin import *  # noqa: F403 - re-export every other PEP 517 hook

_SRC, _DST = "plugins/", "gridtap_plugins/"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _rename_plugins(wheel_path: str) -> None:
    tmp = wheel_path + ".tmp"
    with zipfile.ZipFile(wheel_path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        lines = []
        for info in src.infolist():
            if info.filename == record_name:
                continue
            data = src.read(info)
            name = info.filename
            if name.startswith(_SRC):
                name = _DST + name[len(_SRC):]
            if "__pycache__" in name:
                continue
            info.filename = name
            dst.writestr(info, data)
            lines.append(_record_line(name, data))
        lines.append(f"{record_name},,")
        dst.writestr(record_name, "\n".join(lines) + "\n")
    os.replace(tmp, wheel_path)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # noqa: D103
    name = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    _rename_plugins(os.path.join(wheel_directory, name))
    return name
