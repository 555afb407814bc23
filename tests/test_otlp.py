"""`wattprobe otlp`, in process: Frames made by hand exported by the real sink (the SDK's exporter) to a
loopback receiver that decodes the wire format with opentelemetry-proto."""

from __future__ import annotations

import argparse
import dataclasses
import math
import ssl
import sys
import time
from pathlib import Path

import pytest

from tests.support import frames
from tests.support.otlp import CUMULATIVE, Point, Receiver
from tests.support.pki import make_pki
from wattprobe.core.model import Container, DomainPower, Frame, Group, SocketPower, Workload
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import Context, Fatal, Retry
from wattprobe.sinks.otlp import sink as otlp
from wattprobe.sinks.otlp.sink import OtlpSink, Settings, endpoint, headers

CONTAINER = Container("c0ffee" + "0" * 58, "containerd", "kubernetes", pod_uid="0d1e-pod")
WORKLOAD = Workload(
    name="web", image="nginx:1.27", pod_name="web-7f9", pod_namespace="shop", pod_uid="0d1e-pod"
)
S = 1_000_000_000


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_COMPRESSION"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Receiver:
    server = Receiver()
    yield server  # type: ignore[misc]
    server.stop()


def synchronous(settings: Settings, hostname: str = "box") -> OtlpSink:
    """The sink as create() makes it: write() renders and exports at once (the pipeline, not the sink,
    queues the exports of a running agent)."""
    return otlp.create(settings, Context(hostname))


def a_frame(
    timestamp: float = frames.TIMESTAMP, *, watts: tuple[float, float] = (20.0, 10.0), **more
) -> Frame:
    """Host 60 W; nginx (in a Kubernetes container) and a QEMU guest drawing `watts`; one socket."""
    nginx = frames.process(10, argv=["/usr/sbin/nginx", "-g", "daemon off;"], container=CONTAINER)
    guest = frames.process(11, argv=["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1"])
    socket = SocketPower(
        0, 30.0, 300.0, (DomainPower("core", 12.0, 120.0), DomainPower("dram", 5.0, 50.0, 1))
    )
    frame = frames.frame(
        [frames.consumer(nginx, watts[0]), frames.consumer(guest, watts[1])],
        host_watts=60.0,
        host_energy_j=600.0,
        sockets=[socket],
        containers=[Group(CONTAINER.id, watts[0], 0.2, 1, container=CONTAINER)],
        timestamp=timestamp,
        **more,
    )
    return dataclasses.replace(frame, workloads={CONTAINER.id: WORKLOAD}, node_name="node-a")


def one(points: list[Point], name: str, **attributes: object) -> Point:
    found = [p for p in points if p.name == name and attributes.items() <= p.attributes.items()]
    assert len(found) == 1, (name, attributes, found)
    return found[0]


