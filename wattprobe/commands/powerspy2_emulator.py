"""`wattprobe powerspy2-emulator`: serve an emulated PowerSpy2 on a pseudo-terminal until stopped."""

from __future__ import annotations

import argparse
import itertools
import sys
import time

from wattprobe.config.values import non_negative, positive

NAME = "powerspy2-emulator"
HELP = "serve an emulated PowerSpy2 on a pseudo-terminal, with optional faults (to try without a meter)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wattprobe.sources.powerspy2.emulator import FAULTS

    parser.add_argument("--link", required=True, metavar="PATH", help="symlink to create to the pty's device")
    parser.add_argument(
        "--watts", type=non_negative, default=171.14, help="power to report (0: no load; default 171.14)"
    )
    parser.add_argument("--volts", type=positive, default=230.7, help="RMS voltage to report (default 230.7)")
    parser.add_argument(
        "--frequency", type=int, choices=(50, 60), default=50, help="line frequency, Hz (default 50)"
    )
    parser.add_argument(
        "--v1", action="store_true", help="behave as the first PowerSpy (hardware version 02)"
    )
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="start streaming, as if an earlier run left a stream running",
    )
    parser.add_argument(
        "--fault",
        action="append",
        choices=tuple(FAULTS),
        default=[],
        metavar="MODE",
        help="inject this fault now and then (repeatable, taken in turn): "
        + "; ".join(f"{mode}: {what}" for mode, what in FAULTS.items()),
    )
    parser.add_argument(
        "--fault-every", type=positive, default=10.0, metavar="S", help="seconds between faults (default 10)"
    )
    parser.add_argument(
        "--fault-for", type=positive, default=2.0, metavar="S", help="how long each fault lasts (default 2)"
    )


def run(args: argparse.Namespace) -> int:
    from wattprobe.sources.powerspy2.emulator import PowerSpy2Emulator

    emulator = PowerSpy2Emulator(
        args.link,
        watts=args.watts,
        volts=args.volts,
        line_hz=args.frequency,
        v1=args.v1,
        streaming=args.streaming,
    )
    emulator.start()
    print(f"PowerSpy2 emulator at {args.link}; stop with Ctrl-C", file=sys.stderr, flush=True)
    try:
        while not args.fault:
            time.sleep(3600)
        for mode in itertools.cycle(args.fault):
            time.sleep(args.fault_every)
            print(f"fault: {mode} for {args.fault_for:g} s", file=sys.stderr, flush=True)
            emulator.set_fault(mode, down_s=args.fault_for, burst_s=min(args.fault_for, 0.5))
            time.sleep(args.fault_for)
            emulator.set_fault(None)
    finally:
        emulator.stop()
    return 0
