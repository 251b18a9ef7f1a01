"""SG Ready over Modbus (spec §3): the states, the write steps, and what the device says back.

The steps (§3.3): optionally switch SG Ready on (wire 4000 = 1), write input 1 and input 2 with
ONE FC16 of quantity 2 at wire 4001 (never the seed's quantity 4), read them back (a read-back
of 0x8000 is "unavailable" on some models and does not fail the write), then read the SG Ready
operating state (input wire 5000) and the operating mode: in comfort mode the ISG ignores SG
Ready (evcc's documentation of the Stiebel templates), which is said, not hidden.

The ISG does not latch the inputs (it reverts within 30-60 s), so a long-running device that
was asked for a state other than normal re-asserts it every ``sgready_reassert`` (30 s by
default, never less: plugin.py) - never in a tight loop: the writes land in storage with a
limited number of write cycles (README "SGReady" has the arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalogue import family_of, wire_address
from .modbus import BlockError, ModbusLink

#: state -> (input 1, input 2), the German manual's table (spec §3.2).
INPUTS = {1: (0, 1), 2: (0, 0), 3: (1, 0), 4: (1, 1)}
NAMES = {1: "lock", 2: "normal", 3: "active", 4: "force"}
MEANING = {1: "blocked: the heat pump must not start (frost protection only)", 2: "normal operation",
           3: "forced operation with raised set points (surplus)", 4: "immediate drive to the maximum temperatures"}
_BY_NAME = {v: k for k, v in NAMES.items()} | {"dimm": 1, "blocked": 1, "off": 1, "on": 3}
NOT_AVAILABLE = 0x8000
SWITCH, INPUT_1, OPERATING_STATE, CONTROLLER_ID = (wire_address(4001), wire_address(4002), wire_address(5001),
                                                    wire_address(5002))
#: Operating mode register (holding, wire) and the codes in which SG Ready is ignored.
MODE_REGISTER = {"wpm": wire_address(1501), "lwz": wire_address(1001)}
COMFORT = {"wpm": {3: "comfort"}, "lwz": {3: "day mode (the LWZ's comfort)"}}


def parse_state(text: str) -> int:
    """1-4 or lock/normal/active/force (ValueError otherwise)."""
    t = str(text).strip().lower()
    if t.isdigit() and int(t) in INPUTS:
        return int(t)
    if t in _BY_NAME:
        return _BY_NAME[t]
    raise ValueError(f"SGReady state must be 1-4 or lock, normal, active, force; got {text!r}")


def describe_state(state: int) -> str:
    return f"{state} ({NAMES[state]})"


class Mismatch(BlockError):
    """The device acknowledged the write but reads back other input values."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 0)


@dataclass
class Status:
    switch: int | None = None  # 4001: 0 off, 1 on (None: unavailable)
    inputs: tuple[int, int] | None = None  # 4002/4003 read back (None: unavailable)
    operating_state: int | None = None  # 5001
    family: str | None = None
    mode: str | None = None  # a comfort mode in which SG Ready is ignored, else None
    notes: list[str] = field(default_factory=list)

    @property
    def input_state(self) -> int | None:
        if self.inputs is None:
            return None
        return next((s for s, v in INPUTS.items() if v == self.inputs), None)

    def lines(self) -> list[str]:
        out = []
        if self.switch is not None:
            out.append(f"SG Ready is {'on' if self.switch == 1 else 'off' if self.switch == 0 else self.switch}")
        if self.inputs is not None:
            s = self.input_state
            shown = describe_state(s) if s is not None else "no state"
            out.append(f"inputs: input 1 = {self.inputs[0]}, input 2 = {self.inputs[1]} -> {shown}")
        else:
            out.append("inputs: not readable (0x8000) on this device")
        if self.operating_state is not None:
            s = self.operating_state
            out.append(f"operating state: {describe_state(s) if s in NAMES else s}"
                       + (f" - {MEANING[s]}" if s in MEANING else ""))
        else:
            out.append("operating state: not readable (0x8000) on this device")
        if self.switch == 0:
            out.append("note: SG Ready is switched off, so the inputs have no effect (sgready set --switch-on, "
                       "or EINSTELLUNGEN > ENERGIEMANAGEMENT > SG READY = EIN)")
        if self.mode is not None:
            out.append(f"note: the operating mode is {self.mode}: the ISG ignores SG Ready in that mode "
                       "(it acts in automatic/program and hot-water mode)")
        out += self.notes
        return out


def _one(link: ModbusLink, table: str, wire: int, count: int = 1) -> list[int] | None:
    """Registers, or None where this device lacks them (exception 02)."""
    try:
        return link.read(table, wire, count)
    except BlockError as e:
        if e.code == 2:
            return None
        raise


def read_status(link: ModbusLink, family: str | None = None) -> Status:
    """What the device says about SG Ready now (``family``: wpm/lwz, else read from input 5002)."""
    st = Status()
    regs = _one(link, "holding", SWITCH, 3)
    if regs is not None:
        st.switch = None if regs[0] == NOT_AVAILABLE else regs[0]
        st.inputs = None if NOT_AVAILABLE in regs[1:] else (regs[1], regs[2])
    state = _one(link, "input", OPERATING_STATE)
    st.operating_state = None if state is None or state[0] == NOT_AVAILABLE else state[0]
    if family is None:
        cid = _one(link, "input", CONTROLLER_ID)
        family = family_of(cid[0]) if cid else None
    st.family = family
    if family in MODE_REGISTER:
        mode = _one(link, "holding", MODE_REGISTER[family])
        if mode and mode[0] != NOT_AVAILABLE:
            st.mode = COMFORT[family].get(mode[0])
    return st


@dataclass
class Written:
    state: int
    switched_on: bool
    status: Status

    def lines(self) -> list[str]:
        head = f"SGReady {describe_state(self.state)} written: input 1 = {INPUTS[self.state][0]}, " \
               f"input 2 = {INPUTS[self.state][1]}"
        out = [head]
        if self.switched_on:
            out.append("SG Ready was off: switched it on first (holding 4001 = 1)")
        return out + self.status.lines()


def apply(link: ModbusLink, state: int, *, switch_on: bool = False, family: str | None = None) -> Written:
    """Write ``state`` (the §3.3 steps). BlockError/LinkError when the device refused or could not be
    reached; :class:`Mismatch` when it reads back other inputs."""
    in1, in2 = INPUTS[state]
    switched = False
    with link.lock:
        if switch_on:
            current = _one(link, "holding", SWITCH)
            if current is None or current[0] != 1:
                link.write_register(SWITCH, 1)
                switched = True
        link.write_registers(INPUT_1, [in1, in2])
        status = read_status(link, family)
    if status.inputs is not None and status.inputs != (in1, in2):
        raise Mismatch(f"the ISG took the write but reads back input 1 = {status.inputs[0]}, input 2 = "
                       f"{status.inputs[1]} (expected {in1}, {in2}): is SG Ready's source set to Modbus?")
    if status.inputs is None:
        status.notes.append("note: the inputs read back as unavailable (0x8000) on this device; the write was "
                            "acknowledged")
    return Written(state, switched, status)
