"""The same command under `wattprobe run` and under CodeCarbon 3.x: what each costs and what each says.

    python benchmarks/versus_codecarbon.py                  # makes a throwaway venv with codecarbon
    python benchmarks/versus_codecarbon.py --python VENV/bin/python --seconds 20   # a venv you made
    python benchmarks/versus_codecarbon.py --only api --out FILE.md  # default docs/measuring-a-command.md

CodeCarbon is no dependency of wattprobe: without `--python`, this makes a venv in a temporary folder
and installs `codecarbon>=3,<4` from PyPI into it. CodeCarbon has no `-- COMMAND` form, so a small
script in its venv starts an OfflineEmissionsTracker, runs the command as its child and stops the
tracker: how its users wrap a run. Both run with their defaults (wattprobe: a 1 s step; CodeCarbon:
15 s) and CodeCarbon at 1 s too, in its `machine` mode (the whole machine) and its `process` mode (the
tracked process and its children, from psutil's CPU times).

The command is a Python process that burns CPU itself and starts short-lived children that burn CPU
too; it reports its own CPU time and its children's (RUSAGE_SELF + RUSAGE_CHILDREN). What the
measuring tool itself costs is the CPU time of everything the benchmark started (RUSAGE_CHILDREN of
this process) less the command's own: the tool's interpreter, imports and sampling. Both estimate
here when the machine has no RAPL: the figures to compare are the CPU time each counts for the
command, and what each tool costs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import Result, fmt, machine, markdown_table
from tests.support.paths import REPO

DEFAULT_OUT = os.path.join(REPO, "docs", "measuring-a-command.md")
COUNTRY = ("FR", "FRA")  # both tools' yearly average for France, from the same source (Ember)

# Burns `own` s of CPU, then starts `children` children one after another that burn `child` s each,
# and prints its CPU time and its children's (s) as JSON on its last line.
WORKLOAD = r"""
import json, resource, subprocess, sys, time
own, child, children = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
burn = "import time\nend = time.process_time() + %s\nwhile time.process_time() < end: pass" % child
end = time.process_time() + own
while time.process_time() < end:
    pass
for _ in range(children):
    subprocess.run([sys.executable, "-S", "-c", burn], check=True)
s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime}))
"""

# Sleeps 10 s, then prints its CPU time as WORKLOAD does.
IDLE = r"""
import json, resource, time
time.sleep(10)
s = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"cpu_s": s.ru_utime + s.ru_stime}))
"""

# Runs argv[4:] under CodeCarbon: mode (machine|process), interval (s), country; prints its figures.
CODECARBON = r"""
import json, subprocess, sys
from codecarbon import OfflineEmissionsTracker
mode, interval, country = sys.argv[1], float(sys.argv[2]), sys.argv[3]
tracker = OfflineEmissionsTracker(
    country_iso_code=country, measure_power_secs=interval, tracking_mode=mode,
    save_to_file=False, log_level="error",
)
tracker.start()
command = subprocess.run(sys.argv[4:], stdout=subprocess.PIPE, text=True)
tracker.stop()
d = tracker.final_emissions_data
# Its CPU model's TDP and CPU count (private, hence getattr): in process mode, CPU energy is
# TDP x CPU time / CPUs, so the CPU time it counted is CPU energy x CPUs / TDP.
cpu = next((h for h in getattr(tracker, "_hardware", []) if type(h).__name__ == "CPU"), None)
print(command.stdout, end="")
print(json.dumps({"energy_j": d.energy_consumed * 3.6e6, "cpu_j": d.cpu_energy * 3.6e6,
                  "ram_j": d.ram_energy * 3.6e6, "carbon_g": d.emissions * 1e3,
                  "duration_s": d.duration, "status": command.returncode,
                  "tdp_w": getattr(cpu, "_tdp", None), "cpus": getattr(cpu, "_cpu_count", None)}))
"""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> tuple[str, float, float]:
    """Run to its end: its stdout, its wall time, and the CPU time of it and all its descendants."""
    before, started = children_cpu_s(), time.monotonic()
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
    )
    wall, cpu = time.monotonic() - started, children_cpu_s() - before
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({result.returncode}): {result.stderr.strip()[-800:]}")
    return result.stdout, wall, cpu


def workload(own_s: float, child_s: float, children: int) -> list[str]:
    return [sys.executable, "-c", WORKLOAD, str(own_s), str(child_s), str(children)]


def under_wattprobe(
    command: list[str], *, step_s: float = 1.0, sensor: tuple[str, ...] = ()
) -> dict[str, float]:
    """The command under `wattprobe run`: what it reports, and what it cost."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "run.json")
        argv = [sys.executable, "-m", "wattprobe", *sensor, "run", "-o", out, "-s", str(step_s)]
        stdout, wall, cpu = _run([*argv, "--country", COUNTRY[0], "--", *command])
        with open(out) as f:
            doc = json.load(f)
    command_cpu = json.loads(stdout.strip().splitlines()[-1])["cpu_s"] if stdout.strip() else 0.0
    return {
        "wall_s": wall,
        "command_cpu_s": command_cpu,
        "tool_cpu_s": cpu - command_cpu,
        "counted_cpu_s": doc["cpu_seconds"],
        "energy_j": doc["energy_j"],
        "host_energy_j": doc["host_energy_j"],
        "carbon_g": doc["carbon_g"],
        "estimated": float(doc["estimated"]),
    }


