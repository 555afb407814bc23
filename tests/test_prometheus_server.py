"""The exporter as a server: a real Prometheus scrapes it every second and its query API gives the tree's
power back; a burst of concurrent scrapers is served without drops or retransmit delays; slow clients
(slowloris) neither take a thread each, nor keep their connection, nor starve scrapes or the sensor."""

from __future__ import annotations

import contextlib
import json
import resource
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from tests.support import agents, processes
from tests.support.net import free_port, http_get
from tests.support.powercap_tree import PowercapTree, real_time_sampler
from tests.support.prometheus import binary, dashboard_expressions, exporter, one, scrape, serving
from tests.support.waiting import wait_for
from wattprobe.sinks.prometheus.server import MAX_CONNECTIONS, REQUEST_DEADLINE_S

HOST_WATTS = 60.0
MARKER = "wattprobe-prometheus-test-busy-child"
# The queries of Scaphandre's own Grafana dashboards (docker-compose/dashboards/sample-dashboard.json,
# docker-compose/grafana/sample-dashboard.json and docs_src/tutorials/grafana-kubernetes-dashboard.json in
# hubblo-org/scaphandre), but those that name daemons this machine does not run (etcd, kubelet,
# grafana-server, dockerd, scaphandre itself): every one must have data here, against --naming scaphandre.
SCAPHANDRE_DASHBOARDS = (
    "scaph_host_power_microwatts / 1000000",
    "sum(scaph_process_power_consumption_microwatts) / 1000000",
    "sum(scaph_domain_power_microwatts) / 1000000",
    "sum(avg_over_time(scaph_host_power_microwatts[1h]))/1000000",
    "scaph_host_disk_total_bytes",
    "scaph_host_disk_available_bytes",
    "scaph_host_load_avg_one",
    "scaph_host_load_avg_five",
    "scaph_host_load_avg_fifteen",
    "scaph_socket_power_microwatts / 1000000",
    "scaph_domain_power_microwatts / 1000000",
    "scaph_self_cpu_usage_percent",
    "scaph_self_memory_bytes",
    "scaph_self_memory_virtual_bytes",
    'scaph_process_power_consumption_microwatts{cmdline=~".*${process_filter}.*"}/1000000',
    'scaph_process_cpu_usage_percentage{cmdline=~".*${process_filter}.*"}',
    'scaph_process_memory_bytes{cmdline=~".*${process_filter}.*"}',
    'scaph_process_memory_virtual_bytes{cmdline=~".*${process_filter}.*"}',
    "scaph_host_power_microwatts",
    "scaph_process_power_consumption_microwatts / 1000000 > 0.01",
)
# Grafana's variables, as the dashboard's defaults set them.
DASHBOARD_VARIABLES = {
    "${process_filter}": "",
    "$instance": ".*",
    "$__range": "5m",
    "$__rate_interval": "1m",
}


def query(base: str, promql: str) -> list[dict]:
    status, _, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", (promql, answer)
    return answer["data"]["result"]


