"""The simulator's own gateway: a small home whose values move, written as the gateway writes them.

Per firmware generation the documents have the fields, nesting and key spelling of the real
captures of that generation (``shared/fixtures/powerwall``: 21.39.1 and 21.44 from a Powerwall 2,
23.28 / 23.44 from a Powerwall+ site with two batteries), with values of our own: solar
follows a compressed day, the home's load wobbles, the battery covers the difference, the
grid the rest, and the lifetime energy counters integrate all of it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

GENERATIONS = ("21.39", "21.44", "23.28", "23.44")
VERSIONS = {
    "21.39": ("21.39.1 7759c368", "7759c368f4e96326389d76703a8a2ae27f091c45"),
    "21.44": ("21.44 223a56cd", "223a56cd575b7b19bad7e12a4ebad0eb52d1f50a"),
    "23.28": ("23.28.2 27626f98", "27626f98a66cad5c665bbe1d4d788cdb3e94fd33"),
    "23.44": ("23.44.0 9064fc6a", "4064fc6a5b32425509f91f19556f2431cb7f6872"),
}
GATEWAY_DIN = "1232100-00-E--TG0000SIMULATED"
BLOCK_CAPACITY_WH = 13500.0


def _go_duration(seconds: float) -> str:
    """A Go duration string as /api/status writes it (``230h55m59.932079901s``)."""
    h, rest = divmod(seconds, 3600)
    mins, secs = divmod(rest, 60)
    return f"{int(h)}h{int(mins)}m{secs:.9f}s"


class HomeModel:
    """Power flows of a home with solar and batteries, integrated into lifetime counters.

    ``period`` seconds is one simulated day. ``clock`` is injectable for tests.
    """

    def __init__(self, blocks: int = 1, period: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.period = period
        self.blocks = blocks
        self.start = clock() - 0.35 * period  # start in the morning: solar rising, battery charging
        self._last = self.start
        self._lock = threading.Lock()
        self.capacity = BLOCK_CAPACITY_WH * blocks
        self.remaining = 0.45 * self.capacity
        self.energy = {  # Wh since the meters were installed
            "site_imported": 752045.9, "site_exported": 348463.5, "battery_imported": 642500.0,
            "battery_exported": 567740.0, "load_imported": 1595342.4, "solar_exported": 1269175.5,
            "solar_imported": 2655.5,
        }
        self.uptime_base = 831000.0
        self.flows = self._flows(self.start)

    def _flows(self, now: float) -> dict[str, float]:
        phase = ((now - self.start) / self.period) % 1.0
        solar = max(0.0, 4800.0 * math.sin(2 * math.pi * (phase - 0.25))) if 0.25 <= phase <= 0.75 else 0.0
        load = 900.0 + 350.0 * math.sin(2 * math.pi * phase * 3) + 120.0 * math.sin(2 * math.pi * phase * 17)
        limit = 5000.0 * self.blocks
        battery = max(-limit, min(limit, load - solar))  # > 0 discharging
        if battery > 0 and self.remaining <= 0.05 * self.capacity:
            battery = 0.0
        if battery < 0 and self.remaining >= self.capacity:
            battery = 0.0
        site = load - solar - battery
        return {"site": site, "battery": battery, "load": load, "solar": solar}

    def step(self) -> dict[str, float]:
        """Advance the integrals to now; the current flows (W)."""
        with self._lock:
            now = self.clock()
            dt_h = max(0.0, now - self._last) / 3600.0
            f = self.flows
            e = self.energy
            e["site_imported"] += max(f["site"], 0.0) * dt_h
            e["site_exported"] += max(-f["site"], 0.0) * dt_h
            e["battery_exported"] += max(f["battery"], 0.0) * dt_h
            e["battery_imported"] += max(-f["battery"], 0.0) * dt_h
            e["load_imported"] += f["load"] * dt_h
            e["solar_exported"] += f["solar"] * dt_h
            self.remaining = min(self.capacity, max(0.0, self.remaining - f["battery"] * dt_h))
            self._last = now
            self.flows = self._flows(now)
            return dict(self.flows)

    @property
    def percentage(self) -> float:
        return 100.0 * self.remaining / self.capacity

    @property
    def uptime(self) -> float:
        return self.uptime_base + (self._last - self.start)


class GatewayDocuments:
    """The JSON documents of one firmware generation, from a :class:`HomeModel`."""

    def __init__(self, generation: str = "21.44", model: HomeModel | None = None) -> None:
        if generation not in GENERATIONS:
            raise ValueError(f"unknown firmware generation {generation!r} (have {', '.join(GENERATIONS)})")
        self.generation = generation
        self.new = generation >= "23"
        self.model = model or HomeModel(blocks=2 if self.new else 1)
        self.serials = [f"TG12{i}000SIM{i:03d}" for i in range(self.model.blocks)]

    # one document per endpoint path (without /api/)
    def get(self, endpoint: str) -> Any:
        flows = self.model.step()
        builder = {
            "status": self.status, "system_status/soe": self.soe, "operation": self.operation,
            "sitemaster": self.sitemaster, "troubleshooting/problems": lambda: {"problems": []},
            "system_status": self.system_status, "system_status/grid_status": self.grid_status,
            "system_status/grid_faults": lambda: [], "meters/aggregates": lambda: self.aggregates(flows),
            "networks": self.networks, "site_info/site_name": self.site_name,
        }.get(endpoint)
        if builder is not None:
            return builder()
        if endpoint == "meters/site" and self.new:
            return [self._site_meter(flows)]
        if endpoint == "meters/solar" and self.new:
            return None  # the gateway's answer for "no solar meter"
        raise KeyError(endpoint)

    def status(self) -> dict[str, Any]:
        version, git_hash = VERSIONS[self.generation]
        doc: dict[str, Any] = {
            "din": GATEWAY_DIN, "start_time": "2024-03-11 09:12:41 +0800",
            "up_time_seconds": _go_duration(self.model.uptime), "is_new": False, "version": version,
            "git_hash": git_hash, "commission_count": 11 if not self.new else 0, "device_type": "teg",
        }
        if self.new:
            doc.update({"teg_type": "unknown", "sync_type": "v2.1", "cellular_disabled": False, "can_reboot": True})
        else:
            doc.update({"sync_type": "v2.1", "leader": "", "followers": None, "cellular_disabled": False})
        return doc

    def soe(self) -> dict[str, Any]:
        return {"percentage": self.model.percentage}

    def operation(self) -> dict[str, Any]:
        return {"real_mode": "self_consumption" if self.new else "autonomous", "backup_reserve_percent": 24,
                "freq_shift_load_shed_soe": 65 if self.new else 75, "freq_shift_load_shed_delta_f": -0.32}

    def sitemaster(self, running: bool = True) -> dict[str, Any]:
        return {"status": "StatusUp" if running else "StatusDown", "running": running, "connected_to_tesla": True,
                "power_supply_mode": False, "can_reboot": "Yes" if running else ""}

    def grid_status(self) -> dict[str, Any]:
        return {"grid_status": "SystemGridConnected", "grid_services_active": False}

    def site_name(self) -> dict[str, Any]:
        return {"site_name": "Simulated Energy Gateway", "timezone": "Europe/Amsterdam"}

    def _block(self, i: int, flows: dict[str, float]) -> dict[str, Any]:
        m = self.model
        n = m.blocks
        share = flows["battery"] / n
        return {
            "Type": "", "PackagePartNumber": "3012170-05-B" if i % 2 == 0 else "2012170-25-E",
            "PackageSerialNumber": self.serials[i], "disabled_reasons": [], "pinv_state": "PINV_GridFollowing",
            "pinv_grid_state": "Grid_Compliant", "nominal_energy_remaining": round(m.remaining / n),
            "nominal_full_pack_energy": round(m.capacity / n), "p_out": round(share, 1), "q_out": 30,
            "v_out": round(243.5 + 2 * math.sin(time.time() / 7), 1), "f_out": 60.007000000000005,
            "i_out": round(share / 240.0, 1), "energy_charged": round(m.energy["battery_imported"] / n),
            "energy_discharged": round(m.energy["battery_exported"] / n), "off_grid": False, "vf_mode": False,
            "wobble_detected": False, "charge_power_clamped": False, "backup_ready": True, "OpSeqState": "Active",
            "version": VERSIONS[self.generation][1][:14],
        }

    def system_status(self) -> dict[str, Any]:
        m, flows = self.model, self.model.flows
        doc: dict[str, Any] = {
            "command_source": "Configuration", "battery_target_power": round(-flows["battery"], 1),
            "battery_target_reactive_power": 0, "nominal_full_pack_energy": round(m.capacity),
            "nominal_energy_remaining": round(m.remaining), "max_power_energy_remaining": 0,
            "max_power_energy_to_be_charged": 0, "max_charge_power": 5000 * m.blocks,
            "max_discharge_power": 5000 * m.blocks, "max_apparent_power": 5000 * m.blocks,
            "instantaneous_max_discharge_power": 12000 * m.blocks, "instantaneous_max_charge_power": 7000 * m.blocks,
        }
        if self.new:
            doc.update({"instantaneous_max_apparent_power": 5760 * m.blocks, "hardware_capability_charge_power": 0,
                        "hardware_capability_discharge_power": 0})
        doc.update({"grid_services_power": -0, "system_island_state": "SystemGridConnected",
                    "available_blocks": m.blocks})
        if self.new:
            doc["available_charger_blocks"] = 0
        doc["battery_blocks"] = [self._block(i, flows) for i in range(m.blocks)]
        doc.update({
            "ffr_power_availability_high": 5800 * m.blocks, "ffr_power_availability_low": 5290 * m.blocks,
            "load_charge_constraint": 0, "max_sustained_ramp_rate": 1250000 * m.blocks, "grid_faults": [],
            "can_reboot": "Yes", "smart_inv_delta_p": 0, "smart_inv_delta_q": 0,
            "last_toggle_timestamp": "2024-03-11T09:17:15.683707425+01:00", "solar_real_power_limit": -1,
            "score": 10000, "blocks_controlled": m.blocks, "primary": True, "auxiliary_load": 0,
            "all_enable_lines_high": True, "inverter_nominal_usable_power": 5800 * m.blocks,
            "expected_energy_remaining": 0,
        })
        return doc

    def _readings(self, category: str, power: float, flows: dict[str, float], meters: int | None) -> dict[str, Any]:
        e = self.model.energy
        volts = 243.0 if category in ("battery", "solar") else 212.0
        reactive = {"site": -329.0, "battery": 30.0, "load": -318.75, "solar": -14.0}[category]
        exported = {"site": e["site_exported"], "battery": e["battery_exported"], "load": 0,
                    "solar": e["solar_exported"]}[category]
        imported = {"site": e["site_imported"], "battery": e["battery_imported"], "load": e["load_imported"],
                    "solar": e["solar_imported"]}[category]
        current = abs(power) / volts if category in ("load", "solar") else 0
        doc: dict[str, Any] = {
            "last_communication_time": time.strftime("%Y-%m-%dT%H:%M:%S.000000000+01:00"),
            "instant_power": round(power, 2), "instant_reactive_power": reactive,
            "instant_apparent_power": math.hypot(power, reactive),
            "frequency": 60.007000000000005 if category == "battery" else 0, "energy_exported": exported,
            "energy_imported": imported, "instant_average_voltage": volts, "instant_average_current": current,
            "i_a_current": 0, "i_b_current": 0, "i_c_current": 0,
            "last_phase_voltage_communication_time": "0001-01-01T00:00:00Z",
            "last_phase_power_communication_time": "0001-01-01T00:00:00Z",
        }
        if self.generation in ("21.44", "23.28"):  # the captures of 21.39.1 and 23.44 lack it
            doc["last_phase_energy_communication_time"] = "0001-01-01T00:00:00Z"
        doc["timeout"] = 1500000000 if category != "solar" or not self.new else 1000000000
        if meters is not None:
            doc["num_meters_aggregated"] = meters
        doc["instant_total_current"] = current
        return doc

    def aggregates(self, flows: dict[str, float]) -> dict[str, Any]:
        counts = {"site": 1 if self.new else 2, "battery": self.model.blocks, "load": None, "solar": 1}
        return {c: self._readings(c, flows[c], flows, counts[c]) for c in ("site", "battery", "load", "solar")}

    def _site_meter(self, flows: dict[str, float]) -> dict[str, Any]:
        agg = self._readings("site", flows["site"], flows, None)
        half = flows["site"] / 2
        order = ("last_communication_time", "instant_power", "instant_reactive_power", "instant_apparent_power",
                 "frequency", "energy_exported", "energy_imported", "instant_average_voltage",
                 "instant_average_current", "i_a_current", "i_b_current", "i_c_current",
                 "last_phase_voltage_communication_time")
        readings: dict[str, Any] = {k: agg[k] for k in order}
        readings.update({"v_l1n": 121.7, "v_l2n": 121.8,
                         "last_phase_power_communication_time": agg["last_phase_power_communication_time"],
                         "real_power_a": round(half, 1), "real_power_b": round(half, 1), "reactive_power_a": -129,
                         "reactive_power_b": -83,
                         "last_phase_energy_communication_time": "0001-01-01T00:00:00Z",
                         "serial_number": "JBL00000SIM000", "version": "fa0c1ad02efda3", "timeout": 1500000000,
                         "instant_total_current": agg["instant_average_current"]})
        return {"id": 0, "location": "site", "type": "synchrometerX", "cts": [True, True, False, False],
                "inverted": [False, False, False, False],
                "connection": {"short_id": GATEWAY_DIN, "device_serial": "JBL00000SIM000synchrometerX",
                               "https_conf": {}},
                "Cached_readings": readings}

    def networks(self) -> list[dict[str, Any]]:
        signal = 55 + int(5 * math.sin(time.time() / 30))
        if self.new:
            def iface(name: str, kind: str, mask: str, strength: int) -> dict[str, Any]:
                return {"network_name": name, "ip_networks": [{"IP": "", "Mask": mask}], "gateway": "",
                        "interface": kind, "state": "DeviceStateReady", "state_reason": "DeviceStateReasonNone",
                        "signal_strength": strength, "hw_address": ""}
            return [
                {"network_name": "ethernet_tesla_internal_default", "interface": "EthType", "enabled": True,
                 "dhcp": True, "extra_ips": [{"ip": "192.168.90.2", "netmask": 24}], "active": True,
                 "primary": True, "lastTeslaConnected": True, "lastInternetConnected": True,
                 "iface_network_info": iface("ethernet_tesla_internal_default", "EthType", "////AA==", 0)},
                {"network_name": "gsm_tesla_internal_default", "interface": "GsmType", "enabled": True,
                 "dhcp": None, "active": True, "primary": False, "lastTeslaConnected": False,
                 "lastInternetConnected": False,
                 "iface_network_info": iface("gsm_tesla_internal_default", "GsmType", "/////w==", 71)},
            ]

        def info(name: str, kind: str, mask: str, strength: int, hw: str) -> dict[str, Any]:
            return {"network_name": name, "ip_networks": [{"ip": "192.0.2.10", "mask": mask}],
                    "gateway": "192.0.2.1", "interface": kind, "state": "DeviceStateReady",
                    "state_reason": "DeviceStateReasonNone", "signal_strength": strength, "hw_address": hw}
        return [
            {"network_name": "ethernet_tesla_internal_default", "interface": "EthType", "dhcp": True, "enabled": True,
             "extra_ips": [{"ip": "192.168.90.2", "netmask": 24}], "active": False, "primary": False,
             "lastTeslaConnected": False, "lastInternetConnected": False},
            {"network_name": "gsm_tesla_internal_default", "interface": "GsmType", "dhcp": None, "enabled": True,
             "active": True, "primary": False, "lastTeslaConnected": False, "lastInternetConnected": False,
             "iface_network_info": info("gsm_tesla_internal_default", "GsmType", "255.255.255.255", 71, "")},
            {"network_name": "SimulatedWiFi", "interface": "WifiType", "security_type": "WPA2_Personal",
             "dhcp": True, "username": "", "enabled": True, "active": True, "primary": True,
             "lastTeslaConnected": True, "lastInternetConnected": True,
             "iface_network_info": info("SimulatedWiFi", "WifiType", "255.255.255.0", signal, "02:00:00:00:00:01")},
        ]
