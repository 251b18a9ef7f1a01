"""Modbus mode against the simulated ISG (pymodbus server): controller detection, the WPM and
LWZ maps, sentinels, an optional block that answers exception 02, transient exceptions, an
unreachable service, and a user map in the seed's format."""

from __future__ import annotations

import pytest

from gridtap import devices
from gridtap.errors import DeviceError
from gridtap_plugins.isg.modbus import BlockError, LinkError, ModbusLink
from gridtap_plugins.isg.plugin import IsgPlugin
from gridtap_plugins.isg.simulator import IsgSimulator
from tests.conftest import fixture_path

KWH = 3_600_000


def modbus_device(sim: IsgSimulator, **settings: object) -> IsgPlugin:
    raw = {"mode": "modbus", "host": "127.0.0.1", "modbus_port": sim.modbus_port_bound, "timeout": "3s", **settings}
    return devices.device_spec(IsgPlugin, raw, where="isg", default_interval=60).create()


def values(samples):
    return {(s.name, s.labels): s.value for s in samples}


def test_wpm_values_sentinels_and_controller_detection():
    with IsgSimulator(start_time=0.0) as sim:
        dev = modbus_device(sim)
        v = values(dev.collect())
        model = sim.model.values()
        assert v[("isg_outside_temperature_celsius", ())] == pytest.approx(model["outside"])
        assert v[("isg_heating_pressure_pascals", ())] == 121_000.0  # type 7: 1.21 bar
        assert isinstance(v[("isg_heating_pressure_pascals", ())], float)
        assert v[("isg_heat_joules_total", (("use", "heating"),))] == model["heat_heating_total"] * KWH
        assert v[("isg_operating_mode", ())] == "automatic"
        assert v[("isg_controller_info", (("controller", "WPM 3"), ("family", "wpm"), ("id", "390"),
                                          ("manufacturer", "Stiebel Eltron"), ("model", "WPM 3")))] == 1
        assert v[("isg_status_flag", (("flag", "hc1_pump"),))] == 1
        assert v[("isg_sgready_state", ())] == 2
        # 0x9000 at 1508: fixed-value operation off, no 3686.4 °C (nor -2867.2)
        assert v[("isg_fixed_value_operation_on", ())] == 0
        assert ("isg_fixed_value_operation_temperature_celsius", ()) not in v
        # booster DHW total: LOW readable, HIGH 0x8000: absent, never the bare LOW part
        assert ("isg_booster_heat_joules_total", (("use", "dhw"),)) not in v
        assert v[("isg_booster_heat_joules_total", (("use", "heating"),))] == 6184 * KWH
        # registers the device lacks (0x8000) are simply absent
        assert not any(name == "isg_heat_pump_flow_temperature_celsius" and ("heat_pump", "2") in labels
                       for name, labels in v)
        assert dev.status()["controller"] == {"family": "wpm", "id": 390, "name": "WPM 3"}
        dev.close()


def test_missing_optional_block_is_unsupported_and_the_rest_published():
    with IsgSimulator(missing={"energy_extended", "system_parameters_extended"}) as sim:
        dev = modbus_device(sim)
        first = values(dev.collect())
        assert ("isg_outside_temperature_celsius", ()) in first
        supported = {dict(m.labels)["block"]: m.value for m in dev.diagnostics()
                     if m.name == "isg_modbus_block_supported"}
        assert supported["energy_extended"] == 0 and supported["system_parameters_extended"] == 0
        assert supported["energy_management_extended"] == 1
        reads = sim.store.reads
        dev.collect()
        assert sim.store.reads == reads + 9  # 11 reads less the two unsupported blocks: not asked again
        assert dev.status()["unsupported_blocks"] == ["energy_extended", "system_parameters_extended"]


def test_a_transient_exception_fails_only_its_block():
    with IsgSimulator(busy={"energy"}) as sim:
        dev = modbus_device(sim)
        v = values(dev.collect())
        assert v[("isg_modbus_block_ok", (("block", "energy"),))] == 0
        assert v[("isg_modbus_block_ok", (("block", "system_values"),))] == 1
        assert ("isg_heat_joules_total", (("use", "heating"),)) not in v
        assert "energy" not in dev.unsupported  # 06 is transient: asked again next time
        sim.store.busy.clear()
        assert ("isg_heat_joules_total", (("use", "heating"),)) in values(dev.collect())


@pytest.mark.parametrize(("controller", "cid", "family", "name"), [
    ("wpm", 391, "wpm", "WPM 3i"), ("wpm", 449, "wpm", "WPMsystem"), ("lwz", 103, "lwz", None),
    ("lwz", 551, "lwz", None),
])
def test_every_controller_id_picks_its_map(controller, cid, family, name):
    with IsgSimulator(controller=controller, controller_id=cid) as sim:
        dev = modbus_device(sim)
        v = values(dev.collect())
        assert dev.status()["controller"]["family"] == family
        assert v[("isg_controller_id", ())] == cid
        if family == "lwz":
            assert v[("isg_fan_speed_hertz", (("air", "supply"),))] in (30.0, 40.0)
            assert v[("isg_compressor_starts_total", ())] >= 12345
        if cid == 391:
            assert ("isg_inverter_power_watts", (("inverter", "1"),)) not in v  # no extended block on a 3i
            assert len({r.block for r in dev._compiled.reads}) == 6