def test_names_units_types_attributes_and_resource(receiver: Receiver) -> None:
    sink = synchronous(Settings(endpoint=receiver.url), hostname="rack1-node4")
    sink.write(a_frame())
    sink.close()
    assert receiver.errors == []
    (request,) = receiver.requests
    assert request.path == "/v1/metrics" and request.headers["content-type"] == "application/x-protobuf"
    points = request.points
    end = round(frames.TIMESTAMP * S)
    gauges = {p.name for p in points if p.kind == "gauge"}
    sums = {p.name for p in points if p.kind == "sum"}
    assert gauges == {
        f"{n}.power"
        for n in ("hw.host", "hw", *(f"wattprobe.{w}" for w in ("process", "container", "pod", "vm")))
    }
    assert sums == {name.replace(".power", ".energy") for name in gauges}
    assert {p.unit for p in points if p.kind == "gauge"} == {"W"} and {
        p.unit for p in points if p.kind == "sum"
    } == {"J"}
    assert all(p.temporality == CUMULATIVE and p.monotonic for p in points if p.kind == "sum")
    assert all(p.time_ns == end for p in points)
    assert all(p.start_ns == end - S for p in points if p.kind == "sum")  # the first window's start
    assert points[0].resource == {
        "host.name": "rack1-node4",
        "service.name": "wattprobe",
        "service.version": points[0].resource["service.version"],
    }

    host = {"hw.id": "host", "hw.name": "rack1-node4"}
    assert one(points, "hw.host.power").attributes == host and one(points, "hw.host.power").value == 60.0
    assert one(points, "hw.host.energy").value == 600.0
    package = {"hw.id": "socket-0", "hw.type": "cpu", "hw.name": "package-0", "hw.parent": "host"}
    assert (
        one(points, "hw.power", **package).value == 30.0
        and one(points, "hw.energy", **package).value == 300.0
    )
    assert one(points, "hw.power", **{"hw.name": "core"}).attributes == {
        "hw.id": "socket-0-core", "hw.type": "cpu", "hw.name": "core", "hw.parent": "socket-0"
    }  # fmt: skip
    dram = one(points, "hw.energy", **{"hw.name": "dram"})
    assert dram.attributes["hw.type"] == "memory" and dram.value == 50.0

    pod = {
        "k8s.pod.uid": "0d1e-pod",
        "k8s.pod.name": "web-7f9",
        "k8s.namespace.name": "shop",
        "k8s.node.name": "node-a",
    }
    container = {
        "container.id": CONTAINER.id,
        "container.name": "web",
        "container.image.name": "nginx:1.27",
        "container.runtime.name": "containerd",
        **pod,
    }
    nginx = one(points, "wattprobe.process.power", **{"process.pid": 10})
    assert nginx.attributes == {
        "process.pid": 10,
        "process.executable.name": "nginx",
        "process.executable.path": "/usr/sbin/nginx",
        "process.command_line": "/usr/sbin/nginx -g daemon off;",
        **container,
    }
    assert nginx.value == 20.0
    assert one(points, "wattprobe.process.energy", **{"process.pid": 10}).value == 20.0  # 20 W over 1 s
    assert one(points, "wattprobe.container.power").attributes == container
    assert one(points, "wattprobe.container.energy").value == 20.0
    assert (
        one(points, "wattprobe.pod.power").attributes == pod
        and one(points, "wattprobe.pod.power").value == 20.0
    )
    guest = one(points, "wattprobe.process.power", **{"process.pid": 11})
    assert guest.attributes["wattprobe.vm.name"] == "vm1" and "container.id" not in guest.attributes
    vm = one(points, "wattprobe.vm.energy")
    assert vm.attributes == {"wattprobe.vm.name": "vm1"} and vm.value == 10.0
    assert not [p for p in points if "wattprobe.estimated" in p.attributes]


def test_an_estimated_frame_marks_every_point(receiver: Receiver) -> None:
    sink = synchronous(Settings(endpoint=receiver.url))
    sink.write(a_frame(estimated=True, sensor="estimate"))
    points = receiver.points()
    assert points and all(p.attributes["wattprobe.estimated"] is True for p in points)


def test_energy_sums_never_go_down_and_count_the_frames_a_process_was_not_listed(receiver: Receiver) -> None:
    sink = synchronous(Settings(endpoint=receiver.url, max_top_consumers=1))
    # nginx is first, then second (not listed: -m 1), then first again; each Frame is a 1 s window.
    for i, watts in enumerate([(20.0, 10.0), (5.0, 10.0), (20.0, 1.0)]):
        frame = a_frame(frames.TIMESTAMP + i, watts=watts)
        if watts[0] < watts[1]:
            frame = dataclasses.replace(frame, consumers=frame.consumers[::-1])
        sink.write(frame)
    energy = [p for p in receiver.points("wattprobe.process.energy") if p.attributes["process.pid"] == 10]
    assert [p.value for p in energy] == [20.0, 45.0]  # 20 + 5 (while not listed) + 20
    assert [p.time_ns for p in energy] == [round(frames.TIMESTAMP * S), round((frames.TIMESTAMP + 2) * S)]
    assert {p.start_ns for p in energy} == {round(frames.TIMESTAMP * S) - S}
    vm = [p.value for p in receiver.points("wattprobe.vm.energy")]
    assert vm == [10.0, 20.0, 21.0]
    host = receiver.points("hw.host.energy")
    assert len({p.start_ns for p in host}) == 1 and len(host) == 3


