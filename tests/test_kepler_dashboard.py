"""Kepler's own Grafana dashboard against `--naming kepler`: a real Prometheus scrapes an agent on a host
with a Docker container, a Kubernetes pod and a QEMU guest (real processes in real cgroups, a synthetic
powercap tree), and every expression of the dashboard, and every query of its variables, has data.

The expressions are in fixtures/kepler_dashboard.json, copied from Kepler's repository (the file says
where and at which commit). Names come from a resolver that knows them from the start (the agent's
own asks the engine and the API server in the background)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

from tests.support import agents, processes
from tests.support.cgroups import container_cgroup
from tests.support.fake_qemu import fake_qemu
from tests.support.names import KnownNames
from tests.support.net import free_port, http_get
from tests.support.powercap_tree import PowercapTree, real_time_sampler
from tests.support.prometheus import binary
from tests.support.waiting import wait_for
from wattprobe.cli import build_parser
from wattprobe.config import settings
from wattprobe.core.model import Workload
from wattprobe.sinks.prometheus import sink as prometheus_sink

FIXTURE = Path(__file__).parent / "fixtures" / "kepler_dashboard.json"
MARKER = "wattprobe-kepler-dashboard-test"
JOB = "kepler"
WEB, APP = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2  # 64 hex digits: container ids
POD = str(uuid.uuid4())
NAMES = {
    WEB: Workload("web", "nginx:1", (("com.example.team", "front"),)),
    APP: Workload("app", "shop:2", (), "shop-5c9d", "shop", POD),
}


def query(base: str, promql: str) -> list[dict]:
    status, _, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", (promql, answer)
    return answer["data"]["result"]


def dashboard() -> tuple[list[str], list[dict]]:
    doc = json.loads(FIXTURE.read_text())
    return [e["expr"] for e in doc["expressions"]], doc["variables"]


def grafana(expr: str, pid: int) -> str:
    """`expr` with the dashboard's variables as Grafana sets them: the job, a process's pid, and every
    other (multi-valued, matched with =~) variable at "All"."""
    expr = expr.replace("$job", JOB).replace("${process}", str(pid))
    return re.sub(r"\$(zone|node|namespace|pod|container|vm)\b", ".+", expr)


def variable_values(base: str, variable: dict, pid: int) -> set[str]:
    """The values Grafana would offer for a query variable (`label_values(SELECTOR, LABEL)` or
    `query_result(EXPR)`)."""
    text = grafana(variable["query"], pid)
    found = re.fullmatch(r"label_values\((.*),\s*(\w+)\s*\)", text, re.S)
    if found:
        return {r["metric"].get(found.group(2), "") for r in query(base, found.group(1))} - {""}
    found = re.fullmatch(r"query_result\((.*)\)", text.strip(), re.S)
    assert found, text
    return {json.dumps(r["metric"]) for r in query(base, found.group(1))}


def test_every_expression_of_keplers_dashboard_has_data(tmp_path: Path):
    prometheus = binary("prometheus")
    expressions, variables = dashboard()
    assert len(expressions) == 21
    with contextlib.ExitStack() as stack:
        web = stack.enter_context(processes.child(MARKER))
        app = stack.enter_context(processes.child(MARKER))
        stack.enter_context(fake_qemu("-name", "guest=kepler-vm", MARKER, busy=True))
        for child, shape in ((web, f"docker/{WEB}"), (app, f"kubepods/besteffort/pod{POD}/{APP}")):
            cgroup = stack.enter_context(container_cgroup(shape))
            if cgroup is None:
                pytest.skip(
                    "no cgroup can be made here: the container and the pod need root and a writable cgroupfs"
                )
            (cgroup / "cgroup.procs").write_text(str(child.pid))
        tree = PowercapTree(tmp_path / "powercap")
        sampler = stack.enter_context(real_time_sampler(tree, names=KnownNames(NAMES, "node-7")))
        options = build_parser().parse_args(
            ["prometheus", "-a", "127.0.0.1", "-p", "0", "--naming", "kepler", "--process-regex", MARKER]
        )
        sink = prometheus_sink.PrometheusSink(
            settings.from_namespace(prometheus_sink.Settings, options),
            sampler.frame,
        )
        stack.callback(sink.close)
        first = wait_for(sampler.tick, 5, "a first Frame")
        assert first is not None
        sink.write(first)
        target = urllib.parse.urlsplit(sink.url)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": JOB,
                            "metrics_path": target.path,
                            "static_configs": [{"targets": [target.netloc]}],
                        }
                    ],
                }
            )
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        stack.enter_context(
            agents.running(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=(tmp_path / "prometheus.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        wait_for(lambda: http_get(f"{base}/-/ready")[0] == 200, 30, "Prometheus to be ready")
        wait_for(
            lambda: query(base, f'count_over_time(kepler_pod_cpu_watts{{job="{JOB}",zone="psys"}}[1m]) >= 3'),
            60,
            "three scrapes with the pod",
        )
        results = {expr: query(base, grafana(expr, app.pid)) for expr in expressions}
        offered = {v["name"]: variable_values(base, v, app.pid) for v in variables}
        # Named ones: another run of this test on the machine adds containers and pods it cannot name.
        containers = query(base, f'kepler_container_cpu_watts{{job="{JOB}",zone="psys",container_name!=""}}')
        pods = query(base, f'kepler_pod_cpu_watts{{job="{JOB}",zone="psys",pod_name!=""}}')
        resets = {
            family: query(base, f'sum(resets(kepler_{family}_cpu_joules_total{{job="{JOB}"}}[1m]))')
            for family in ("node", "process", "container", "pod", "vm")
        }

    empty = [expr for expr, result in results.items() if not result]
    assert not empty, f"dashboard expressions with no data: {empty}"
    assert not [name for name, values in offered.items() if not values], offered
    assert (
        offered["namespace"] == {"shop"}
        and offered["pod"] == {"shop-5c9d"}
        and offered["vm"] == {"kepler-vm"}
    )
    assert {"web", "app"} <= offered["container"]
    by_name = {c["metric"]["container_name"]: c["metric"] for c in containers}
    assert by_name["app"]["pod_id"] == POD and "pod_id" not in by_name["web"]  # no pod: empty, so absent
    assert {p["metric"]["pod_name"] for p in pods} == {"shop-5c9d"}
    assert all(p["metric"]["node_name"] == "node-7" for p in pods)
    assert {family: float(r[0]["value"][1]) for family, r in resets.items()} == dict.fromkeys(resets, 0.0)
