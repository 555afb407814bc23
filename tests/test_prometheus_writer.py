"""The scrape's writer: byte for byte prometheus_client's encoders, scrape after scrape, in every naming.

Each scrape's body (`FrameCollector.exposition`, which keeps each series' start) is compared with
what prometheus_client's encoder writes for the same Frame from a collector of its own, through the
Frames a host goes through: values that change, a process that leaves and one that comes, labels
that need escaping, the families empty before the first Frame.
"""

from __future__ import annotations

import functools

import pytest
from prometheus_client.exposition import choose_encoder, generate_latest

from tests.support import frames
from tests.support.prometheus import AGENT_STATS, PROMETHEUS_ACCEPT
from wattprobe.core.model import Container, DiskIo, DomainPower, Frame, Group, ProcessInfo, SocketPower
from wattprobe.sinks.kit import catalogue
from wattprobe.sinks.prometheus.families import TEXT_0_0_4, FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.prometheus.writer import KEEP, Head, Writer, _Registry

POD = "0a1b2c3d-0000-1111-2222-333344445555"
CONTAINER = Container("c" * 64, "containerd", "kubernetes", POD)
ACCEPTS = {
    "text 0.0.4": "",
    "OpenMetrics, as Prometheus asks": PROMETHEUS_ACCEPT,
    "text 1.0.0, names as they are": "text/plain;version=1.0.0;escaping=allow-utf-8",
}


@functools.cache
def _process(pid: int, hostile: bool) -> ProcessInfo:
    """A process's facts: the same object from one Frame to the next, as the /proc reader gives them."""
    cmdline = f"/usr/bin/app --id {pid}"
    if hostile and pid == 102:
        cmdline = '/usr/bin/app --name "q\\uote"\n{x="1"} é \u202e'
    return frames.process(pid, cmdline, exe="/usr/bin/app", container=CONTAINER if pid == 101 else None)


def _frame(step: int, *, hostile: bool = False) -> Frame:
    """A host at its `step`-th measurement: values move; process 103 leaves at step 2, 104 comes."""
    pids = [101, 102, 103] if step < 2 else [101, 102, 104]
    consumers = []
    for i, pid in enumerate(pids):
        info = _process(pid, hostile)
        watts = 10.0 + i + step / 3
        consumers.append(
            frames.consumer(
                info,
                watts,
                rss_bytes=pid * 4096 + step,
                disk_io=DiskIo(4096 * step, 8192, 1024 * step, 2048),
            )
        )
    domains = (DomainPower("core", 12.0 + step, 120.0 * step, 0), DomainPower("dram", 5.0, 50.0 * step, 1))
    return frames.frame(
        consumers,
        host_watts=60.0 + step,
        host_energy_j=600.0 * (step + 1),
        sockets=(SocketPower(0, 20.0, 200.0 * step, domains),),
        cgroups=(Group("/system.slice/x", 30.0, 0.3, 3),),
        containers=(Group(CONTAINER.id, 10.0, 0.1, 1, CONTAINER),),
        exes=(Group("/usr/bin/app", 33.0 + step, 0.33, 3),),
        agent=AGENT_STATS,
        timestamp=frames.TIMESTAMP + step,
    )


def _library(collector: FrameCollector, accept: str) -> bytes:
    """What prometheus_client's encoder writes from the collector (Scaphandre's counters renamed)."""
    if collector.opts.naming != "scaphandre":
        return choose_encoder(accept)[0](collector)
    text = generate_latest(collector)
    for family in catalogue.families("scaphandre"):
        name = family.sample_name("scaphandre").encode()
        if family.kind_in("scaphandre") == "counter" and not name.endswith(b"_total"):
            for line in (b"# HELP ", b"# TYPE "):
                text = text.replace(line + name + b"_total ", line + name + b" ")
    return text


