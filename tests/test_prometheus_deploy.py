"""The deployment kit in deploy/: files parse, agree with each other and with a real scrape.

No container engine or Kubernetes runs here: compose and chart are checked by reading them, the
chart's templates rendered by tests/support/helm.py, every command line checked by wattprobe's own parser.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.helm import render
from tests.support.net import http_get
from tests.support.paths import DEPLOY
from tests.support.powercap_tree import PowercapTree
from tests.support.prometheus import DASHBOARD, dashboard_expressions, exporter
from wattprobe.cli import build_parser
from wattprobe.commands.agent import load
from wattprobe.config import settings
from wattprobe.sources import SourceSettings

CHART = DEPLOY / "helm" / "wattprobe"
METRIC_NAME = re.compile(r"\b(?:wattprobe|scaph)_[a-z0-9_]+")


def exposed_names(text: str) -> set[str]:
    """Metric names a scrape shows: sample names and the names of its (possibly empty) families."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_queries_name_only_metrics_a_real_scrape_exposes(tmp_path: Path):
    tree = PowercapTree(tmp_path / "powercap")
    with tree.running(), exporter(tree.root) as agent:
        _, _, body = http_get(agent.url)
    exposed = exposed_names(body.decode())
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    for expr in expressions:
        names = set(METRIC_NAME.findall(expr))
        assert names, f"no wattprobe metric in {expr!r}"
        assert names <= exposed, f"{expr!r} names {names - exposed}, which a scrape does not expose"


def test_dashboard_covers_hosts_sockets_processes_containers_and_a_process_filter():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["process_filter"]["type"] == "textbox"
    assert variables["instance"]["allValue"] == ".*"
    expressions = " ".join(dashboard_expressions())
    for needle in (
        "wattprobe_host_power_watts",
        "wattprobe_socket_power_watts",
        "wattprobe_domain_power_watts",
        "wattprobe_process_power_watts",
        "wattprobe_container_power_watts",
        'cmdline=~".*${process_filter}.*"',
    ):
        assert needle in expressions
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(dashboard)))
    builtins = {"__range", "__rate_interval", "__all", "1"}  # $1: a label_replace group
    assert used <= set(variables) | builtins, used - set(variables)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_stack_is_consistent():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"wattprobe", "prometheus", "grafana"}
    agent = services["wattprobe"]
    assert (
        DEPLOY / agent["build"]["context"] / agent["build"]["dockerfile"]
    ).resolve() == DEPLOY / "Dockerfile"
    args = build_parser().parse_args(agent["command"])
    assert args.command == "prometheus" and args.procfs_root == "/host/proc"
    assert args.powercap_root == "/host/sys/class/powercap"
    assert {"/proc:/host/proc:ro", "/sys:/host/sys:ro"} <= set(agent["volumes"])
    assert f"{args.port}:{args.port}" in agent["ports"]
    assert agent["cap_drop"] == ["ALL"] and agent["read_only"] is True
    assert agent["pid"] == "host"  # the pids under /host/proc are the agent's: CPU clocks by pid
    # Every file the stack mounts from this folder is there.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source
    # Prometheus scrapes the agent where compose serves it.
    prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"wattprobe:{args.port}"]
    # Grafana: the datasource is the compose Prometheus, the dashboard folder is the mounted one.
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "wattprobe.yml").read_text())["datasources"][
        0
    ]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "wattprobe.yml").read_text())["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name) == DASHBOARD


def test_dockerfile_builds_from_what_the_context_sends():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    root = DEPLOY.parent
    copied = [w for line in dockerfile.splitlines() if line.startswith("COPY ") and "--from" not in line
              for w in line.split()[1:-1]]  # fmt: skip
    assert copied
    for source in copied:
        assert (root / source).exists(), source
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source
    assert 'ENTRYPOINT ["wattprobe"]' in dockerfile
    assert "EXPOSE 8080" in dockerfile


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_systemd_units_run_the_agent_unprivileged_with_read_access_to_energy_counters():
    service = _unit("wattprobe.service")["Service"]
    command = service["ExecStart"].split()
    assert command[0] == "/usr/local/bin/wattprobe" and "prometheus" in command
    assert service["DynamicUser"] == "yes" and service["SupplementaryGroups"] == "powercap"
    assert service["CapabilityBoundingSet"] == "" and service["NoNewPrivileges"] == "yes"
    default_options = service["Environment"].strip('"').split("=", 1)[1].split()
    assert build_parser().parse_args(["prometheus", *default_options]).port == 8080
    setup = _unit("wattprobe-powercap.service")
    assert setup["Service"]["Type"] == "oneshot"
    assert "wattprobe.service" in setup["Unit"]["Before"]
    script = setup["Service"]["ExecStart"]
    assert (
        "chgrp powercap" in script and "chmod g+r" in script and "/sys/class/powercap/*/energy_uj" in script
    )
    assert "$f" not in script.replace("$$f", "")  # systemd would expand a single $f itself
    assert "g powercap" in (DEPLOY / "systemd" / "wattprobe.sysusers.conf").read_text()


def test_systemd_agent_unit_runs_the_configuration_file():
    service = _unit("wattprobe-agent.service")["Service"]
    args = build_parser().parse_args(service["ExecStart"].split()[1:])
    assert (args.command, args.config) == ("agent", "/etc/wattprobe/agent.toml")
    assert service["ConfigurationDirectory"] == "wattprobe" and service["CapabilityBoundingSet"] == ""
    assert "/var/lib/libvirt/scaphandre" in service["ReadWritePaths"]  # where the qemu output writes


def test_systemd_units_verify():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    names = ("wattprobe.service", "wattprobe-powercap.service", "wattprobe-agent.service")
    units = [str(DEPLOY / "systemd" / n) for n in names]
    result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines() if line and "is not executable" not in line]
    assert not problems, problems


