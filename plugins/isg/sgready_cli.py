"""``gridtap sgready set STATE`` / ``gridtap sgready get``: a heat pump's SGReady state over Modbus.

The device comes from ``--config FILE`` (its isg device, ``--name`` to pick one) or from
``--host`` / ``--modbus-port`` / ``--unit-id``, read the way ``gridtap run isg`` reads it.
Exit codes: 0 done, 1 the device could not be reached or refused the write (or reads back other
inputs), 2 a bad STATE or setting (then nothing is written).

The ISG reverts the inputs after 30-60 s: a one-off ``set`` is for trying things out; to hold a
state, run the device with ``sgready_enable`` and drive it through the Alertmanager webhook.
"""

from __future__ import annotations

import argparse

from gridtap.errors import InputError

STATE_HELP = "1 (lock), 2 (normal), 3 (active), 4 (force), or the word"


def _device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file with an isg device")
    p.add_argument("--name", metavar="DEVICE", help="which isg device of --config")
    p.add_argument("--host", metavar="HOST", help="the ISG's address (Modbus TCP)")
    p.add_argument("--modbus-port", metavar="PORT", help="Modbus TCP port (default 502)")
    p.add_argument("--unit-id", metavar="ID", help="Modbus unit id (default 1)")
    p.add_argument("--timeout", metavar="DURATION", help="time to wait for each answer (default 10s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sgready_action", metavar="ACTION", required=True, parser_class=type(parser))
    set_p = sub.add_parser("set", help="write an SGReady state (one FC16 of input 1 and 2), read it back",
                           description="Write an SGReady state and read it back.")
    set_p.add_argument("state", metavar="STATE", help=STATE_HELP)
    set_p.add_argument("--switch-on", action="store_true",
                       help="switch SG Ready on first (holding 4001 = 1) if it is off")
    _device_options(set_p)
    get_p = sub.add_parser("get", help="read SG Ready: on/off, the two inputs, the operating state",
                           description="Read the SGReady registers.")
    _device_options(get_p)


def run(args: argparse.Namespace) -> int:
    from gridtap import devices

    from . import sgready
    from .plugin import IsgPlugin

    state = None
    if args.sgready_action == "set":
        try:
            state = sgready.parse_state(args.state)
        except ValueError as e:
            raise InputError(f"sgready: {e}") from None
    flags = {k: v for k, v in (("host", args.host), ("modbus_port", args.modbus_port), ("unit_id", args.unit_id),
                               ("timeout", args.timeout)) if v is not None}
    if not args.config:
        flags.setdefault("mode", "modbus")  # a bare --host is a Modbus device
        if "host" not in flags:
            raise InputError("sgready: give the device: --host HOST (or --config FILE)")
    found = devices.load_device(IsgPlugin, config_path=args.config, name=args.name, flags=flags)
    device = found.spec.create()
    try:
        link = device.link()
        family = device.sgready_family()
        if state is None:
            for line in sgready.read_status(link, family).lines():
                print(line)
            return 0
        switch_on = bool(getattr(args, "switch_on", False) or device.config.sgready_switch_on)
        result = sgready.apply(link, state, switch_on=switch_on, family=family)
        for line in result.lines():
            print(line)
        return 0
    finally:
        device.close()
