"""``gridtap powerwall fetchcert`` in-process against the simulator: what it writes and what it says."""

from __future__ import annotations

import argparse
import hashlib
import ssl

import pytest

from gridtap.errors import ConfigError
from gridtap_plugins.powerwall import fetchcert


def config_file(tmp_path, sim, cert_path):
    path = tmp_path / "pw.yaml"
    path.write_text(f"devices:\n  - plugin: powerwall\n    gateway_address: {sim.address}\n"
                    f"    login_password: x-unused\n    tls_cert_file: {cert_path}\n")
    return str(path)


def test_fetchcert_prints_the_whole_fingerprint_to_compare(sim, tmp_path, capsys):
    """The README says: compare the printed SHA-256 with your browser's. Eight of 32 bytes
    followed by '...' is not a fingerprint a browser shows, nor one worth trusting."""
    pem = tmp_path / "gw.pem"
    assert fetchcert.run(argparse.Namespace(config=config_file(tmp_path, sim, pem), name=None)) == 0
    der = ssl.PEM_cert_to_DER_cert(pem.read_text())
    assert der == ssl.PEM_cert_to_DER_cert(sim.certificate_pem)
    digest = hashlib.sha256(der).hexdigest().upper()
    full = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
    out = capsys.readouterr().out
    assert full in out and "..." not in out, out
    assert sim.counters()["hits"] == {}


def test_fetchcert_unwritable_target_names_the_device_key(sim, tmp_path):
    target = tmp_path / "missing-folder" / "gw.pem"
    with pytest.raises(ConfigError) as e:
        fetchcert.run(argparse.Namespace(config=config_file(tmp_path, sim, target), name=None))
    assert str(e.value).startswith("config error: powerwall/powerwall.tls_cert_file: cannot write"), e.value