def test_a_workload_gone_past_the_grace_restarts_from_zero_with_a_new_start(receiver: Receiver) -> None:
    sink = synchronous(Settings(endpoint=receiver.url))
    gone = a_frame(frames.TIMESTAMP + 601.5)  # nginx and its pod away for 600.5 s: forgotten
    gone = dataclasses.replace(gone, consumers=gone.consumers[1:], containers=())
    for frame in (a_frame(), a_frame(frames.TIMESTAMP + 1), gone, a_frame(frames.TIMESTAMP + 602.5)):
        sink.write(frame)
    for name, attributes in (
        ("wattprobe.process.energy", {"process.pid": 10}),
        ("wattprobe.container.energy", {}),
        ("wattprobe.pod.energy", {}),
    ):
        found = [p for p in receiver.points(name) if attributes.items() <= p.attributes.items()]
        assert [p.value for p in found] == [20.0, 40.0, 20.0], name
        starts = [round(frames.TIMESTAMP * S) - S] * 2 + [round((frames.TIMESTAMP + 601.5) * S)]
        assert [p.start_ns for p in found] == starts, name
    vm = receiver.points("wattprobe.vm.energy")  # the guest never left: one counter
    assert [p.value for p in vm] == [10.0, 20.0, 30.0, 40.0] and len({p.start_ns for p in vm}) == 1


def test_a_power_that_is_not_a_number_adds_no_energy(receiver: Receiver) -> None:
    sink = synchronous(Settings(endpoint=receiver.url))
    for i in range(3):
        frame = a_frame(frames.TIMESTAMP + i)
        if i == 1:  # the guest's power unknown
            nginx, guest = frame.consumers
            frame = dataclasses.replace(frame, consumers=(nginx, dataclasses.replace(guest, watts=math.nan)))
        sink.write(frame)
    assert [p.value for p in receiver.points("wattprobe.vm.energy")] == [10.0, 10.0, 20.0]
    assert [p.value for p in receiver.points("wattprobe.vm.power")] == [10.0, 10.0]  # NaN: absent


def test_gzip_and_headers_from_the_option_over_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=from%20env,x-tenant=a%2Cb%3Dc")
    settings = Settings(endpoint=receiver.url, headers="X-Api-Key=s3cr%3Dt%20key", compression="gzip")
    synchronous(settings).write(a_frame())
    assert receiver.errors == []
    (request,) = receiver.requests
    assert request.headers["content-encoding"] == "gzip"
    assert request.headers["x-api-key"] == "s3cr=t key"  # the option's, percent-decoded
    assert request.headers["x-tenant"] == "a,b=c"  # the environment's, percent-decoded
    assert one(request.points, "hw.host.power").value == 60.0


def test_the_environment_names_the_endpoint_and_the_resource(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url + "/")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,host.name=h%C3%A9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "power")
    synchronous(Settings()).write(a_frame())
    (request,) = receiver.requests
    assert request.path == "/v1/metrics"
    resource = request.points[0].resource
    assert resource["deployment.environment.name"] == "prod"
    assert resource["host.name"] == "hé" and resource["service.name"] == "power"


