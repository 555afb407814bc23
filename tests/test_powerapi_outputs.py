"""PowerAPI outputs read by PowerAPI 2.10: its CsvDB reads the CSV directory, its SocketDB the stream."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from powerapi.database import CsvDB, SocketDB
from powerapi.report import HWPCReport, PowerReport

from tests.support import agents
from tests.support.net import free_port
from tests.support.powerapi import TreeSampler, naive_utc, utc
from tests.support.powercap_tree import PowercapTree
from tests.support.waiting import wait_for
from wattprobe import cli
from wattprobe.pipeline.delivery import Delivery
from wattprobe.sinks.powerapi.csvdir import CsvDirectory
from wattprobe.sinks.powerapi.reports import hwpc_reports, power_reports, rapl_joules
from wattprobe.sinks.powerapi.tcp import SocketSender


def agent(tree: PowercapTree, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `wattprobe powerapi ARGS` on the tree, its counters advancing in real time."""
    with tree.running():
        return agents.run(agents.on_tree(tree.root, "powerapi", *args))


def test_csv_directory_is_read_by_powerapi_csvdb(powercap, tmp_path):
    sampled = TreeSampler(powercap)
    out = CsvDirectory(str(tmp_path / "csv"))
    hwpc, power = [], []
    for _ in range(3):
        frame, _ = sampled.frame(1.0)
        tick = hwpc_reports(frame, "host-a", {0: 0, 1: 4}) + power_reports(frame, "host-a", processes=2)
        out.write(tick)
        hwpc += [r for r in tick if "groups" in r]
        power += [r for r in tick if "power" in r]
    sampled.close()

    rapl = tmp_path / "csv" / "rapl.csv"
    assert rapl.read_text().splitlines()[0] == (
        "timestamp,sensor,target,socket,cpu,RAPL_ENERGY_CORES,RAPL_ENERGY_DRAM,RAPL_ENERGY_GPU,"
        "RAPL_ENERGY_PKG,RAPL_ENERGY_PSYS,time_enabled,time_running"
    )
    with utc():
        read = list(
            CsvDB(HWPCReport, tags=[], current_path=str(tmp_path / "csv"), files=["rapl.csv"]).iter(False)
        )
        assert read == [HWPCReport.from_json(r) for r in hwpc]

        files = sorted((tmp_path / "csv").rglob("PowerReport*.csv"))
        assert (tmp_path / "csv" / "host-a-all" / "PowerReport.csv") in files
        assert (tmp_path / "csv" / "host-a-all" / "PowerReport-socket1-dram.csv") in files
        read_power = [r for f in files for r in CsvDB(PowerReport, [], str(tmp_path), [str(f)]).iter(False)]
    assert len(read_power) == len(power)
    # CsvDB gives metadata back as strings, and the socket as a column only (Report == compares metadata).
    key = lambda r: (r.timestamp, r.target, r.power)  # noqa: E731
    expected = [
        PowerReport(
            naive_utc(r["timestamp"]),
            r["sensor"],
            r["target"],
            r["power"],
            {k: str(v) for k, v in r["metadata"].items() if k != "socket"},
        )
        for r in power
    ]
    assert sorted(read_power, key=key) == sorted(expected, key=key)


def test_csv_leaves_a_file_with_other_columns_alone(tmp_path, caplog):
    (tmp_path / "rapl.csv").write_text("timestamp,sensor,target,socket,cpu,OTHER\n1,s,all,0,0,5\n")
    report = {
        "timestamp": 2,
        "sensor": "s",
        "target": "all",
        "groups": {"rapl": {"0": {"0": {"RAPL_ENERGY_PKG": 1}}}},
        "metadata": {},
    }
    with caplog.at_level(logging.ERROR):
        CsvDirectory(str(tmp_path)).write([report])
    assert (tmp_path / "rapl.csv").read_text() == "timestamp,sensor,target,socket,cpu,OTHER\n1,s,all,0,0,5\n"
    assert "other columns" in caplog.text


