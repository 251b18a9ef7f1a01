"""``${VAR}`` in YAML string values comes from the environment (config.load_yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridtap import config
from gridtap.errors import ConfigError


def test_string_values_are_expanded_keys_and_other_types_are_not(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GROWATT_TOKEN", "abc123")
    monkeypatch.setenv("PLANT", "1185")
    p = tmp_path / "c.yaml"
    p.write_text("devices:\n  - plugin: growatt\n    token: ${GROWATT_TOKEN}\n    plant_id: \"${PLANT}\"\n"
                 "    name: x-${PLANT}-y\n    note: 'cost $${HOME} and $5'\n    list: [a, '${PLANT}', 3]\n"
                 "    ${PLANT}: key-untouched\n    n: 7\n")
    loaded = config.load_yaml(p)
    dev = loaded["devices"][0]
    assert dev["token"] == "abc123" and dev["plant_id"] == "1185" and dev["name"] == "x-1185-y"
    assert dev["note"] == "cost ${HOME} and $5"  # $${ is a literal ${, a lone $ stays
    assert dev["list"] == ["a", "1185", 3] and dev["n"] == 7
    assert dev["${PLANT}"] == "key-untouched"


def test_an_unset_variable_is_one_config_error_naming_it_and_the_key(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    p = tmp_path / "c.yaml"
    p.write_text("devices:\n  - plugin: growatt\n    token: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError) as e:
        config.load_yaml(p)
    msg = str(e.value)
    assert "NOT_SET_ANYWHERE" in msg and "devices[0].token" in msg and "\n" not in msg
    assert e.value.exit_code == 2


def test_expansion_is_not_recursive():
    assert config.expand_env({"a": "${X}"}, "f", {"X": "${Y}", "Y": "no"}) == {"a": "${Y}"}