def under_codecarbon(python: str, command: list[str], *, mode: str, interval_s: float) -> dict[str, float]:
    """The command under CodeCarbon's tracker, in `python` (a venv that has codecarbon)."""
    argv = [python, "-c", CODECARBON, mode, str(interval_s), COUNTRY[1], *command]
    stdout, wall, cpu = _run(argv, env={"CODECARBON_LOG_LEVEL": "error"})
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    figures = json.loads(lines[-1])
    command_cpu = json.loads(lines[0])["cpu_s"] if len(lines) > 1 else 0.0
    return {
        "wall_s": wall,
        "command_cpu_s": command_cpu,
        "tool_cpu_s": cpu - command_cpu,
        "energy_j": figures["energy_j"],
        "cpu_j": figures["cpu_j"],
        "ram_j": figures["ram_j"],
        "carbon_g": figures["carbon_g"],
        "tdp_w": figures["tdp_w"] or float("nan"),
        "counted_cpu_s": figures["cpu_j"] * (figures["cpus"] or 0) / figures["tdp_w"]
        if figures["tdp_w"]
        else float("nan"),
    }


def codecarbon_python(given: str | None, workdir: str) -> str:
    """A Python that imports codecarbon 3.x: `given`, else a new venv in `workdir` (from PyPI)."""
    if given:
        return given
    venv = os.path.join(workdir, "codecarbon-venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "codecarbon>=3,<4"], check=True
    )
    return python