def test_prometheus_stores_host_power_and_a_busy_process(tmp_path: Path):
    prometheus = binary("prometheus")
    with (
        processes.child(MARKER),
        real_time_sampler(PowercapTree(tmp_path / "powercap")) as sampler,  # one sampler, two endpoints
        serving(sampler) as native_url,
        serving(sampler, "--naming", "scaphandre", "--process-regex", MARKER) as scaph_url,
    ):
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": job,
                            "metrics_path": urllib.parse.urlsplit(url).path,
                            "static_configs": [{"targets": [urllib.parse.urlsplit(url).netloc]}],
                        }
                        for job, url in (("native", native_url), ("scaphandre", scaph_url))
                    ],
                }
            )
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with agents.running(
            command, stdout=(tmp_path / "prometheus.log").open("w"), stderr=subprocess.STDOUT
        ):
            wait_for(lambda: http_get(f"{base}/-/ready")[0] == 200, 30, "Prometheus to be ready")
            wait_for(
                lambda: query(base, 'count_over_time(wattprobe_host_power_watts{job="native"}[1m]) >= 3'),
                30,
                "three scrapes",
            )
            wait_for(
                lambda: query(base, f'wattprobe_process_power_watts{{cmdline=~".*{MARKER}.*"}}'),
                10,
                "busy child",
            )
            (host,) = query(base, 'wattprobe_host_power_watts{job="native"}')
            (scaph,) = query(base, 'scaph_host_power_microwatts{job="scaphandre"}')
            (child,) = query(base, f'wattprobe_process_power_watts{{cmdline=~".*{MARKER}.*"}}')
            (scaph_child,) = query(
                base, f'scaph_process_power_consumption_microwatts{{cmdline=~".*{MARKER}.*"}}'
            )
            sockets = query(base, 'wattprobe_socket_power_watts{job="native"}')
            results = {}
            for expr in dashboard_expressions():
                for variable, value in DASHBOARD_VARIABLES.items():
                    expr = expr.replace(variable, value)
                results[expr] = query(base, expr)  # every dashboard query runs
            scaphandre = {
                expr: query(base, expr.replace("${process_filter}", MARKER)) for expr in SCAPHANDRE_DASHBOARDS
            }
            (energy,) = query(base, 'scaph_host_energy_microjoules{job="scaphandre"}')
            metadata = json.loads(http_get(f"{base}/api/v1/metadata?metric=scaph_host_energy_microjoules")[2])

    assert abs(float(host["value"][1]) - HOST_WATTS) <= 0.01 * HOST_WATTS
    assert abs(float(scaph["value"][1]) / 1e6 - HOST_WATTS) <= 0.01 * HOST_WATTS
    assert sorted(s["metric"]["socket"] for s in sockets) == ["0", "1"]
    assert all(abs(float(s["value"][1]) - 20.0) <= 0.2 for s in sockets)
    # A spinning process on a machine that may be busy: some share of the 60 W, not all of it.
    assert 0 < float(child["value"][1]) < HOST_WATTS
    assert child["metric"]["exe"].startswith("/") and child["metric"]["pid"].isdigit()
    assert scaph_child["metric"]["exe"].startswith("python")
    empty = [expr for expr, result in results.items() if not result and "container" not in expr]
    assert not empty, f"dashboard queries with no data: {empty}"
    empty = [expr for expr, result in scaphandre.items() if not result]
    assert not empty, f"Scaphandre's dashboard queries with no data: {empty}"
    # Its energy counter keeps its name, and Prometheus knows it as a counter.
    assert float(energy["value"][1]) > 0
    assert [m["type"] for m in metadata["data"]["scaph_host_energy_microjoules"]] == ["counter"]


SCRAPERS, SCRAPES_EACH = 100, 20


