"""The tick with containers' names on, against the same tick with them off: 1,000 processes in 50 containers.

The processes sit in real cgroups, one per container, shaped as a container engine's and the kubelet's
(`docker/<id>`, `kubepods/besteffort/pod<uid>/<id>`, below the benchmark's own cgroup), and wake
every 0.2 s, so that each tick finds all of them run and every container in its Frame. Two samplers
read the same processes and the same synthetic powercap tree: one names containers with the real
resolver (`sources/identity/resolver.py`), its engine a fake Docker API on a unix socket that lists
the `docker/` ones and its pods a fake Kubernetes API on loopback that lists the `kubepods/` ones,
the other has no resolver. Names are looked up off the tick; the timing starts once a Frame names
all of them. In each round both tick once, in alternating order, 0.3 s after the previous round.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.common import Budget, Result, median, ms, percentile, scratch_dir
from benchmarks.swarm import Swarm
from tests.support.cgroups import container_cgroup
from tests.support.engine import FakeEngine, container
from tests.support.kubeapi import FakeKubeApi, pod
from tests.support.powercap_tree import PowercapTree
from wattprobe.core.model import Frame
from wattprobe.core.sampler import Sampler
from wattprobe.sources.identity.engine import EngineApi
from wattprobe.sources.identity.kubernetes import KubeApi, PodWatcher
from wattprobe.sources.identity.resolver import Resolver
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

WAKE_S = 0.2  # how often each process wakes: all of them run in every window
NODE = "node-a"
BUDGET = 1.1  # names-on tick / names-off tick
CALL_BUDGET = 1.0  # names() itself, % of the names-off tick


def measure(
    containers: int, per_container: int, rounds: int, warmup_s: float = 60.0
) -> dict[str, float] | None:
    """Times (s) of the ticks with names and without, `per_container` processes in each of
    `containers` containers (half docker, half pods); None where no cgroup can be made here."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=scratch_dir())))
        docker = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(containers - containers // 2)]
        pods = {uuid.uuid4().hex + uuid.uuid4().hex: str(uuid.uuid4()) for _ in range(containers // 2)}
        shapes = [f"docker/{cid}" for cid in docker]
        shapes += [f"kubepods/besteffort/pod{uid}/{cid}" for cid, uid in pods.items()]
        cgroups = []
        for shape in shapes:
            made = stack.enter_context(container_cgroup(shape))
            if made is None:
                return None
            cgroups.append(made)
        engine = stack.enter_context(
            FakeEngine(
                tmp / "engine.sock",
                [container(cid, f"app-{i}", "registry.example/app:1") for i, cid in enumerate(docker)],
            )
        )
        api = stack.enter_context(FakeKubeApi(tmp))
        for i, (cid, uid) in enumerate(pods.items()):
            api.put(pod(uid, f"shop-{i}", "prod", NODE, {"web": cid}))
        for cgroup in cgroups:
            stack.enter_context(Swarm(per_container, cgroup=cgroup, wake_s=WAKE_S))
        tree = PowercapTree(tmp / "powercap")
        kube = KubeApi(api.url, NODE, str(api.token_file), str(api.ca_file))
        resolver = Resolver(
            EngineApi(str(engine.path)), lambda changed: PodWatcher(kube, changed), node_name=NODE
        )
        on = Sampler(PowercapSensor(str(tree.root)), ProcfsReader(), names=resolver)
        stack.callback(on.close)
        off = Sampler(PowercapSensor(str(tree.root)), ProcfsReader())
        stack.callback(off.close)

        def round_(order: tuple[Sampler, ...]) -> dict[Sampler, tuple[float, Frame | None]]:
            time.sleep(1.5 * WAKE_S)
            tree.advance(1.5 * WAKE_S)
            timed = {}
            for sampler in order:
                start = time.perf_counter()
                frame = sampler.tick()
                timed[sampler] = (time.perf_counter() - start, frame)
            return timed

        deadline = time.monotonic() + warmup_s
        while True:  # every process's facts read, every container named
            frame = round_((off, on))[on][1]
            if (
                frame is not None
                and len(frame.workloads) >= containers
                and len(frame.containers) >= containers
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"names of {containers} containers not known after {warmup_s:.0f} s")
        ticks: dict[Sampler, list[float]] = {on: [], off: []}
        named, seen, consumers = [], [], []
        for r in range(rounds):
            timed = round_((on, off) if r % 2 else (off, on))
            for sampler, (took, made) in timed.items():
                ticks[sampler].append(took)
                if sampler is on and made is not None:
                    frame = made
                    named.append(len(frame.workloads))
                    seen.append(len(frame.containers))
                    consumers.append(len(frame.consumers))
        tracked = on.procfs.tracked
        call = _names_call(resolver, frame)
    pairs = [a / b for a, b in zip(ticks[on], ticks[off], strict=True)]
    return {
        "on": median(ticks[on]),
        "off": median(ticks[off]),
        "on_p90": percentile(ticks[on], 90),
        "off_p90": percentile(ticks[off], 90),
        "ratio": median(pairs),
        "ratio_of_medians": median(ticks[on]) / median(ticks[off]),
        "pair_low": min(pairs),
        "pair_high": max(pairs),
        "named": min(named, default=0),
        "containers": min(seen, default=0),
        "consumers": median([float(c) for c in consumers]),
        "frames": len(named),
        "processes": tracked,
        "names_call": call,
    }


def _names_call(resolver: Resolver, frame: Frame, runs: int = 200) -> float:
    """The least time (s) of the resolver's `names()` over a Frame's containers: what names add to a tick."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        resolver.names(c.container for c in frame.containers if c.container)
        best = min(best, time.perf_counter() - start)
    return best


def bench(containers: int = 50, per_container: int = 20, rounds: int = 40) -> Result:
    n = containers * per_container
    result = Result(
        "names",
        f"Containers' names on the tick: {n:,} processes in {containers} containers",
        __doc__.split("\n", 2)[2]
        + f"\nMedians of {rounds} rounds. On / off: the median of each round's ratio of its two ticks (both "
        "taken in the same second, under the same load), with the lowest and the highest; the ratio of "
        "the medians alongside. `names()` itself: the least of 200 calls over a Frame's containers, "
        "what the names add to a tick's own work.",
    )
    m = measure(containers, per_container, rounds)
    if m is None:
        result.notes.append("No cgroup could be made here (not root?): not measured.")
        return result
    result.tables.append(
        [
            [
                "processes in containers",
                "tracked",
                "containers in the Frame / named",
                "consumers",
                "tick, names off (median)",
                "tick, names on (median)",
                "p90 off / on",
                "on / off (rounds' median)",
                "lowest to highest",
                "ratio of the medians",
                "names() itself",
            ],
            [
                f"{n:,} in {containers}",
                f"{m['processes']:,.0f}",
                f"{m['containers']:.0f} / {m['named']:.0f}",
                f"{m['consumers']:,.0f}",
                ms(m["off"]),
                ms(m["on"]),
                f"{ms(m['off_p90'])} / {ms(m['on_p90'])}",
                f"{m['ratio']:.3f}",
                f"{m['pair_low']:.2f} to {m['pair_high']:.2f}",
                f"{m['ratio_of_medians']:.3f}",
                f"{m['names_call'] * 1e6:.1f} µs",
            ],
        ]
    )
    result.numbers |= m
    result.budgets += [
        Budget(
            f"tick with names / without, {n:,} processes in {containers} containers", m["ratio"], BUDGET, "×"
        ),
        Budget("names() / the tick without names", 100 * m["names_call"] / m["off"], CALL_BUDGET, "%"),
    ]
    return result