def test_endpoint_as_the_specification_orders_it() -> None:
    assert endpoint(None, {}) == "http://localhost:4318/v1/metrics"
    assert (
        endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/otlp/"})
        == "https://c:4318/otlp/v1/metrics"
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:2/custom",
    }
    assert endpoint(None, env) == "http://m:2/custom"  # the signal's own: as is
    assert endpoint("http://opt:3", env) == "http://opt:3/v1/metrics"  # the option wins
    assert endpoint("http://opt:3/v1/metrics", {}) == "http://opt:3/v1/metrics"  # not twice
    with pytest.raises(UsageError, match="OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL"):
        endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    with pytest.raises(UsageError, match="--endpoint must be"):
        Settings(endpoint="grpc://x")


def test_malformed_headers_are_one_error_that_shows_no_value() -> None:
    assert headers("a=1,B=x%2Cy") == {"a": "1", "b": "x,y"}
    for text in ("Authorization Bearer hunter2", "a=1,=hunter2", "bad key=hunter2"):
        with pytest.raises(argparse.ArgumentTypeError) as error:
            otlp.header_list(text)
        assert "hunter2" not in str(error.value) and "KEY=VALUE" in str(error.value)


def test_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca.pem"])
    tls.verify_mode = ssl.CERT_REQUIRED
    tls.load_cert_chain(pki["localhost.pem"], pki["localhost.key"])
    server = Receiver(tls=tls)
    try:
        settings = Settings(
            endpoint=server.url,
            ca_file=str(pki["ca.pem"]),
            cert_file=str(pki["wattprobe-client.pem"]),
            key_file=str(pki["wattprobe-client.key"]),
        )
        synchronous(settings).write(a_frame())
    finally:
        server.stop()
    assert one(server.points(), "hw.host.power").value == 60.0
    subject = dict(item for rdn in server.peer_certs[0]["subject"] for item in rdn)
    assert subject["commonName"] == "wattprobe-client"


def test_bad_tls_files_stop_the_output_at_start(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(WattprobeError, match=r"^--ca-file .*missing\.pem: not a readable PEM certificate"):
        otlp.create(Settings(ca_file=missing), Context("h"))
    with pytest.raises(WattprobeError, match="--cert-file and --key-file: not a readable PEM"):
        otlp.create(
            Settings(cert_file=str(pki["wattprobe-client.pem"]), key_file=str(pki["ca.key"])), Context("h")
        )
    with pytest.raises(UsageError, match="--key-file needs --cert-file"):
        Settings(key_file=str(pki["ca.key"]))


def test_a_collector_that_answers_503_costs_at_most_the_timeout(receiver: Receiver) -> None:
    receiver.status = 503
    sink = synchronous(Settings(endpoint=receiver.url, export_timeout=1.5))
    began = time.monotonic()
    with pytest.raises(Retry, match="HTTP 503 Service Unavailable"):
        sink.write(a_frame())
    assert time.monotonic() - began < 3.0  # the exporter's own retries fit in --timeout
    assert len(receiver.requests) >= 1
    receiver.status = 200
    sink.write(a_frame(frames.TIMESTAMP + 1))  # works again, and the sum went on
    assert [p.value for p in receiver.points("wattprobe.vm.energy")] == [20.0]


def test_a_collector_down_is_retry_and_a_refusal_is_fatal(receiver: Receiver) -> None:
    url = receiver.url
    receiver.status = 401
    with pytest.raises(
        Fatal, match=r"refused the metrics: HTTP 401 Unauthorized \(check --endpoint and --headers\)"
    ):
        synchronous(Settings(endpoint=url)).write(a_frame())
    receiver.stop()
    began = time.monotonic()
    with pytest.raises(Retry, match="Connection refused"):
        synchronous(Settings(endpoint=url, export_timeout=1.0)).write(a_frame())
    assert time.monotonic() - began < 3.0


def test_without_the_sdk_the_output_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.metric_exporter", None)
    monkeypatch.delitem(sys.modules, "wattprobe.sinks.otlp.export", raising=False)
    with pytest.raises(
        WattprobeError, match=r"needs the OpenTelemetry SDK .*: pip install 'wattprobe\[otlp\]'$"
    ):
        otlp.create(Settings(), Context("h"))
