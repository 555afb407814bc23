#!/usr/bin/env python3
"""Drop-in PowerSpy2 metric provider for a Green Metrics Tool checkout: runs `wattprobe powerspy2`.

Install: copy this file over metric_providers/psu/energy/ac/powerspy2/machine/metric-provider.py and keep
it executable. The Green Metrics Tool starts it as `metric-provider.py -i MS -u uJ > LOG` (through a
shell, in a new process group) and stops it with SIGTERM to that group; it sums the µJ readings and
fails the run on any stderr output. Every argument (--device, -i/--interval, -u/--unit, --debug) is
passed on unchanged; without --device the meter is /dev/rfcomm0, the path GMT checks. The process is
replaced by wattprobe, so signals reach it directly.

Which wattprobe runs: $WATTPROBE if set (a command line, e.g. "/opt/wattprobe/bin/wattprobe" or
"python3 -m wattprobe"), else `wattprobe` on PATH, else `python3 -m wattprobe` with this interpreter.
"""

import os
import shlex
import shutil
import sys


def wattprobe_command() -> list[str]:
    configured = os.environ.get("WATTPROBE")
    if configured:
        return shlex.split(configured)
    found = shutil.which("wattprobe")
    return [found] if found else [sys.executable, "-m", "wattprobe"]


if __name__ == "__main__":
    command = [*wattprobe_command(), "powerspy2", *sys.argv[1:]]
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(
            f"metric-provider.py: cannot run {command[0]}: {error.strerror}; set WATTPROBE", file=sys.stderr
        )
        sys.exit(1)