def test_a_burst_of_concurrent_scrapers_is_served_without_drops(powercap: PowercapTree):
    """100 scrapers start together and each scrapes 20 times, a new connection each time. A listen
    backlog too short for the burst drops connections, and the kernel's SYN retransmits then add 1, 3,
    7 s and more to a scrape: p99 stays far below the first retransmit only if none was dropped."""
    latencies: list[float] = []
    failures: list[str] = []
    last_bodies: list[bytes] = []
    start = threading.Barrier(SCRAPERS)

    def scraper(url: str) -> None:
        start.wait()
        body = b""
        for _ in range(SCRAPES_EACH):
            began = time.perf_counter()
            try:
                status, _, body = http_get(url)
            except OSError as error:
                failures.append(repr(error))
                continue
            latencies.append(time.perf_counter() - began)
            if status != 200:
                failures.append(f"HTTP {status}")
        last_bodies.append(body)

    with powercap.running(period_s=0.01), exporter(powercap.root) as agent:
        threads = [threading.Thread(target=scraper, args=(agent.url,)) for _ in range(SCRAPERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures[:5]
    assert len(latencies) == SCRAPERS * SCRAPES_EACH
    assert all(b"\nwattprobe_host_power_watts " in body for body in last_bodies)
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 1.0, f"p99 {p99:.2f} s, p50 {statistics.median(latencies):.3f} s"


REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n" + b"X-a: b\r\n" * 100


class SlowClients:
    """`n` connections to 127.0.0.1:`port`, each sending the next byte of a request every `interval_s`
    (slowloris); with `reconnect`, a connection the server closes is opened again at once."""

    def __init__(self, port: int, n: int, interval_s: float = 0.5, reconnect: bool = False) -> None:
        self.port, self.interval_s, self.reconnect = port, interval_s, reconnect
        self.live: dict[socket.socket, int] = {}  # -> bytes sent
        self.opened = 0
        self.closed_after: list[float] = []  # seconds from its opening to the server closing it
        self._opened_at: dict[socket.socket, float] = {}
        self._stop = threading.Event()
        for _ in range(n):
            self._open()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", self.port))
        self.live[sock] = 0
        self._opened_at[sock] = time.monotonic()
        self.opened += 1

    def _closed(self, sock: socket.socket) -> None:
        self.closed_after.append(time.monotonic() - self._opened_at.pop(sock))
        del self.live[sock]
        sock.close()
        if self.reconnect and not self._stop.is_set():
            self._open()

    def _trickle(self) -> None:
        while not self._stop.wait(self.interval_s):
            for sock, sent in list(self.live.items()):
                poller = select.poll()  # not select(): descriptors here may be above 1023
                poller.register(sock, select.POLLIN)
                readable = poller.poll(0)
                try:
                    if readable and not sock.recv(65536):  # an answer (408), then the end
                        raise ConnectionResetError
                    sock.send(REQUEST[sent % len(REQUEST) : sent % len(REQUEST) + 1])
                    self.live[sock] = sent + 1
                except BlockingIOError:  # still connecting
                    continue
                except OSError:
                    self._closed(sock)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.live:
            sock.close()


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def descriptors_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def timed_scrape(url: str) -> tuple[float, float]:
    """How long a scrape took, and the host's energy counter it gave."""
    began = time.perf_counter()
    found = scrape(url)
    return time.perf_counter() - began, one(found, "wattprobe_host_energy_joules_total")


SLOW = 300


def test_slow_clients_take_no_thread_each_and_are_closed_at_the_deadline(powercap: PowercapTree):
    """300 connections trickle a request a byte every 0.5 s. The agent keeps its threads (one per
    connection before: 300 more), a scrape beside them answers at once, and each slow connection is
    closed once its request is late (it kept its thread 30 s per byte before: for ever)."""
    with powercap.running(period_s=0.01), exporter(powercap.root) as agent:
        port = urllib.parse.urlsplit(agent.url).port
        assert port is not None
        before = threads_of(agent.process.pid)
        with SlowClients(port, SLOW) as slow:
            time.sleep(1.5)  # every one connected, a few bytes sent
            threads = threads_of(agent.process.pid)
            took, _ = timed_scrape(agent.url)
            wait_for(
                lambda: not slow.live, REQUEST_DEADLINE_S + 10, "the server to close every slow connection"
            )
            took_after, _ = timed_scrape(agent.url)
    assert threads <= before + MAX_CONNECTIONS + 2, (before, threads)
    assert took < 2.0 and took_after < 2.0, (took, took_after)
    assert len(slow.closed_after) == SLOW
    # Within the deadline of its accept(); the last ones may have waited in the listen backlog while
    # the slots of those before them were freed.
    assert max(slow.closed_after) <= REQUEST_DEADLINE_S + 5.0, sorted(slow.closed_after)[-5:]


# Runs `python -m wattprobe ...` with RLIMIT_NOFILE lowered to ARGV[1], soft and hard (it cannot raise it).
LIMITED = (
    "import os, resource, sys; n = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)
FILE_LIMIT = 256


def test_a_flood_of_connections_leaves_the_sensor_its_descriptors(powercap: PowercapTree):
    """Under a descriptor limit of 256, 600 slow connections (each reopened once closed) are attempted:
    the agent keeps measuring and answering scrapes, and its descriptors stay below the limit. Before,
    it accepted connections until none was left: its scrapes and sensor reads failed (EMFILE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2000 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2000, hard))  # this test's own client sockets
    argv = [
        sys.executable,
        "-c",
        LIMITED,
        str(FILE_LIMIT),
        *agents.on_tree(powercap.root, "prometheus", "-a", "127.0.0.1", "-p", "0"),
    ]
    try:
        with powercap.running(period_s=0.01), agents.serving(argv) as agent:
            port = urllib.parse.urlsplit(agent.url).port
            assert port is not None
            _, energy_before = timed_scrape(agent.url)
            with SlowClients(port, 600, reconnect=True) as slow:
                time.sleep(2.0)
                fds = descriptors_of(agent.process.pid)
                took, energy_during = timed_scrape(agent.url)
                time.sleep(1.0)
                took_later, energy_later = timed_scrape(agent.url)
                attempted = slow.opened
            log = agent.log
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert attempted >= 600
    assert fds <= FILE_LIMIT - 128, fds
    assert took < 2.0 and took_later < 2.0, (took, took_later)
    assert energy_before < energy_during < energy_later
    assert not [line for line in log if "Too many open files" in line or "Traceback" in line], log


def test_a_response_leaves_in_one_write_on_a_kept_alive_connection(powercap: PowercapTree):
    """Head and body written apart make the body wait for the client's (delayed) ACK of the head on a
    kept-alive connection: tens of ms per scrape. Each response arrives whole in the first read."""
    with (
        powercap.running(period_s=0.01),
        real_time_sampler(powercap) as sampler,
        serving(sampler, "--min-interval", "60") as url,
    ):
        port = urllib.parse.urlsplit(url).port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            for _ in range(20):
                client.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                data = client.recv(1 << 20)  # what has come once anything has
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                assert len(body) == length > 0, (len(body), length)