def test_forced_controller_family_and_unknown_ids():
    with IsgSimulator(controller="wpm", controller_id=4711) as sim:
        dev = modbus_device(sim)
        with pytest.raises(DeviceError, match="controller id 4711"):
            dev.collect()
        forced = modbus_device(sim, controller="wpm")
        assert ("isg_outside_temperature_celsius", ()) in values(forced.collect())
        assert forced.status()["controller"]["id"] == 390  # an unknown id: WPM 3's map


def test_an_unavailable_controller_id_says_so():
    with IsgSimulator(controller="lwz", controller_id=0x8000) as sim:  # some firmware: 5002 reads 0x8000
        with pytest.raises(DeviceError, match=r"input 5002 reads 0x8000 \(not available\): set controller: wpm or lwz"):
            modbus_device(sim).collect()
        assert ("isg_outside_temperature_celsius", ()) in values(modbus_device(sim, controller="lwz").collect())


def test_lwz_sensor_faults_are_faults_not_temperatures():
    with IsgSimulator(controller="lwz") as sim:
        sim.store.written[("input", 6)] = (-600) & 0xFFFF  # outside temperature: lead open (-60)
        dev = modbus_device(sim)
        v = values(dev.collect())
        assert ("isg_outside_temperature_celsius", ()) not in v
        assert v[("isg_sensor_fault", (("register", "7"),))] == 1
        assert v[("isg_sensor_fault", (("register", "12"),))] == 0
        raw = modbus_device(sim, sensor_faults=False)
        assert values(raw.collect())[("isg_outside_temperature_celsius", ())] == -60.0


def test_bus_status_is_signed_and_bits_come_from_their_own_register():
    with IsgSimulator(controller="lwz") as sim:
        sim.store.written[("input", 2002)] = 0xFFFE  # bus status -2 (error passive)
        sim.store.written[("input", 2000)] = 0  # operating status: nothing
        sim.store.written[("input", 2004)] = 0b10  # operating status 2: stove/fireplace
        v = values(modbus_device(sim).collect())
        assert v[("isg_bus_status", ())] == -2
        assert v[("isg_status_flag", (("flag", "stove_fireplace"),))] == 1
        assert v[("isg_status_flag", (("flag", "compressor"),))] == 0


def test_unreachable_service_is_one_line_then_backoff():
    link = ModbusLink("127.0.0.1", 1, timeout=2)
    with pytest.raises(LinkError) as e:
        link.read("input", 5001, 1)
    assert str(e.value) == "Modbus 127.0.0.1:1: cannot connect (connection refused)"
    with pytest.raises(LinkError, match="next try in"):
        link.read("input", 5001, 1)


def test_exception_codes_are_kept():
    with IsgSimulator() as sim:
        link = ModbusLink("127.0.0.1", sim.modbus_port_bound)
        with pytest.raises(BlockError) as e:
            link.read("input", 9000, 3)
        assert e.value.code == 2 and "exception 02 (illegal data address)" in str(e.value)
        link.close()


def test_a_user_map_in_the_seed_format_is_read_from_its_own_registers():
    mapping = fixture_path("isg", "isg_exporter", "modbus-mapping.yaml")
    with IsgSimulator(controller="lwz") as sim:
        dev = modbus_device(sim, mapping_file=str(mapping))
        v = values(dev.collect())
        model = sim.model.values()
        assert v[("isg_aussentemperatur_celsius", ())] == pytest.approx(model["outside"])
        assert v[("isg_wm_heizen_summe_joules", ())] == model["heat_heating_total"] * KWH
        assert ("isg_outside_temperature_celsius", ()) not in v  # replaced at its register
        assert ("isg_return_temperature_celsius", ()) not in v  # manual 13 is the seed's RUECKLAUFTEMP now
        assert v[("isg_ruecklauftemp_celsius", ())] == pytest.approx(model["return"])
        assert v[("isg_zuluft_ist_luefterdrehzahl_hertz", ())] == model["supply_fan"]  # manual 18, type 6 Hz
    with IsgSimulator(controller="wpm") as sim, pytest.raises(DeviceError, match="lwz map"):
        modbus_device(sim, mapping_file=str(mapping)).collect()


def test_a_simulator_that_cannot_listen_stops_at_once():
    """``gridtap simulate isg`` stops the simulator after a failed start: that must return
    (it used to wait forever for a web server that never started, deaf to SIGTERM)."""
    import socket
    import threading

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        sim = IsgSimulator(modbus_port=busy.getsockname()[1])
        with pytest.raises(OSError, match="Modbus 127.0.0.1"):
            sim.start()
        stopper = threading.Thread(target=sim.stop, daemon=True)
        stopper.start()
        stopper.join(5)
        assert not stopper.is_alive()


@pytest.mark.parametrize("cid", ["-5", "70000"])
def test_simulator_controller_ids_are_16_bit(cid):
    import argparse

    from gridtap.errors import ConfigError
    from gridtap_plugins.isg import simulator

    parser = argparse.ArgumentParser()
    simulator.add_arguments(parser)
    with pytest.raises(ConfigError, match="controller-id"):
        simulator.from_args(parser.parse_args(["--controller-id", cid]))
