"""`wattprobe warp10` against a Warp 10 ingress stand-in on loopback that checks every request and line."""

from __future__ import annotations

import itertools
import subprocess
import time

import pytest

from tests.support import agents
from tests.support.fake_qemu import fake_qemu
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import wait_for
from tests.support.warp10 import TOKEN, Ingress, environment
from wattprobe.sinks.kit.points import Point
from wattprobe.sinks.warp10 import gts_line


def test_gts_line_encodes_class_labels_and_typed_values() -> None:
    point = Point("my class{x}", 12.5, (("cmdline", "a b,c=d}{%é"), ("empty", "")), "")
    line = gts_line(point, 1_700_000_000_123_456, "host 1")
    assert line == (
        "1700000000123456// my%20class%7Bx%7D{host=host%201,cmdline=a%20b%2Cc%3Dd%7D%7B%25%C3%A9} 12.5"
    )
    assert gts_line(Point("e", 42, (), ""), 1, "h").endswith("{host=h} 42")  # a long, not a string
    assert gts_line(Point("p", 3.0, (), ""), 1, "h").endswith(" 3.0")  # a decimal stays a decimal
    assert gts_line(Point("p", 1e-7, (), ""), 1, "h").endswith(" 1e-07")


def agent(tree: PowercapTree, port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = agents.command("-vv", "-s", "powercap_rapl", "--powercap-root", str(tree.root))
    return agents.start(
        [*command, "warp10", "-H", "127.0.0.1", "-p", str(port), *args],
        env=env or environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_lines_are_valid_gts_and_an_outage_loses_no_point(powercap: PowercapTree) -> None:
    step = 0.25
    env = environment(SCAPH_WARP10_WRITE_TOKEN=TOKEN)
    with powercap.running():  # before the server: the counters' process must not inherit its socket
        server = Ingress()
        port = server.server_address[1]
        servers = [server]
        process = agent(powercap, port, "-s", str(step), env=env)
        try:
            wait_for(
                lambda: server.count("scaph_host_power_microwatts") >= 3, 10, "three points", alive=process
            )
            server.stop()  # Warp 10 goes away: connections are refused
            time.sleep(1.5)
            assert process.poll() is None
            servers.append(Ingress(port))
            wait_for(
                lambda: servers[1].count("scaph_host_power_microwatts") >= 10, 10, "ten points", alive=process
            )
        finally:
            stderr = agents.stop(process)
            servers[-1].stop()
    assert [e for s in servers for e in s.errors] == []
    points = [p for s in servers for p in s.points]
    host = sorted(p for p in points if p[1] == "scaph_host_power_microwatts")
    stamps = [ts for ts, *_ in host]
    assert len(set(stamps)) == len(stamps)  # each point once
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 2.5 * step, gaps  # points measured during the outage arrived after it
    assert len(servers[1].points) > 0 and min(p[0] for p in servers[1].points) < stamps[-1] - 1.0e6
    assert all(isinstance(v, float) for *_, v in host)
    assert sum(v for *_, v in host) / len(host) == pytest.approx(60e6, rel=0.1)
    assert host[0][2]["host"]
    energy = sorted(p for p in points if p[1] == "scaph_host_energy_microjoules")
    assert energy and all(isinstance(v, int) for *_, v in energy)
    assert [v for *_, v in energy] == sorted(v for *_, v in energy)
    sockets = {p[2]["socket_id"] for p in points if p[1] == "scaph_socket_power_microwatts"}
    assert sockets == {"0", "1"}
    assert TOKEN not in stderr and "retrying in" in stderr and "Traceback" not in stderr
    assert stderr.count("works again") == 1  # the outage said once each way


def test_hostile_labels_arrive_intact(powercap: PowercapTree) -> None:
    with fake_qemu("-name", "guest=evil{vm},,x=1 %41 a=b", busy=True, bash=True) as vm, powercap.running():
        server = Ingress()
        process = agent(powercap, server.server_address[1], "-s", "0.3", "-q", "-t", TOKEN)
        try:
            pids = {str(vm.pid), str(process.pid)}  # the VM, and the agent with its token on its command line
            wait_for(
                lambda: pids <= {p[2].get("pid") for p in server.points},
                10,
                "the VM's and the agent's points",
            )
        finally:
            stderr = agents.stop(process)
            server.stop()
    assert server.errors == []
    labels = next(p[2] for p in server.points if p[2].get("pid") == str(vm.pid))
    assert labels["vmname"] == "evil{vm},x=1 %41 a=b"
    assert labels["cmdline"].endswith(" -name guest=evil{vm},,x=1 %41 a=b")
    assert TOKEN not in stderr
    # The token was on the agent's own command line: no point carries it (before: all of them did).
    agent_points = [p for p in server.points if p[2].get("pid") == str(process.pid)]
    assert agent_points and all("-t <redacted>" in p[2]["cmdline"] for p in agent_points)
    assert not [p for p in server.points if any(TOKEN in value for value in p[2].values())]


def test_missing_token_is_a_one_line_error(powercap: PowercapTree) -> None:
    env = environment()
    for command in ("warp10", "warpten"):
        run = agents.run(agents.on_tree(powercap.root, command), env=env, timeout=10)
        assert run.returncode == 1
        assert run.stderr.strip().splitlines() == [
            "wattprobe: error: no Warp 10 write token: pass -t/--write-token TOKEN or set SCAPH_WARP10_WRITE_TOKEN"
        ]
