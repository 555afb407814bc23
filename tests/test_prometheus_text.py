"""The exporter's own text writer gives, byte for byte, what prometheus_client's writers give for the same
families, in every format and naming it writes; the formats it does not write are prometheus_client's."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from tests.prometheus_support import AGENT_STATS
from tests.support import frames
from tests.test_catalogue import HOST, MACHINE
from wattprobe.core.model import Container, DiskIo, DomainPower, Frame, Group, SocketPower
from wattprobe.core.vms import with_guest
from wattprobe.sinks import catalogue
from wattprobe.sinks.promfamilies import FrameCollector
from wattprobe.sinks.promoptions import SeriesSettings

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
PROMETHEUS = (  # what Prometheus 2.x sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
CONTAINER = Container("c" * 64, "containerd", "kubernetes", "0a1b2c3d-0000-1111-2222-333344445555")


def tricky_frame() -> Frame:
    """Every part a scrape can hold, with label values that need escaping and numbers in every range."""
    quoted = frames.process(101, 'app --name "x" --path C:\\dir\n--next', exe="/usr/bin/app")
    qemu = with_guest(
        frames.process(102, exe="/usr/bin/qemu-system-x86_64", argv=("qemu", "-name", "guest=web01"))
    )
    unicode = frames.process(103, "/usr/bin/größe --ünï 🦀", exe="/usr/bin/größe", container=CONTAINER)
    consumers = [
        dataclasses.replace(
            frames.consumer(quoted, 30.0, rss_bytes=123_456_789, vsize_bytes=9_876_543_210),
            disk_io=DiskIo(4096, 8192, 1024, 0),
            exited_cpu_ns=1000,
            exited_watts=12.5,
        ),
        frames.consumer(qemu, 1e-9, rss_bytes=0),
        frames.consumer(unicode, 7.0 / 3),
    ]
    domains = (DomainPower("core", 12.0, 1234567.891, 0), DomainPower("dram", 5.0, 50.0, 1))
    return frames.frame(
        consumers,
        host_watts=60.0,
        host_energy_j=12_345_678.9,
        sockets=(SocketPower(0, 20.0, 200.0, domains), SocketPower(1, 0.0, 0.0, ())),
        cgroups=(Group('/system.slice/a"b\\c\n.service', 30.0, 0.3, 1),),
        containers=(Group(CONTAINER.id, 7.0 / 3, 0.04, 1, CONTAINER),),
        exes=(Group("/usr/bin/app", 30.0, 0.3, 1), Group("[kworker/0:1]", 0.5, 0.01, 1)),
        agent=AGENT_STATS,
        host=HOST,
        machine=MACHINE,
    )


def reference(collector: FrameCollector, openmetrics: bool) -> bytes:
    """prometheus_client's writer on a registry holding the collector's families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if openmetrics:
        return openmetrics_latest(registry)
    text = generate_latest(registry)
    if collector.opts.naming == "scaphandre":  # Scaphandre's µJ counters: the name their samples carry
        for family in catalogue.families("scaphandre"):
            name = (family.name("scaphandre") or "").encode()
            if family.kind_in("scaphandre") == "counter" and not name.endswith(b"_total"):
                for line in (b"# HELP ", b"# TYPE "):
                    text = text.replace(line + name + b"_total ", line + name + b" ")
    return text


SETTINGS = [
    SeriesSettings(),
    SeriesSettings(qemu=True, containers=True, cmdline_max_length=12),
    SeriesSettings(naming="scaphandre"),
    SeriesSettings(naming="scaphandre", qemu=True, containers=True),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=["native", "native-labels", "scaph", "scaph-labels"])
@pytest.mark.parametrize("hostname", [None, "host-1"])
@pytest.mark.parametrize("with_frame", [True, False])
def test_the_same_bytes_as_prometheus_client(
    settings: SeriesSettings, hostname: str | None, with_frame: bool
):
    fixed = tricky_frame() if with_frame else None
    collector = FrameCollector(lambda: fixed, settings, hostname)
    body, content_type = collector.exposition("")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert body == reference(collector, openmetrics=False)
    for accept in (OPENMETRICS, PROMETHEUS):
        body, content_type = collector.exposition(accept)
        if settings.naming == "scaphandre":  # always text 0.0.4
            assert content_type == "text/plain; version=0.0.4; charset=utf-8"
            assert body == reference(collector, openmetrics=False)
        else:
            assert content_type.startswith("application/openmetrics-text; version=1.0.0")
            assert body == reference(collector, openmetrics=True)
    if with_frame:
        # escaped, not only equal: quotes and backslashes; a newline (the cmdline label has none left)
        assert b'cmdline="app --name \\"' in body
        assert b'cgroup="/system.slice/a\\"b\\\\c\\n.service"' in body


def test_formats_it_does_not_write_are_prometheus_client_s():
    """An escaping that rewrites names (dots) is left to prometheus_client, whose writer does it."""
    fixed = tricky_frame()
    collector = FrameCollector(lambda: fixed, SeriesSettings())
    body, content_type = collector.exposition("application/openmetrics-text;version=1.0.0;escaping=dots")
    assert "escaping=dots" in content_type
    assert b"wattprobe__host__power__watts" in body
