"""The MQTT output against a real Mosquitto that demands TLS and a password.

The broker's certificate comes from a throwaway CA made with ``openssl`` for this module;
the password file is made with ``mosquitto_passwd``. Checked: the right user, password and
CA get state through; a wrong password, an unverifiable certificate and an unreadable CA
file each give one clear line, and the password never appears in what gridtap prints.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gridtap.config import Secret
from gridtap.errors import OutputError
from gridtap.outputs.mqtt import MqttPublisher

from . import servers
from .conftest import needs
from .test_mqtt import P, Sub, boiler

pytestmark = pytest.mark.integration

USER = "gridtap"
PASSWORD = "s3cret-Hunter2"  # noqa: S105 - a test broker's password


@dataclass
class SecureBroker:
    port: int
    ca_file: Path
    proc: servers.Proc


def make_certificates(workdir: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns the CA file."""
    openssl = servers.require("openssl", "install the Debian package `openssl` (tests/setup-and-run.sh)")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=workdir, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gridtap test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
        "server.csr")
    (workdir / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days",
        "2", "-extfile", "san.ext", "-out", "server.crt")
    return workdir / "ca.crt"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    with needs():
        mosquitto = servers.require("mosquitto", "install the Debian package `mosquitto` (tests/setup-and-run.sh)")
        passwd = servers.require("mosquitto_passwd", "install the Debian package `mosquitto`")
        ca_file = make_certificates(workdir)
    subprocess.run([passwd, "-b", "-c", str(workdir / "passwd"), USER, PASSWORD], check=True, capture_output=True,
                   timeout=30)
    port = servers.free_port()
    conf = workdir / "mosquitto.conf"
    # `user root`: started as root, mosquitto would drop to user `mosquitto`, who cannot
    # read pytest's private temporary folder.
    conf.write_text(
        f"user root\npersistence false\nlog_dest stdout\nallow_anonymous false\npassword_file {workdir / 'passwd'}\n"
        f"listener {port} 127.0.0.1\ncafile {ca_file}\ncertfile {workdir / 'server.crt'}\n"
        f"keyfile {workdir / 'server.key'}\n"
    )
    proc = servers.spawn("mosquitto", [mosquitto, "-c", str(conf)], workdir)
    try:
        servers.wait_until(lambda: not servers.port_is_free(port), 10, f"mosquitto (TLS) on 127.0.0.1:{port}", proc,
                           interval=0.1)
        yield SecureBroker(port, ca_file, proc)
    finally:
        proc.stop()


def test_user_password_and_tls_deliver_state(secure_broker: SecureBroker) -> None:
    tag = uuid.uuid4().hex[:8]
    tp, dp = f"gt{tag}", f"ha{tag}"
    sub = Sub(secure_broker.port, [f"{tp}/#"], username=USER, password=PASSWORD, ca_file=secure_broker.ca_file)
    pub = MqttPublisher("127.0.0.1", secure_broker.port, topic_prefix=tp, discovery_prefix=dp, username=USER,
                        password=Secret(PASSWORD), ca_file=str(secure_broker.ca_file))
    pub.start()
    try:
        pub.publish([boiler()])
        state = json.loads(sub.wait("state over TLS", lambda _m: sub.last(f"{tp}/{P}/boiler/state")))
        assert (state["temperature_celsius_flow"], state["power_watts"]) == (47.5, 1234.5)
    finally:
        pub.stop()
        sub.close()


def test_wrong_password_is_refused_without_echoing_it(secure_broker: SecureBroker) -> None:
    wrong = "not-the-password-42"
    pub = MqttPublisher("127.0.0.1", secure_broker.port, username=USER, password=Secret(wrong),
                        ca_file=str(secure_broker.ca_file), connect_timeout=5)
    with pytest.raises(OutputError, match=r"broker refused the connection: Not authorized") as caught:
        pub.start()
    assert wrong not in str(caught.value)


def test_unverifiable_certificate_is_refused(secure_broker: SecureBroker) -> None:
    # The system's CAs never signed the test CA: the handshake must fail, not fall back to plain.
    pub = MqttPublisher("127.0.0.1", secure_broker.port, username=USER, password=Secret(PASSWORD), tls=True,
                        connect_timeout=5)
    with pytest.raises(OutputError, match=r"cannot connect: .*certificate verify failed"):
        pub.start()


def write_config(workdir: Path, broker: SecureBroker, ca_file: Path) -> Path:
    config = workdir / "gridtap.yaml"
    config.write_text(
        f"mqtt:\n  host: 127.0.0.1\n  port: {broker.port}\n  username: {USER}\n  ca_file: {ca_file}\n"
        "devices:\n  - plugin: intergas\n    name: boiler\n    port: socket://127.0.0.1:9\n"
    )
    return config


@pytest.mark.parametrize("ca", ["missing", "wrong password"])
def test_cli_errors_are_one_line_without_the_password(secure_broker: SecureBroker, workdir: Path, ca: str) -> None:
    ca_file = workdir / "nowhere.crt" if ca == "missing" else secure_broker.ca_file
    config = write_config(workdir, secure_broker, ca_file)
    secret = "wrong-pw-7f3a" if ca == "wrong password" else PASSWORD
    env = {**servers.gridtap_env(), "GRIDTAP_MQTT_PASSWORD": secret}
    res = subprocess.run([servers.gridtap_bin(), "run", "intergas", "--output", "mqtt", "--once", "--config",
                          str(config), "--log-level", "debug"], capture_output=True, text=True, env=env, timeout=60,
                         cwd=workdir)
    out = res.stdout + res.stderr
    assert secret not in out  # even at --log-level debug (which adds the error's traceback)
    said = [ln for ln in res.stderr.splitlines() if ln.startswith("gridtap: ")]
    assert len(said) == 1, out
    last = said[0]
    if ca == "missing":
        assert res.returncode == 2, out
        assert last == f"gridtap: config error: config.mqtt.ca_file: cannot read {ca_file}: No such file or directory"
    else:
        assert res.returncode == 1, out
        assert last.startswith(f"gridtap: mqtt 127.0.0.1:{secure_broker.port}: broker refused the connection: "
                               "Not authorized"), out