def bench(python: str, own_s: float = 10.0, child_s: float = 0.1, children: int = 50) -> Result:
    version = subprocess.run(
        [python, "-c", "import codecarbon; print(codecarbon.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    command = workload(own_s, child_s, children)
    idle = [sys.executable, "-c", IDLE]
    runs = [
        ("wattprobe run", "step 1 s (default)", lambda c: under_wattprobe(c)),
        (
            "CodeCarbon, machine",
            "15 s (default)",
            lambda c: under_codecarbon(python, c, mode="machine", interval_s=15),
        ),
        ("CodeCarbon, machine", "1 s", lambda c: under_codecarbon(python, c, mode="machine", interval_s=1)),
        ("CodeCarbon, process", "1 s", lambda c: under_codecarbon(python, c, mode="process", interval_s=1)),
    ]
    rows = [
        [
            "tool",
            "interval",
            "wall time (s)",
            "command's CPU (s)",
            "tool's CPU (s)",
            "tool's CPU, % of a core",
            "tool's CPU, 10 s of sleep (s)",
            "command's energy (J)",
            "machine's energy (J)",
            "of which RAM (J)",
            "g CO2e",
        ]
    ]
    numbers: dict[str, float] = {}
    for name, interval, measure in runs:
        busy = measure(command)
        quiet = measure(idle)
        key = f"{name}-{interval}".replace(" ", "_").replace(",", "")
        numbers |= {f"{key}:{k}": v for k, v in busy.items()}
        numbers[f"{key}:idle_tool_cpu_s"] = quiet["tool_cpu_s"]
        if name == "wattprobe run":
            command_j, machine_j = busy["energy_j"], busy["host_energy_j"]
            counted = f"{fmt(busy['command_cpu_s'])} (counts {fmt(busy['counted_cpu_s'])})"
        elif "process" in name:
            command_j, machine_j = busy["energy_j"], float("nan")
            counted = f"{fmt(busy['command_cpu_s'])} (counts {fmt(busy['counted_cpu_s'])})"
        else:
            command_j, machine_j = float("nan"), busy["energy_j"]
            counted = fmt(busy["command_cpu_s"])
        rows.append(
            [
                name,
                interval,
                fmt(busy["wall_s"]),
                counted,
                fmt(busy["tool_cpu_s"]),
                f"{fmt(100 * busy['tool_cpu_s'] / busy['wall_s'])} %",
                fmt(quiet["tool_cpu_s"]),
                "—" if command_j != command_j else fmt(command_j),
                "—" if machine_j != machine_j else fmt(machine_j),
                fmt(busy["ram_j"]) if "ram_j" in busy else "—",
                fmt(busy["carbon_g"]),
            ]
        )
    method = f"""
The same command under each tool, one after the other, on this machine (no RAPL: wattprobe's default
`auto` sensor estimates from CPU load, and so does CodeCarbon, from its TDP table or its default).
The command burns {own_s:g} s of CPU in one process, then starts {children} children one after another
that burn {child_s:g} s each. *Wall time*: the whole run, the tool's start and end included.
*Command's CPU*: what it measured of itself and its children (RUSAGE_SELF + RUSAGE_CHILDREN), and
how much of it the tool counted: wattprobe says so; CodeCarbon's process mode charges its CPU
model's TDP ({{tdp}} W here) x CPU time / CPUs, so its count is its CPU energy x CPUs / TDP. *Tool's CPU*: the CPU
time of everything the run started less the command's, so the tool's start-up, imports and sampling;
again with `sleep 10` as the command, the cost of measuring an idle command. *Of which RAM*:
CodeCarbon adds an estimate of memory power (from the machine's RAM size) to its CPU's, in both
modes; wattprobe counts memory only when a `dram` counter measures it (or `--memory-watts-per-gb`). Carbon at France's
yearly average, which both tools take from Ember's data. CodeCarbon {version}, run by a script
that starts an `OfflineEmissionsTracker`, runs the command as its child and stops it.
"""
    tdp = next((v for k, v in numbers.items() if k.endswith(":tdp_w") and v == v), float("nan"))
    method = method.replace("{tdp}", fmt(tdp))
    return Result("codecarbon", "wattprobe run and CodeCarbon, side by side", method, [rows], numbers=numbers)


# A block that sleeps under wattprobe.measure(step=argv[1]) for argv[2] s, in a process of its own;
# prints what measuring cost: the sampler's CPU time, and the import of the API.
API = r"""
import json, sys, time
started = time.process_time()
import wattprobe
wattprobe.measure
imported = time.process_time() - started
with wattprobe.measure(step=float(sys.argv[1])) as m:
    time.sleep(float(sys.argv[2]))
print(json.dumps({"overhead_s": m.overhead_cpu_s, "duration_s": m.duration_s, "import_s": imported,
                  "cpu_s": m.cpu_seconds}))
"""


def api_cost(
    seconds: float = 10.0, steps: tuple[float, ...] = (1.0, 0.1), extra: tuple[int, ...] = (0, 1000)
) -> Result:
    """What `wattprobe.measure()` costs the process it measures, around a block that sleeps."""
    from benchmarks.swarm import Swarm

    rows = [
        [
            "processes on the machine",
            "step",
            "sampler CPU, % of a core",
            "per tick",
            "import of the API",
            "block's CPU",
        ]
    ]
    numbers: dict[str, float] = {}
    for n in extra:
        with Swarm(n) if n else _nothing():
            for step in steps:
                stdout, _, _ = _run([sys.executable, "-c", API, str(step), str(seconds)])
                m = json.loads(stdout.strip().splitlines()[-1])
                share = m["overhead_s"] / m["duration_s"]
                numbers[f"overhead_share_{n}_{step:g}"] = share
                procs = sum(name.isdigit() for name in os.listdir("/proc"))
                rows.append(
                    [
                        f"{procs:,}",
                        f"{step:g} s",
                        f"{fmt(100 * share)} %",
                        f"{fmt(1e3 * m['overhead_s'] * step / m['duration_s'])} ms",
                        f"{fmt(1e3 * m['import_s'])} ms",
                        f"{fmt(m['cpu_s'])} s",
                    ]
                )
    method = f"""
A process of its own imports wattprobe and measures a block that sleeps {seconds:g} s with
`wattprobe.measure(step=...)` (the default sensor, `auto`). *Sampler CPU*: the CPU time of its
background thread (`overhead_cpu_s`: one tick per step, a scan of /proc each, and opening the
sensor), per second of the block; *per tick*, the same per step. *Block's CPU*: what the block was
given, the sampler's own time left out (a sleeping block: about 0). The second set of rows has
{max(extra):,} more idle processes on the machine.
"""
    return Result("api", "What wattprobe.measure() costs", method, [rows], numbers=numbers)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def write(path: str, result: Result) -> None:
    """Replace the results section of `path` (between its markers), keeping the rest of the file."""
    begin, end = f"<!-- results:{result.key} -->", f"<!-- /results:{result.key} -->"
    stamp = f"_{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()[0]:.2f}._"
    machine_rows = markdown_table([["", ""], *([k, v] for k, v in machine().items())])
    block = f"{begin}\n{stamp}\n\n{machine_rows}\n\n{result.markdown().rstrip()}\n{end}"
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Measuring one command\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/versus_codecarbon.py", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--python", help="a Python that has codecarbon 3.x (default: a new venv, from PyPI)")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU seconds the command burns itself")
    parser.add_argument("--out", default=DEFAULT_OUT, help="markdown file to update")
    parser.add_argument("--only", choices=("codecarbon", "api"), help="one of the two sections")
    args = parser.parse_args(argv)
    results = []
    if args.only in (None, "api"):
        results.append(api_cost())
    if args.only in (None, "codecarbon"):
        with tempfile.TemporaryDirectory() as workdir:
            results.append(bench(codecarbon_python(args.python, workdir), own_s=args.seconds))
    for result in results:
        write(args.out, result)
        print(result.markdown(), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
