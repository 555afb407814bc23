"""wattprobe next to real peers on the same processes: CPU per scrape at equal process count.

The peers are Debian's packages, installed by this benchmark's set-up step (`setup()`: apt-get, as
root; where apt or root is missing, the benchmark says why and measures nothing). Their services
are stopped: each exporter here is started by the benchmark, alone, on loopback, with explicit
flags, while the same idle processes are alive, and scraped once a second as a Prometheus server
would; its CPU per scrape is its utime+stime (all threads) over the span divided by the scrapes.

- **wattprobe** `prometheus` with its defaults: host power from the synthetic powercap tree and
  every process's share of it (the top 20 as series; a fresh measurement at every scrape).
- **node_exporter, RAPL only** (`--collector.disable-defaults --collector.rapl`, `--path.sysfs` at a
  directory whose `class/powercap` is the same synthetic tree): the same RAPL counters, no processes.
- **node_exporter, default collectors**: what most hosts run (the machine's /proc and /sys).
- **process-exporter, a group per process** (`name: "{{.Comm}}-{{.PID}}"`, every command line):
  each process's CPU time, memory and more, no power; with its defaults (smaps and per-thread
  metrics gathered), and without them (`-gather-smaps=false -threads=false`, its cheapest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import TICK_S, Result, count_processes, cpu_seconds, ms, scratch_dir
from benchmarks.swarm import Swarm
from tests.support import agents
from tests.support.net import free_port
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import wait_for

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROCESS_EXPORTER = "/usr/bin/prometheus-process-exporter"
PACKAGES = {"prometheus-node-exporter": NODE_EXPORTER, "prometheus-process-exporter": PROCESS_EXPORTER}
PROCESS_EXPORTER_CONFIG = """process_names:
  - name: "{{.Comm}}-{{.PID}}"
    cmdline:
    - '.*'
"""


def setup() -> str | None:
    """Install the peers from Debian where they are missing and stop the services their packages
    start; None when they are ready, else why they cannot be measured here."""
    missing = [package for package, binary in PACKAGES.items() if not os.access(binary, os.X_OK)]
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"not measured: {', '.join(missing)} missing and no apt-get here (Debian packages)"
    if os.geteuid() != 0:
        return f"not measured: {', '.join(missing)} missing; installing them needs root (apt-get install)"
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:  # an old package index: refresh it once
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=environment, check=False)
        done = subprocess.run(install, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        return f"not measured: apt-get install {' '.join(missing)} failed: {done.stderr.strip()[-300:]}"
    for package in missing:  # the benchmark runs its own instances on loopback
        subprocess.run(["systemctl", "stop", package], capture_output=True, check=False)
    return None


@dataclass(frozen=True)
class Peer:
    name: str
    exports: str
    argv: list[str]
    url: str


def peers(tree: PowercapTree, tmp: Path) -> list[Peer]:
    """Each exporter's command line, on a port of its own on loopback."""
    sysfs = tmp / "sys"
    (sysfs / "class").mkdir(parents=True, exist_ok=True)
    if not (sysfs / "class" / "powercap").exists():
        (sysfs / "class" / "powercap").symlink_to(tree.root)
    config = tmp / "process-exporter.yml"
    config.write_text(PROCESS_EXPORTER_CONFIG)
    ports = [free_port() for _ in range(5)]
    url = "http://127.0.0.1:{}/metrics".format
    rapl_only = ["--collector.disable-defaults", "--collector.rapl", f"--path.sysfs={sysfs}"]
    cheapest = ["-gather-smaps=false", "-threads=false"]
    return [
        Peer(
            "wattprobe",
            "host power, every process's share (top 20 as series)",
            agents.on_tree(tree.root, "prometheus", "-a", "127.0.0.1", "-p", str(ports[0])),
            url(ports[0]),
        ),
        Peer(
            "node_exporter, RAPL only",
            "the same RAPL counters, no processes",
            [NODE_EXPORTER, *rapl_only, f"--web.listen-address=127.0.0.1:{ports[1]}"],
            url(ports[1]),
        ),
        Peer(
            "node_exporter, default collectors",
            "host metrics"
            + ("" if os.path.isdir("/sys/class/powercap") else " (no RAPL here)")
            + ", no processes",
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ports[2]}"],
            url(ports[2]),
        ),
        Peer(
            "process-exporter, a group per process",
            "every process's CPU time, memory, threads; no power",
            [PROCESS_EXPORTER, "-config.path", str(config), "-web.listen-address", f"127.0.0.1:{ports[3]}"],
            url(ports[3]),
        ),
        Peer(
            "process-exporter, a group per process, no smaps, no threads",
            "every process's CPU time and memory; no power",
            [
                PROCESS_EXPORTER,
                "-config.path",
                str(config),
                "-web.listen-address",
                f"127.0.0.1:{ports[4]}",
                *cheapest,
            ],
            url(ports[4]),
        ),
    ]