def test_socket_stream_is_received_by_powerapi_socketdb(powercap, tmp_path):
    """The agent starts before PowerAPI listens: it retries, then delivers every report queued."""
    port = free_port()
    db = SocketDB(HWPCReport, "127.0.0.1", port)
    jsonl = tmp_path / "r.jsonl"
    command = agents.on_tree(
        powercap.root,
        "powerapi",
        "--socket",
        f"127.0.0.1:{port}",
        "-s",
        "0.25",
        "-t",
        "2.5",
        "-f",
        str(jsonl),
    )
    log = tmp_path / "agent.log"
    with powercap.running(), open(log, "w") as stderr_file:
        agent = agents.start(command, stderr=stderr_file, text=True)
        try:
            # Two ticks written, and the connection refused (off the tick, in the sender's thread).
            wait_for(lambda: _lines(jsonl) >= 2, 20, "two ticks", every_s=0.02, alive=agent)
            wait_for(
                lambda: "Connection refused; retrying in" in log.read_text(), 20, "a refusal", alive=agent
            )
            db.connect()
            agent.wait(timeout=30)
        finally:
            agent.kill()
    stderr = log.read_text()
    assert agent.returncode == 0, stderr
    sent = [json.loads(line) for line in jsonl.read_text().splitlines()]
    queue = db.received_data_queue  # what PowerAPI's server thread has read so far
    wait_for(lambda: queue.qsize() >= len(sent), 10, f"PowerAPI to read the {len(sent)} reports sent")
    with utc():
        received = list(db.iter(False))
        assert received == [HWPCReport.from_json(r) for r in sent]
    assert len(received) >= 5
    energy = sum(rapl_joules(r.groups["rapl"]["0"]["0"]["RAPL_ENERGY_PKG"]) for r in received)
    seconds = sum(r.groups["rapl"]["0"]["0"]["time_enabled"] for r in received) / 1e9
    # Real time on a loaded machine: the tree lags a little. Exactness is checked with a fake clock.
    assert energy / seconds == pytest.approx(20.0, rel=0.25)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_socket_never_holds_the_agent_back(powercap, tmp_path):
    port = free_port()  # nobody listens there
    started = time.monotonic()
    run = agent(
        powercap, "--socket", f"127.0.0.1:{port}", "-s", "0.2", "-t", "1", "-f", str(tmp_path / "r.jsonl")
    )
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - started < 8
    assert run.stderr.count(f"PowerAPI socket 127.0.0.1:{port}") == 1  # said once per outage
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) >= 4  # every tick still written


def test_socket_sender_reconnects_when_the_peer_closes():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []
    hung_up = threading.Event()

    def serve() -> None:
        first, _ = server.accept()
        with first, first.makefile("rb") as f:
            received.append(f.readline())  # one line, then hang up
        hung_up.set()
        second, _ = server.accept()
        with second, second.makefile("rb") as f:
            received.extend(iter(f.readline, b""))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sender = SocketSender("127.0.0.1", port)
    client = Delivery("PowerAPI socket", sender.send, capacity=100, batch=10)
    client.put([b'{"n": 0}\n'])
    assert hung_up.wait(5)  # after reading the first line: the next send finds the connection closed
    client.put([f'{{"n": {n}}}\n'.encode() for n in range(1, 6)])
    client.close(flush_s=5)
    sender.close()
    thread.join(5)
    server.close()
    assert [json.loads(line)["n"] for line in received] == [0, 1, 2, 3, 4, 5]


def test_command_writes_json_lines_csv_and_valid_reports(powercap, tmp_path, capsys):
    out = tmp_path / "reports.jsonl"
    run = agent(
        powercap,
        *("--report", "both", "--processes", "2", "--iso-time", "--sensor-name", "node-1"),
        *("-s", "0.25", "-t", "1", "-f", str(out), "--csv", str(tmp_path / "csv")),
    )
    assert run.returncode == 0, run.stderr
    reports = [json.loads(line) for line in out.read_text().splitlines()]
    hwpc = [r for r in reports if "groups" in r]
    assert len(hwpc) >= 3 and all(r["sensor"] == "node-1" for r in reports)
    assert all(isinstance(r["timestamp"], str) and len(r["timestamp"]) == 26 for r in reports)
    host = [r["power"] for r in reports if r["metadata"].get("scope") == "host" and r["target"] == "all"]
    assert sum(host) / len(host) == pytest.approx(60.0, rel=0.25)  # real time, see above
    with utc():
        for r in reports:
            (HWPCReport if "groups" in r else PowerReport).from_json(r)
    assert (tmp_path / "csv" / "rapl.csv").exists() and (tmp_path / "csv" / "node-1-all").is_dir()

    assert cli.main(["powerapi-validate", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}: ok, {len(reports)} reports\n"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--report", "both", "--socket", "127.0.0.1:9080"], 2, "one kind of report"),
        (["--socket", "localhost"], 2, "not HOST:PORT"),
        (["--socket", "localhost:70000"], 2, "not HOST:PORT"),
        (["-s", "0"], 2, "the step must be above 0 seconds"),
        (["--sensor-name", ""], 2, "--sensor-name must not be empty"),
    ],
)
def test_usage_errors_are_one_line(args, code, message, powercap, capsys):
    base = ["-s", "powercap_rapl", "--powercap-root", str(powercap.root), "powerapi"]
    try:
        result = cli.main([*base, *args])
    except SystemExit as stop:  # argparse
        result = stop.code
    err = capsys.readouterr().err
    assert result == code and message in err and len(err.strip().splitlines()) == 1


def test_csv_directory_that_cannot_exist(tmp_path, powercap, capsys):
    (tmp_path / "file").write_text("")
    base = ["-s", "powercap_rapl", "--powercap-root", str(powercap.root), "powerapi"]
    assert cli.main([*base, "--csv", str(tmp_path / "file" / "dir")]) == 1
    err = capsys.readouterr().err
    assert "cannot create the CSV directory" in err and len(err.strip().splitlines()) == 1
