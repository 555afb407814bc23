"""Prometheus scrape with thousands of process series: latency and bytes, native and Scaphandre naming.

The agent runs as users run it (`wattprobe --procfs-root FAKE prometheus -m N --min-interval 2
--naming NAMING`), on a synthetic powercap tree and a synthetic procfs tree in which every one of
N processes uses CPU between two measurements, so every one is a consumer with its own series
(`-m N`). Before each round the benchmark advances the processes' CPU time and waits for the last
measurement to age past `--min-interval`; it then times two GETs of /metrics from a client on
loopback, to the end of the body: the first makes a fresh measurement (the /proc scan, the
attribution and the rendering: what a Prometheus server at a 1 s interval pays), the second, inside
the interval, renders the Frame the first one made (the exporter alone). Bodies are fetched plain,
and with `Accept-Encoding: gzip` as Prometheus sends it. The first round warms the caches and is
not counted.
"""

from __future__ import annotations

import gzip
import re
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import Budget, Result, has_prometheus, median, scratch_dir
from benchmarks.swarm import raise_limits
from tests.powercap_tree import PowercapTree
from tests.support import agents
from tests.support.procfs import FakeProc


def _get(url: str, gzipped: bool) -> tuple[float, bytes, int]:
    """Seconds to the end of the body, the body (decompressed), and the bytes on the wire."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzipped else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        raw = response.read()
        elapsed = time.perf_counter() - start
        encoding = response.headers.get("Content-Encoding", "")
    return elapsed, gzip.decompress(raw) if encoding == "gzip" else raw, len(raw)


def measure(n: int, naming: str, rounds: int, tmp: Path, min_interval_s: float = 2.0) -> dict[str, float]:
    proc = FakeProc(tmp / f"proc-{naming}-{n}", n)
    tree = PowercapTree(tmp / f"powercap-{naming}-{n}")
    log_path = tmp / f"agent-{naming}-{n}.log"
    command = agents.on_tree(tree.root, "--procfs-root", str(proc.root), "prometheus", "-a", "127.0.0.1")
    command += ["-p", "0", "-m", str(n), "--naming", naming, "--min-interval", str(min_interval_s)]
    with tree.running(period_s=0.05), agents.serving(command, log_path, timeout_s=120) as agent:
        fresh, shared, fresh_gz, shared_gz = [], [], [], []
        body, wire_gz = b"", 0
        for i in range(1 + 2 * rounds):
            proc.advance(min_interval_s)
            time.sleep(min_interval_s + 0.1)  # the last measurement ages past the interval
            gzipped = i % 2 == 0  # plain and gzip alternate, so both see the same conditions
            t_fresh, _, wire = _get(agent.url, gzipped)
            t_shared, body, wire = _get(agent.url, gzipped)
            if i == 0:
                continue  # warm-up: static facts of every process read once
            if gzipped:
                fresh_gz.append(t_fresh)
                shared_gz.append(t_shared)
                wire_gz = wire
            else:
                fresh.append(t_fresh)
                shared.append(t_shared)
    text = body.decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    process_series = sum(1 for line in lines if 'pid="' in line)
    return {
        "processes": n,
        "series": len(lines),
        "process_series": process_series,
        "consumers": len({m.group(1) for m in re.finditer(r'pid="(\d+)"', text)}),
        "bytes": len(body),
        "bytes_gzip": wire_gz,
        "fresh": median(fresh) if fresh else float("nan"),
        "shared": median(shared) if shared else float("nan"),
        "fresh_gzip": median(fresh_gz) if fresh_gz else float("nan"),
        "shared_gzip": median(shared_gz) if shared_gz else float("nan"),
    }


def bench(
    sizes: tuple[int, ...] = (10_000,),
    target_series: int | None = 10_000,
    rounds: int = 4,
    min_interval_s: float = 2.0,
) -> Result:
    """`sizes`: processes per run; plus, per naming, as many processes as make `target_series` process series."""
    result = Result("scrape", "Prometheus scrape with many process series", __doc__.split("\n", 2)[2])
    if not has_prometheus():
        result.notes.append(
            "Not measured: this tree has no Prometheus exporter (wattprobe/sinks/prometheus.py)."
        )
        return result
    raise_limits(2 * max(sizes) + 1024)
    rows = [
        [
            "naming",
            "processes",
            "process series",
            "all series",
            "body",
            "gzip body",
            "scrape, fresh measurement",
            "scrape, shared Frame",
            "fresh, gzip",
            "shared, gzip",
        ]
    ]
    with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
        for naming in ("native", "scaphandre"):
            runs = [measure(n, naming, rounds, Path(tmp), min_interval_s) for n in sizes]
            per_process = runs[0]["process_series"] / max(runs[0]["consumers"], 1)
            if target_series and per_process:
                n_target = max(1, round(target_series / per_process))
                if n_target not in sizes:
                    runs.append(measure(n_target, naming, rounds, Path(tmp), min_interval_s))
            for m in runs:
                rows.append(
                    [
                        naming,
                        f"{m['processes']:,}",
                        f"{m['process_series']:,}",
                        f"{m['series']:,}",
                        f"{m['bytes'] / 1e6:.2f} MB",
                        f"{m['bytes_gzip'] / 1e6:.2f} MB",
                        f"{m['fresh'] * 1e3:.0f} ms",
                        f"{m['shared'] * 1e3:.0f} ms",
                        f"{m['fresh_gzip'] * 1e3:.0f} ms",
                        f"{m['shared_gzip'] * 1e3:.0f} ms",
                    ]
                )
                result.numbers |= {f"{naming}_{m['processes']}_{k}": v for k, v in m.items()}
            closest = min(runs, key=lambda m: abs(m["process_series"] - (target_series or 0)))
            result.budgets.append(
                Budget(
                    f"{naming}: scrape of {closest['process_series']:,} process series (fresh measurement)",
                    closest["fresh"] * 1e3,
                    100,
                    "ms",
                )
            )
    result.tables.append(rows)
    return result
