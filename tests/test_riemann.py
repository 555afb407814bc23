"""`wattprobe riemann` against a Riemann server on loopback that decodes with protoc's own code."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import agents
from tests.support.fake_qemu import fake_qemu
from tests.support.pki import make_pki
from tests.support.powercap_tree import PowercapTree
from tests.support.riemann import PROTO, RiemannServer
from wattprobe.sinks.riemann import proto as riemann_proto


def test_runtime_descriptor_matches_protoc(pb2: ModuleType) -> None:
    from google.protobuf import descriptor_pb2

    compiled = descriptor_pb2.FileDescriptorProto()
    pb2.DESCRIPTOR.CopyToProto(compiled)
    assert riemann_proto.parse(PROTO.read_text()) == compiled


def test_proto_reader_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        riemann_proto.parse('syntax = "proto2";\nmessage A { map<string, string> m = 1; }')
    with pytest.raises(ValueError, match="unknown type"):
        riemann_proto.parse("message A { optional Missing m = 1; }")


def agent(tree: PowercapTree, *args: str) -> subprocess.Popen:
    command = agents.on_tree(tree.root, "riemann", *args)
    return agents.start(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def fake_vm():
    """A bash that looks like a libvirt guest to /proc and burns CPU so that it has power."""
    with fake_qemu("-name", "guest=vm-r,debug-threads=on", busy=True, bash=True) as process:
        yield process


def attributes(event) -> dict[str, str]:
    return {a.key: a.value for a in event.attributes}


def mean_metric(events: list) -> float:
    """The mean value of events: single short windows jitter with scheduling on a loaded machine."""
    return sum(e.metric_d for e in events) / len(events)


def test_events_services_values_and_attributes(pb2: ModuleType, powercap: PowercapTree, fake_vm) -> None:
    with powercap.running():  # before the server: the counters' process must not inherit its socket
        server = RiemannServer(pb2)
        process = agent(powercap, "-a", "127.0.0.1", "-p", str(server.port), "-d", "0.4", "-q")
        try:
            hosts = server.wait_for("scaph_host_power_microwatts", count=3)
            vm_service = f"scaph_process_power_consumption_microwatts_{fake_vm.pid}_bash"
            vm_events = server.wait_for(vm_service)
        finally:
            stderr = agents.stop(process)
            server.stop()
    assert len(hosts) >= 3, stderr
    host = hosts[-1]
    assert host.host == socket.gethostname()
    assert mean_metric(hosts) == pytest.approx(60e6, rel=0.1)  # psys: 60 W, in µW
    assert host.ttl >= 60 and host.state == "ok" and "scaphandre" in host.tags
    assert abs(host.time_micros / 1e6 - time.time()) < 30 and host.time == host.time_micros // 1_000_000
    energy = [e for e in server.events if e.service == "scaph_host_energy_microjoules"]
    assert energy[-1].HasField("metric_sint64") and energy[-1].metric_sint64 > energy[0].metric_sint64
    sockets = [e for e in server.events if e.service == "scaph_socket_power_microwatts"]
    assert {attributes(e)["socket_id"] for e in sockets} == {"0", "1"}
    assert mean_metric(sockets) == pytest.approx(20e6, rel=0.1)
    domains = [e for e in server.events if e.service == "scaph_domain_power_microwatts"]
    assert {attributes(e)["domain_name"] for e in domains} == {"core", "uncore", "dram"}

    assert vm_events, stderr
    labels = attributes(vm_events[-1])
    assert labels["pid"] == str(fake_vm.pid) and labels["exe"] == "bash" and labels["vmname"] == "vm-r"
    assert labels["cmdline"].endswith(" -name guest=vm-r,debug-threads=on")
    assert 0 < vm_events[-1].metric_d <= 60e6


def test_mutual_tls(pb2: ModuleType, powercap: PowercapTree, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki["ca.pem"])
    tls.verify_mode = ssl.CERT_REQUIRED  # the server insists on a client certificate from the CA
    tls.load_cert_chain(pki["localhost.pem"], pki["localhost.key"])
    mtls = ["--mtls", "--ca", str(pki["ca.pem"]), "--cert", str(pki["wattprobe-client.pem"])]
    with powercap.running():
        server = RiemannServer(pb2, tls=tls)
        process = agent(
            powercap,
            "-a",
            "localhost",
            "-p",
            str(server.port),
            "-d",
            "0.3",
            *mtls,
            "--key",
            str(pki["wattprobe-client.key"]),
        )
        try:
            events = server.wait_for("scaph_host_power_microwatts", count=2)
        finally:
            stderr = agents.stop(process)
            server.stop()
    assert len(events) >= 2, stderr
    assert mean_metric(events) == pytest.approx(60e6, rel=0.1)
    subject = dict(item for rdn in server.peer_certs[0]["subject"] for item in rdn)
    assert subject["commonName"] == "wattprobe-client"


def test_mtls_options_are_checked_up_front(powercap: PowercapTree, tmp_path: Path) -> None:
    base = agents.on_tree(powercap.root, "riemann")
    run = agents.run([*base, "--mtls", "--ca", "ca.pem"], timeout=10)
    assert run.returncode == 2 and "--mtls needs --cert --key" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = agents.run([*base, "--ca", "ca.pem"], timeout=10)
    assert run.returncode == 2 and "only make sense with --mtls" in run.stderr
    missing = str(tmp_path / "missing.pem")
    run = agents.run([*base, "--mtls", "--ca", missing, "--cert", missing, "--key", missing], timeout=10)
    assert (
        run.returncode == 1
        and "cannot load the CA certificate" in run.stderr
        and "Traceback" not in run.stderr
    )


def test_survives_a_server_restart(pb2: ModuleType, powercap: PowercapTree) -> None:
    with powercap.running():
        first = RiemannServer(pb2)
        port = first.port
        process = agent(powercap, "-a", "127.0.0.1", "-p", str(port), "-d", "0.2")
        try:
            assert first.wait_for("scaph_host_power_microwatts", count=2)
            first.stop()
            time.sleep(1.0)  # down for a few dispatches: the agent must keep measuring and retrying
            assert process.poll() is None
            second = RiemannServer(pb2, port=port)
            events = second.wait_for("scaph_host_power_microwatts", count=2, timeout=15)
            second.stop()
        finally:
            stderr = agents.stop(process)
    assert len(events) >= 2, stderr
    assert mean_metric(events) == pytest.approx(60e6, rel=0.1)
    assert "retrying" in stderr and "Traceback" not in stderr