@pytest.mark.parametrize("naming", ["native", "scaphandre", "kepler"])
@pytest.mark.parametrize("accept", list(ACCEPTS.values()), ids=list(ACCEPTS))
@pytest.mark.parametrize("hostile", [False, True], ids=["plain labels", "labels to escape"])
def test_each_scrape_is_the_library_s_text_byte_for_byte(naming: str, accept: str, hostile: bool) -> None:
    opts = SeriesSettings(naming=naming, containers=True)
    shown: list[Frame | None] = [None]
    ours = FrameCollector(lambda: shown[0], opts)
    theirs = FrameCollector(lambda: shown[0], opts)
    for step in (None, 0, 1, 2, 3):
        shown[0] = None if step is None else _frame(step, hostile=hostile)
        body, content_type = ours.exposition(accept)
        expected = _library(theirs, accept)
        assert body == expected, f"step {step}"
        if naming == "scaphandre":
            assert content_type == TEXT_0_0_4
    assert b'="104"' in body and b'="103"' not in body  # the process that came, not the one gone


def test_what_is_kept_is_what_was_shown_lately() -> None:
    """A series gone from the Frames is forgotten after KEEP to 2 * KEEP scrapes; a scraper's Accept
    headers cannot grow the kept formats."""
    shown = [_frame(0)]
    collector = FrameCollector(lambda: shown[0], SeriesSettings())
    collector.exposition("")
    shown[0] = _frame(2)
    (writer,) = collector._writers.values()

    def series() -> set[tuple[object, ...]]:
        return {
            (head, labels)
            for kept in (writer._older, writer._starts)
            for head in kept
            for labels in kept[head]
        }

    def kept(pid: str) -> bool:
        return any(repr(("pid", pid)) in labels for _, labels in series())

    for _ in range(2 * KEEP):
        body, _ = collector.exposition("")
    assert kept("104") and not kept("103")
    lines = [line for line in body.split(b"\n") if line and not line.startswith(b"#")]
    assert len(series()) == len(lines)
    for version in range(1, 20):
        collector.exposition(f"application/openmetrics-text;version=1.0.{version}")
    assert len(collector._writers) <= 4


@pytest.mark.parametrize("accept", list(ACCEPTS.values()), ids=list(ACCEPTS))
def test_every_kind_of_value_is_written_as_the_library_writes_it(accept: str) -> None:
    """The writer formats values itself below 1e6 (repr); at the bounds and beyond, ints, and what is
    not a number, its text is still the encoder's."""
    values = [0, 0.0, -0.0, 1, 2**40, 0.1, 1 / 3, 999_999.999_999_9, 1e6, -1e6, 1_234_567.0, 1e15, 1e16]
    values += [1.5e17, 1e22, -2.5e-7, 5e-324, float("nan"), float("inf"), float("-inf"), True]
    head = Head("wattprobe_test_value", "A value.", "gauge", "", "wattprobe_test_value")
    writer = Writer(choose_encoder(accept)[0], lambda head, text: text)
    samples = [({"i": str(i)}, value) for i, value in enumerate(values)]
    metric = head.metric()
    for labels, value in samples:
        metric.add_sample(head.sample_name, labels, value)
    expected = choose_encoder(accept)[0](_Registry(metric))
    for _ in range(2):  # the series new, then kept
        assert writer.body([(head, samples)]) == expected


@pytest.mark.parametrize("accept", list(ACCEPTS.values()), ids=list(ACCEPTS))
def test_a_series_value_after_value_is_written_as_the_library_writes_it(accept: str) -> None:
    """A series whose value did not change gets its last line again: a value equal to the last but
    written otherwise (-0.0 after 0.0) is not taken for it."""
    sequence = [0.0, -0.0, -0.0, 0, 1, 1.0, True, 1, 2e6, 2e6, 2_000_000, float("nan"), float("nan"), 0.0]
    head = Head("wattprobe_test_value", "A value.", "gauge", "", "wattprobe_test_value")
    writer = Writer(choose_encoder(accept)[0], lambda head, text: text)
    labels = {"i": "0"}
    for value in sequence:
        metric = head.metric()
        metric.add_sample(head.sample_name, labels, value)
        assert writer.body([(head, [(labels, value)])]) == choose_encoder(accept)[0](_Registry(metric)), value
