"""Real collectd runs ``gridtap run intergas --output collectd`` through its exec plugin.

collectd refuses to exec programs as root, so as root collectd execs ``nobody:nogroup``
running the world-readable venv from tests/setup-and-run.sh; as a normal user it execs that
user (see ``servers.collectd_exec_identity``). Values are read back from the csv plugin.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import servers

pytestmark = pytest.mark.integration


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def test_collectd_exec_writes_intergas_values(
    workdir: Path, intergas_fixed: tuple[str, dict[str, float]], collectd_identity: tuple[str, str]
) -> None:
    sim, temps = intergas_fixed
    exec_user, gridtap = collectd_identity
    argv = [gridtap, "run", "intergas", "--output", "collectd", "--port", sim, "--name", "boiler"]
    cd = servers.start_collectd(workdir, argv, exec_user, hostname="ci-host", interval=1)
    try:
        def enough() -> bool:
            vals = cd.csv_values()
            return (len(vals.get("intergas-boiler/gauge-up", [])) >= 2
                    and len(vals.get("intergas-boiler/temperature-flow", [])) >= 2)

        servers.wait_until(enough, 45, "intergas-boiler/gauge-up and temperature-flow in collectd's CSV", cd.proc)

        kids = servers.children_of(cd.proc.pid)
        assert kids, "collectd has no exec child"
        want_uid = 65534 if os.geteuid() == 0 else os.geteuid()
        assert {uid_of(k) for k in kids} == {want_uid}, "the exec child does not run as the configured user"

        vals = cd.csv_values()
        log = cd.proc.log()
    finally:
        cd.proc.stop()

    listing = "\n".join(sorted(vals))
    assert all(v == [1.0] for _t, v in vals["intergas-boiler/gauge-up"]), vals["intergas-boiler/gauge-up"]
    for sensor, value in temps.items():
        rows = vals.get(f"intergas-boiler/temperature-{sensor}")
        assert rows, f"no temperature-{sensor} among:\n{listing}"
        assert all(v == [pytest.approx(value, abs=0.005)] for _t, v in rows), (sensor, rows, value)
    assert len([k for k in vals if k.startswith("intergas-boiler/")]) >= 10, listing
    assert not [k for k in vals if not k.startswith("intergas-boiler/")], listing
    for bad in ("Unable to parse", "isn't defined", "Cowardly", "No such user", "Ignoring trailing garbage",
                "Traceback"):
        assert bad not in log, f"collectd log has {bad!r}:\n{log}"
