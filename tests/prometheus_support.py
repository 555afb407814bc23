"""Helpers for the Prometheus exporter tests: real agent processes, real servers, free ports."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.powercap_tree import PowercapTree, agent_command
from wattprobe import settings
from wattprobe.cli import build_parser
from wattprobe.core.model import EnergyReading
from wattprobe.core.sampler import Sampler
from wattprobe.sinks import prometheus
from wattprobe.sources.host import HostReader
from wattprobe.sources.powercap import PowercapSensor
from wattprobe.sources.procfs import ProcfsReader

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "wattprobe.json"


def dashboard_expressions() -> list[str]:
    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                yield node["expr"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return list(walk(json.loads(DASHBOARD.read_text())))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str) -> str:
    """The path of a Debian-packaged server, or skip the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        package = {"promtool": "prometheus"}.get(name, name)
        pytest.skip(f"{name} not installed (apt-get install {package}; scripts/test.sh installs it)")
    return path


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def http_get(url: str, headers: dict[str, str] | None = None, **kwargs) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, **kwargs) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wattprobe(powercap_root: Path, *args: str) -> list[str]:
    """The command line of an agent reading a synthetic powercap tree."""
    return agent_command(powercap_root, *args)


def scrape(url: str, **kwargs) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, headers, body = http_get(url, **kwargs)
    assert status == 200, body
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    found: dict[str, list] = {}
    text = body.decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            name = s.name
            if family.type == "counter" and f"\n{name}" not in text:  # the parser's own _total
                name = family.name
            found.setdefault(name, []).append((s.labels, s.value))
    return found


def one(found, name: str, **labels: str) -> float:
    values = [v for lab, v in found.get(name, []) if all(lab.get(k) == want for k, want in labels.items())]
    assert len(values) == 1, (name, labels, found.get(name))
    return values[0]


@contextmanager
def running(command: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    """A process for the block's duration; stopped (SIGTERM, then SIGKILL) at the end."""
    process = subprocess.Popen(command, cwd=ROOT, **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Agent:
    process: subprocess.Popen
    url: str  # of the metrics
    log: list[str]  # what it wrote on stderr before serving


@contextmanager
def exporter(powercap_root: Path, *args: str) -> Iterator[Agent]:
    """`wattprobe prometheus` on loopback, any free port, serving."""
    command = wattprobe(powercap_root, "prometheus", "-a", "127.0.0.1", "-p", "0", *args)
    with running(command, stderr=subprocess.PIPE, text=True) as process:
        log = []
        for line in process.stderr:
            match = re.search(r"serving metrics on (\S+)", line)
            if match:
                yield Agent(process, match.group(1), log)
                return
            log.append(line)
        raise AssertionError(f"the exporter did not start: {''.join(log)}")


class TreeSensor(PowercapSensor):
    """A powercap sensor that moves its synthetic tree up to now right before each read, and says that the
    read happened then: power is the tree's to the µJ, however late the machine schedules anything."""

    def __init__(self, tree: PowercapTree) -> None:
        self.tree = tree
        self.moved_ns = time.monotonic_ns()
        super().__init__(str(tree.root), clock=lambda: self.moved_ns)

    def read(self) -> EnergyReading:
        now = time.monotonic_ns()
        self.tree.advance((now - self.moved_ns) / 1e9)
        self.moved_ns = now
        return super().read()


@contextmanager
def tree_sampler(tree: PowercapTree) -> Iterator[Sampler]:
    """A Sampler of this process reading `tree` through a TreeSensor."""
    sampler = Sampler(TreeSensor(tree), ProcfsReader(), host=HostReader())
    try:
        yield sampler
    finally:
        sampler.close()


@contextmanager
def serving(sampler: Sampler, *args: str) -> Iterator[str]:
    """`wattprobe prometheus ARGS` served from this process with `sampler`; yields the metrics URL."""
    options = build_parser().parse_args(["prometheus", "-a", "127.0.0.1", "-p", "0", *args])
    sink = prometheus.PrometheusSink(settings.from_namespace(prometheus.Settings, options), sampler.frame)
    try:
        if sampler.latest is None:
            sampler.tick()  # the baseline
            time.sleep(0.05)
        frame = sampler.frame(0.0)
        assert frame is not None
        sink.write(frame)  # as the runner does: serving starts with a first Frame
        yield sink.url
    finally:
        sink.close()


@contextmanager
def busy_child(*argv: str) -> Iterator[subprocess.Popen]:
    """A process that spins on one CPU, with extra argv words to find it by."""
    code = "while True: pass"
    with running([sys.executable, "-c", code, *argv]) as process:
        yield process
