"""Typed configuration: YAML < environment < flags, one-line errors naming the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from gridtap import config
from gridtap.config import Duration, Secret, setting
from gridtap.errors import ConfigError


@dataclass(frozen=True)
class Schema:
    port: str = setting(help="serial port")
    timeout: Duration = setting(Duration(1.0), help="timeout")
    retries: int = setting(3, help="retries")
    ratio: float = setting(0.5, help="ratio")
    enabled: bool = setting(True, help="on")
    mode: Literal["a", "b"] = setting("a", help="mode")
    password: Secret | None = setting(None, help="password")
    blocks: list[str] = setting(["S?", "S2"], help="blocks")


def build(*layers):
    return config.build(Schema, "dev", *layers)


def test_precedence_yaml_env_flags():
    yaml_layer = ({"port": "/dev/a", "retries": 5, "timeout": "2s"}, False)
    env_layer = (config.env_layer("dev", Schema, {"GRIDTAP_DEV_RETRIES": "7", "GRIDTAP_DEV_PORT": "/dev/b"}), True)
    flag_layer = ({"port": "/dev/c"}, True)
    cfg = build(yaml_layer, env_layer, flag_layer)
    assert (cfg.port, cfg.retries, cfg.timeout) == ("/dev/c", 7, 2.0)


@pytest.mark.parametrize(("layer", "message"), [
    (({"port": "x", "colour": 1}, False), "config error: dev.colour: unknown key"),
    (({"port": "x", "retries": "three"}, False), "config error: dev.retries: expected an integer, got 'three'"),
    (({"port": "x", "retries": True}, False), "config error: dev.retries: expected an integer, got True"),
    (({"port": "x", "mode": "c"}, False), "config error: dev.mode: expected one of 'a', 'b', got 'c'"),
    (({"port": "x", "timeout": "soon"}, False),
     "config error: dev.timeout: expected a duration like 10s or 500ms, got 'soon'"),
    (({"retries": 1}, False), "config error: dev.port: missing required value"),
    (({"port": "x", "enabled": "maybe"}, True), "config error: dev.enabled: expected true or false, got 'maybe'"),
    (({"port": "x", "blocks": [1, {}]}, False), "config error: dev.blocks[1]: expected a string, got {}"),
])
def test_errors_name_the_key_in_one_line(layer, message):
    with pytest.raises(ConfigError) as e:
        build(layer)
    assert str(e.value) == message
    assert "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_text_values_are_coerced():
    cfg = build(({"port": "x", "retries": "0x10", "ratio": "2.5", "enabled": "off", "blocks": "S?, HN",
                  "timeout": "500ms"}, True))
    assert (cfg.retries, cfg.ratio, cfg.enabled, cfg.blocks, cfg.timeout) == (16, 2.5, False, ["S?", "HN"], 0.5)


def test_secret_never_shows_itself():
    cfg = build(({"port": "x", "password": "hunter2"}, False))
    assert cfg.password.reveal() == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.password) and "hunter2" not in f"{cfg}"
    with pytest.raises(ConfigError) as e:
        build(({"port": "x", "password": ["hunter2"]}, False))
    assert "hunter2" not in str(e.value)


@pytest.mark.parametrize(("text", "seconds"), [("10", 10), ("2.5", 2.5), ("500ms", 0.5), ("5m", 300), ("1h", 3600)])
def test_durations(text, seconds):
    assert Duration.parse(text) == seconds


def test_yaml_errors_are_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line \d"):
        config.load_yaml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config.load_yaml(tmp_path / "list.yaml")


@pytest.mark.parametrize("value", [0, -1, "0s", float("nan"), float("inf"), "31d", 99999999999999999999, 1e9])
def test_durations_must_be_positive_finite_and_at_most_30_days(value):
    with pytest.raises(ValueError, match="greater than zero|at most 30 days|expected a duration"):
        Duration.parse(value)


@pytest.mark.parametrize(("seconds", "shown"), [(10, "10s"), (0.5, "500ms"), (300, "5m"), (3600, "1h"), (2.5, "2.5s")])
def test_durations_show_as_written(seconds, shown):
    assert str(Duration.parse(seconds)) == shown


@pytest.mark.parametrize(("layer", "message"), [
    (({"port": "x", "timeout": -1}, False), "config error: dev.timeout: must be greater than zero, got -1"),
    (({"port": "x", "timeout": float("nan")}, False), "config error: dev.timeout: must be greater than zero, got nan"),
    (({"port": "x", "ratio": float("nan")}, False), "config error: dev.ratio: expected a finite number, got nan"),
    (({"port": "x", "ratio": "inf"}, True), "config error: dev.ratio: expected a finite number, got 'inf'"),
    (({"port": "x", "blocks": "S?"}, False), "config error: dev.blocks: expected a list of strings, got 'S?'"),
])
def test_numbers_are_finite_and_list_errors_read_well(layer, message):
    with pytest.raises(ConfigError) as e:
        build(layer)
    assert str(e.value) == message


def test_yaml_duplicate_keys_and_non_utf8_are_config_errors(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("devices:\n  - plugin: intergas\n    port: /dev/ttyUSB0\n    port: /dev/ttyUSB1\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: key 'port' given twice \(line 4\)"):
        config.load_yaml(twice)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("interval: 10s\nname: k\u00e9tel\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(line 2\)"):
        config.load_yaml(latin1)


def test_env_typo_is_refused_with_a_suggestion() -> None:
    from dataclasses import dataclass

    from gridtap import config
    from gridtap.errors import ConfigError

    @dataclass
    class Schema:
        port: str = config.setting("x")

    with pytest.raises(ConfigError) as e:
        config.env_layer("intergas", Schema, {"GRIDTAP_INTERGAS_PROT": "/dev/ttyUSB0"})
    assert str(e.value) == ("config error: GRIDTAP_INTERGAS_PROT: unknown setting for intergas "
                            "(did you mean GRIDTAP_INTERGAS_PORT?)")
    assert config.env_layer("intergas", Schema, {"GRIDTAP_INTERGAS_PORT": "/dev/x", "OTHER": "1"}) == {"port": "/dev/x"}


def test_env_aliases_of_the_replaced_exporter_and_gridtap_wins() -> None:
    from dataclasses import dataclass

    from gridtap import config

    @dataclass
    class Schema:
        url: str = config.setting("")

    env = {"ISG_URL": "http://old"}
    assert config.env_layer("isg", Schema, env, {"ISG_URL": "url"}) == {"url": "http://old"}
    env["GRIDTAP_ISG_URL"] = "http://new"
    assert config.env_layer("isg", Schema, env, {"ISG_URL": "url"}) == {"url": "http://new"}


def test_the_interval_has_an_environment_variable_too() -> None:
    from gridtap import devices, plugin

    cls = plugin.load("intergas")
    spec = devices.device_spec(cls, {"port": "/dev/ttyUSB0"}, where="intergas", default_interval=None,
                               env={"GRIDTAP_INTERGAS_INTERVAL": "30s"})
    assert spec.interval == 30.0
    spec = devices.device_spec(cls, {"port": "/dev/ttyUSB0"}, where="intergas", default_interval=None,
                               env={"GRIDTAP_INTERGAS_INTERVAL": "30s"}, flags={"interval": "5s"})
    assert spec.interval == 5.0  # a flag still wins
    with pytest.raises(ConfigError, match="intergas.interval"):
        devices.device_spec(cls, {"port": "/dev/ttyUSB0"}, where="intergas", default_interval=None,
                            env={"GRIDTAP_INTERGAS_INTERVAL": "soon"})


def test_short_secrets_are_masked_where_they_stand_alone_only() -> None:
    from gridtap import logs

    logs.register_secret("pw")
    logs.register_secret("correct horse battery")
    try:
        assert logs.redact("login as admin with pw failed: /nonexistent-dir (pw)") == \
            "login as admin with *** failed: /nonexistent-dir (***)"
        assert logs.redact("url http://u:correct horse battery@host") == "url http://u:***@host"
    finally:
        logs._SECRETS.difference_update({"pw", "correct horse battery"})


def test_a_secret_in_the_wrong_key_is_not_echoed_by_that_keys_error() -> None:
    """``token: ${TOKEN}`` and ``region: ${TOKEN}`` (a paste into the wrong key): the error
    about region is printed redacted, because the secret is known before any key is judged."""
    from gridtap import logs

    @dataclass
    class Schema:
        token: Secret = setting()
        region: Literal["eu", "us"] = setting("eu")
        names: list[str] = setting([])

    pasted = "f3a1c9e07b2d4e6fa8b0c2d4e6f8a0b2"
    for wrong in ({"region": pasted}, {"names": pasted}):
        with pytest.raises(ConfigError) as e:
            config.build(Schema, "dev", ({"token": pasted, **wrong}, False))
        assert pasted in str(e.value)  # what the error says...
        assert pasted not in logs.redact(str(e.value))  # ...and what gridtap prints


@pytest.mark.parametrize(("text", "expected"), [("127.0.0.1:8080", ("127.0.0.1", 8080)), (":0", ("dflt", 0)),
                                                 ("[::1]:9100", ("::1", 9100)), ("host:65535", ("host", 65535))])
def test_host_port_is_split_at_the_last_colon(text: str, expected: tuple[str, int]) -> None:
    assert config.parse_host_port("listen", text, "dflt") == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:http", "host:65536", "host:-1"])
def test_a_bad_host_port_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigError, match=r"--tcp: expected HOST:PORT with a port 0-65535, got"):
        config.parse_host_port("--tcp", text, "127.0.0.1")