def _scrape(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def measure(peer: Peer, seconds: float, warmup_s: float, log_path: Path) -> dict[str, float]:
    """Scrape `peer` once a second (back to back when a scrape takes longer) for `seconds`."""
    with open(log_path, "w") as log:
        process = agents.start(peer.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            wait_for(
                lambda: _scrape(peer.url),
                60,
                lambda: f"{peer.name} to serve: {log_path.read_text()}",
                alive=process,
            )
            for _ in range(max(1, round(warmup_s))):
                _scrape(peer.url)
                time.sleep(1.0)
            scrapes, body = 0, b""
            cpu0, start = cpu_seconds(process.pid), time.monotonic()
            due = start
            while time.monotonic() - start < seconds:
                body = _scrape(peer.url)
                scrapes += 1
                due += 1.0
                time.sleep(max(0.0, due - time.monotonic()))
            cpu1, end = cpu_seconds(process.pid), time.monotonic()
        finally:
            agents.stop(process, timeout_s=15)
    series = sum(
        1 for line in body.decode(errors="replace").splitlines() if line and not line.startswith("#")
    )
    return {
        "scrapes": scrapes,
        "cpu_per_scrape": (cpu1 - cpu0) / scrapes,
        "cpu_percent": 100 * (cpu1 - cpu0) / (end - start),
        "series": series,
        "bytes": len(body),
        "span": end - start,
    }


def bench(sizes: tuple[int, ...] = (1000, 5000), seconds: float = 30.0, warmup_s: float = 3.0) -> Result:
    result = Result(
        "peers", "Side by side with node_exporter and process-exporter", __doc__.split("\n", 2)[2]
    )
    why_not = setup()
    if why_not is not None:
        result.notes.append(why_not.capitalize() + ".")
        return result
    rows = [
        [
            "exporter",
            "what it exports",
            "extra processes",
            "processes on the machine",
            "series",
            "body",
            "scrapes",
            "CPU per scrape",
            "CPU (% of one core)",
            "CPU per scrape / wattprobe's",
        ]
    ]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp_name:
        tmp = Path(tmp_name)
        tree = PowercapTree(tmp / "powercap")
        with tree.running(period_s=0.05):
            for n in sizes:
                with Swarm(n):
                    alive = count_processes()
                    base = 0.0  # wattprobe's CPU per scrape, the first row
                    for i, peer in enumerate(peers(tree, tmp)):
                        m = measure(peer, seconds, warmup_s, tmp / f"peer-{i}.log")
                        base = m["cpu_per_scrape"] if i == 0 else base
                        key = f"{peer.name.split(',')[0].replace(' ', '_').replace('-', '_')}_{i}_{n}"
                        result.numbers |= {f"{key}_{k}": v for k, v in m.items()}
                        rows.append(
                            [
                                peer.name,
                                peer.exports,
                                f"{n:,}",
                                f"{alive:,}",
                                f"{m['series']:,.0f}",
                                f"{m['bytes'] / 1e3:,.1f} kB",
                                f"{m['scrapes']:.0f} in {m['span']:.0f} s",
                                ms(m["cpu_per_scrape"]),
                                f"{m['cpu_percent']:.2f} %",
                                f"{m['cpu_per_scrape'] / base:.2f}" if base > 0 else "–",
                            ]
                        )
    result.tables.append(rows)
    result.notes.append(
        f"CPU comes from /proc/<pid>/stat in clock ticks ({TICK_S * 1e3:g} ms here): one tick over a "
        f"span of {seconds:g} scrapes is {TICK_S * 1e3 / seconds:.2f} ms per scrape, the resolution of "
        "the smallest figures."
    )
    return result