def render_chart(values: dict | None = None) -> dict[str, dict]:
    """Every template rendered with the chart's values (and overrides), by kind."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, value in (values or {}).items():
        if isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    context = {
        "Values": merged,
        "Release": {"Name": "wp", "Namespace": "monitoring"},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    }
    documents = {}
    for template in sorted((CHART / "templates").glob("*.yaml")):
        for doc in yaml.safe_load_all(render(template.read_text(), context)):
            if doc:
                documents[doc["kind"]] = doc
    return documents


def test_helm_chart_renders_a_daemonset_with_the_host_mounts_and_a_service():
    docs = render_chart()
    # No ServiceMonitor unless asked; what naming pods needs (see the RBAC test).
    assert set(docs) == {"DaemonSet", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    daemonset, service = docs["DaemonSet"], docs["Service"]
    pod = daemonset["spec"]["template"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "wattprobe:0.1.0"
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.procfs_root, args.powercap_root) == (
        "prometheus",
        "/host/proc",
        "/host/sys/class/powercap",
    )
    assert args.containers and args.naming == "native"
    (port,) = container["ports"]
    assert port["containerPort"] == args.port == service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == port["name"] == "metrics"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: (volumes[m["name"]], m["readOnly"]) for m in container["volumeMounts"]}
    assert mounts == {"/host/proc": ("/proc", True), "/host/sys": ("/sys", True)}
    security = container["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"] and security["allowPrivilegeEscalation"] is False
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert pod["spec"]["hostPID"] is True  # the pids under /host/proc are the agent's: CPU clocks by pid


def test_helm_chart_options_and_service_monitor():
    docs = render_chart(
        {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "extraArgs": ["--max-top-consumers=50"],
            "naming": "scaphandre",
            "containers": False,
            "port": 9100,
        }
    )
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    container = docs["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert (args.naming, args.containers, args.max_top_consumers, args.port) == (
        "scaphandre",
        False,
        50,
        9100,
    )
    assert container["ports"][0]["containerPort"] == 9100


def test_helm_chart_runs_the_agent_with_a_configuration(tmp_path):
    config = (DEPLOY / "agent.toml").read_text()
    docs = render_chart({"config": config})
    assert docs["ConfigMap"]["data"]["agent.toml"].strip() == config.strip()
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.config, args.procfs_root) == (
        "agent",
        "/etc/wattprobe/agent.toml",
        "/host/proc",
    )
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["mountPath"] == "/etc/wattprobe"
    written = tmp_path / "agent.toml"  # what the pod reads: the agent takes it, over the command line
    written.write_text(docs["ConfigMap"]["data"]["agent.toml"])
    loaded = load(str(written), settings.from_namespace(SourceSettings, args))
    assert loaded.sources.procfs_root == "/host/proc"
    (prometheus,) = [o for o in loaded.outputs if o.module.NAME == "prometheus"]
    assert prometheus.settings.port == container["ports"][0]["containerPort"]


def test_helm_chart_names_pods_with_rbac_the_node_name_and_the_engine_socket_when_asked():
    docs = render_chart({"naming": "kepler", "containerSocket": "/var/run/docker.sock"})
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The engine's socket: mounted from the host at its own path, and given to the agent.
    args = container["args"]
    assert "--container-socket=/var/run/docker.sock" in args[: args.index("prometheus")]  # a global option
    parsed = build_parser().parse_args([a for a in args if not a.startswith("--container-socket")])
    assert parsed.naming == "kepler"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "engine"]
    assert volume["hostPath"] == {"path": "/var/run/docker.sock", "type": "Socket"}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "engine"]
    assert mount["mountPath"] == "/var/run/docker.sock"
    # The node's name from the downward API.
    (env,) = [e for e in container["env"] if e["name"] == "NODE_NAME"]
    assert env["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # RBAC: the pod's ServiceAccount may get, list and watch pods, and nothing else.
    account, role, binding = docs["ServiceAccount"], docs["ClusterRole"], docs["ClusterRoleBinding"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "monitoring"}
    ]
    # Without a socket asked, none is mounted; without RBAC made, an existing account is used.
    docs = render_chart({"rbac": {"create": False}, "serviceAccount": {"name": "energy"}})
    assert not {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} & set(docs)
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "energy"
    assert "engine" not in {v["name"] for v in pod["volumes"]}
    assert not any(a.startswith("--container-socket") for a in pod["containers"][0]["args"])
