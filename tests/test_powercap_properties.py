"""Property tests of the powercap readers and of the counter judge, on generated sysfs files.

`discover` and `PowercapSensor.read` get well-formed values (and must give them back) or anything a
broken or fake tree may hold (and must give SensorUnavailable / SensorReadError, nothing else). The
counter judge gets generated sequences of energy_uj contents, torn, garbled, negative, huge, going
backwards, wrapping or resetting: every window it accepts is the difference of the values it read,
never negative and never beyond what the zone can draw in that window (no spike), and clean sequences
give every window.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.powercap_tree import FakeClock
from tests.support.procfs import rewrite
from wattprobe.core.counters import SLACK_S, CounterGuard
from wattprobe.errors import SensorReadError, SensorUnavailable
from wattprobe.sources.powercap import STATED_POWER_MARGIN, PowercapSensor, discover

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUND_S = 0.05  # per call, on a loaded machine

_ODD = ["", " ", "²", "١٢", "-1", "+5", "1_0", "0x10", "1e3", "nan", "9" * 21, "9" * 5000, "\xff"]
garbage = st.one_of(
    st.sampled_from(_ODD).map(str.encode),
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode(errors="surrogatepass")),
    st.integers(1, 128 * 1024).map(lambda n: b"9" * n),
)
u64_text = st.integers(0, 2**64 - 1).map(lambda v: f"{v}\n".encode())


def text_of(raw: bytes) -> str:
    """What a sysfs text file says: its UTF-8 text stripped, or "" when it is not UTF-8."""
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        return ""


def u64_of(raw: bytes) -> int | None:
    """A sysfs u64 value the plain way: ASCII digits only, below 2**64... or any 20 digits."""
    text = text_of(raw)
    return int(text) if re.fullmatch("[0-9]{1,20}", text) else None


@contextlib.contextmanager
def tree(files: dict[str, bytes]) -> Iterator[str]:
    """A powercap root holding `files` (paths relative to it)."""
    with tempfile.TemporaryDirectory() as directory:
        for name, content in files.items():
            path = Path(directory) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        yield directory


@PROPERTY
@given(
    name=st.one_of(st.sampled_from([b"package-0\n", b"package-3\n", b"psys\n", b"\n"]), garbage),
    max_range=st.one_of(u64_text, garbage),
    limits=st.lists(st.one_of(u64_text, garbage), max_size=3),
    domain=st.one_of(st.none(), st.sampled_from([b"core\n", b"dram\n", b"uncore\n", b"\xff\n", b""])),
)
@example(
    name=b"package-0", max_range="²".encode(), limits=[], domain=None
)  # was a ValueError out of discover
@example(name=b"package-0", max_range=b"1", limits=[b"9" * 400], domain=None)  # was an OverflowError
@example(name=b"package-" + b"9" * 5000, max_range=b"1", limits=[], domain=None)  # was a ValueError
def test_discover_gives_the_zones_the_files_say_or_one_clear_error(name, max_range, limits, domain):
    files = {
        "intel-rapl:0/name": name,
        "intel-rapl:0/energy_uj": b"5\n",
        "intel-rapl:0/max_energy_range_uj": max_range,
    }
    files |= {f"intel-rapl:0/constraint_{i}_power_limit_uw": v for i, v in enumerate(limits)}
    if domain is not None:
        files |= {"intel-rapl:0:0/name": domain, "intel-rapl:0:0/energy_uj": b"7\n"}
    watts = [v / 1e6 for v in map(u64_of, limits) if v is not None]
    max_uj, max_w = u64_of(max_range) or 0, max(watts, default=0.0) * STATED_POWER_MARGIN
    package_name = text_of(name) or "package-0"
    match = re.match(r"package-([0-9]{1,9})(?![0-9])", package_name)
    expected = []
    if package_name == "psys":
        expected.append((None, "psys", max_uj, max_w))
    elif match:
        expected.append((int(match.group(1)), "package", max_uj, max_w))
    if domain is not None and text_of(domain):
        expected.append((int(match.group(1)) if match else 0, text_of(domain), 0, 0.0))
    with tree(files) as root:
        started = time.perf_counter()
        try:
            zones = discover(root)
        except SensorUnavailable as error:
            assert not expected and "no RAPL zones" in str(error)
        else:
            assert [(z.socket, z.domain, z.max_uj, z.max_w) for z in zones] == expected
        assert time.perf_counter() - started < BOUND_S * 4


@PROPERTY
@given(content=st.one_of(u64_text, garbage))
def test_an_energy_counter_reads_as_its_value_or_one_read_error(content):
    with tree({"intel-rapl:0/name": b"package-0\n", "intel-rapl:0/energy_uj": b"5\n"}) as root:
        sensor = PowercapSensor(root)
        rewrite(Path(root) / "intel-rapl:0" / "energy_uj", content)
        started = time.perf_counter()
        try:
            reading = sensor.read()
        except SensorReadError:
            assert u64_of(content) is None
        else:
            # int() takes a little more than the kernel writes ("+5", "1_0", padding): still the value
            assert reading.counters[0].uj == int(content) >= 0
            assert u64_of(content) in (None, reading.counters[0].uj)
        assert time.perf_counter() - started < BOUND_S


# -- the counter judge --------------------------------------------------------------------------------
KINDS = ["exact", "exact", "exact", "torn", "empty", "garbage", "negative", "huge", "backwards", "reset"]
steps = st.lists(
    st.tuples(
        st.integers(1_000_000, 5_000_000_000),  # the window, ns
        st.floats(0, 1.3),  # power, as a share of the zone's bound (above 1: a spike, to refuse)
        st.lists(st.tuples(st.sampled_from(KINDS), garbage), min_size=1, max_size=6),  # reads in this step
    ),
    min_size=1,
    max_size=25,
)


class Zone:
    """One package zone whose energy_uj the test writes, read by a real PowercapSensor on a fake clock."""

    def __init__(self, root: str, max_uj: int, stated_w: float, start_uj: int) -> None:
        self.path = Path(root) / "intel-rapl:0" / "energy_uj"
        self.path.parent.mkdir()
        (self.path.parent / "name").write_text("package-0\n")
        (self.path.parent / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (self.path.parent / "constraint_0_max_power_uw").write_text(f"{round(stated_w * 1e6)}\n")
        self.max_uj = max_uj
        self.true_uj = start_uj  # what the hardware counted, before it wraps
        self.clock = FakeClock()
        self.write(b"%d\n" % start_uj)
        self.sensor = PowercapSensor(root, clock=self.clock)
        self.bound_w = self.sensor.zones[0].max_w
        self.pending: list[bytes] = []  # what the file holds at the re-reads to come

    def write(self, content: bytes) -> None:
        rewrite(self.path, content)

    def sleep(self, seconds: float) -> None:
        """The judge's pause between re-reads: a ms passes, and the file may change."""
        self.clock.ns += 1_000_000
        if self.pending:
            self.write(self.pending.pop(0))

    def render(self, kind: str, junk: bytes) -> bytes:
        value = self.true_uj % self.max_uj
        text = b"%d\n" % value
        return {
            "exact": text,
            "torn": text[: len(text) // 2],
            "empty": b"",
            "garbage": junk,
            "negative": b"-%d\n" % (value + 1),
            "huge": b"%d\n" % (value + 10**15),
            "backwards": b"%d\n" % max(value - 10**6, 0),
            "reset": text,
        }[kind]


def judge(max_uj: int, stated_w: float, start_uj: int, plan: list) -> tuple[list, list[int]]:
    """Drive a CounterGuard through `plan`: every accepted window as (µJ, s, value before, value after),
    and the µJ the zone spent in each step."""
    windows, spent = [], []
    with tempfile.TemporaryDirectory() as root:
        zone = Zone(root, max_uj, stated_w, start_uj)
        guard = CounterGuard(zone.sensor, sleep=zone.sleep, clock=lambda: zone.clock.ns / 1e9)
        last = guard.baseline(quiet=True)
        assert last is not None and last.counters[0].uj == start_uj
        for window_ns, share, reads in plan:
            zone.clock.ns += window_ns
            spent.append(round(share * zone.bound_w * window_ns / 1e3))
            zone.true_uj += spent[-1]
            if any(kind == "reset" for kind, _ in reads):
                zone.true_uj = 0
            contents = [zone.render(kind, junk) for kind, junk in reads]
            zone.write(contents[0])
            zone.pending = contents[1:]
            started = time.perf_counter()
            accepted = guard.next(last)
            assert time.perf_counter() - started < BOUND_S * 4  # five reads at most, each of a small file
            if accepted is None:
                continue
            if accepted.deltas is not None:
                ((_, delta),) = accepted.deltas.items()
                window_s = (accepted.reading.t_ns - last.t_ns) / 1e9
                windows.append((delta, window_s, last.counters[0].uj, accepted.reading.counters[0].uj))
            last = accepted.reading
    return windows, spent


@PROPERTY
@given(
    max_uj=st.integers(10**6, 2**40),
    stated_w=st.floats(1, 500),
    start=st.floats(0, 1),
    plan=steps,
)
def test_the_counter_judge_gives_no_negative_power_and_no_spike(max_uj, stated_w, start, plan):
    bound_w = stated_w * STATED_POWER_MARGIN
    windows, _ = judge(max_uj, stated_w, round(start * (max_uj - 1)), plan)
    for delta, window_s, before, after in windows:
        assert delta == (after - before if after >= before else after - before + max_uj)  # across a wrap
        assert 0 < delta <= min(bound_w * (window_s + SLACK_S) * 1e6, max_uj // 2)


@PROPERTY
@given(
    max_uj=st.integers(10**11, 2**40),  # above twice what 2,000 W make in 5 s: no window is half the range
    stated_w=st.floats(1, 500),
    start=st.floats(0, 1),
    plan=st.lists(
        st.tuples(st.integers(1_000_000, 5_000_000_000), st.floats(0.01, 0.9), st.just([("exact", b"")])),
        min_size=2,
        max_size=20,
    ),
)
def test_clean_counters_give_every_window_right(max_uj, stated_w, start, plan):
    """Counters that advance at a power the zone can draw, wrapping or not: after the first step (the
    counters' first move aligns the windows), every window is the energy spent, to the µJ."""
    windows, spent = judge(max_uj, stated_w, round(start * (max_uj - 1)), plan)
    assert [(w[0], round(w[1] * 1e9)) for w in windows] == [
        (uj, ns) for uj, (ns, _, _) in zip(spent[1:], plan[1:], strict=True)
    ]
