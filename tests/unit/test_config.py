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
    (({"port": "x", "timeout": "soon"}, False), "config error: dev.timeout: expected a duration like 10s, got 'soon'"),
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
