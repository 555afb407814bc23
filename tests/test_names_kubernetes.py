"""Pods named by the Kubernetes API, off the tick: a loopback HTTPS API server (its own CA, a bearer
token) answering PodList and watch JSON as the API documents them, its failures one by one, and the
agent naming a process placed in a real kubepods/pod<uid>/<container id> cgroup."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cgroups import container_cgroup
from tests.support.kubeapi import TOKEN, FakeKubeApi, pod
from tests.support.names import named_documents
from tests.support.processes import child
from tests.support.waiting import wait_for
from wattprobe.config.settings import from_table
from wattprobe.core.model import Container, Workload
from wattprobe.errors import UsageError
from wattprobe.sources import SourceSettings, open_names
from wattprobe.sources.identity.kubernetes import KubeApi, PodWatcher
from wattprobe.sources.identity.resolver import Resolver

WEB = "1" * 64
SIDECAR = "2" * 64
LATE = "3" * 64
WEB_POD = "0b3e6a4c-1f2d-4e5f-8a9b-0c1d2e3f4a5b"
LATE_POD = "7d1c2b3a-4e5f-4a6b-9c8d-7e6f5a4b3c2d"


def on_node(cid: str, pod_uid: str) -> Container:
    return Container(cid, "containerd", "kubernetes", pod_uid)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeKubeApi]:
    with FakeKubeApi(tmp_path) as server:
        server.put(pod(WEB_POD, "shop-7f9c", "prod", containers={"web": WEB, "sidecar": SIDECAR}))
        server.put(pod("9" * 8 + "-0000-4000-8000-" + "0" * 12, "elsewhere", node="node-b"))
        yield server


def resolver(
    api: FakeKubeApi, *, timeout_s: float = 2.0, max_bytes: int = 64 << 20, relist_s: float = 0.2
) -> Resolver:
    kube = KubeApi(
        api.url, "node-a", str(api.token_file), str(api.ca_file), timeout_s=timeout_s, max_bytes=max_bytes
    )
    return Resolver(
        None, lambda changed: PodWatcher(kube, changed, retry_s=(0.1,)), node_name="node-a", relist_s=relist_s
    )


def named(r: Resolver, *containers: Container, pod_name: str | None = None) -> dict[str, Workload]:
    """What names() gives once every container is named (asked as ticks would, every 20 ms)."""

    def check() -> dict[str, Workload] | None:
        found = dict(r.names(containers))
        if len(found) < len(containers) or (pod_name and any(w.pod_name != pod_name for w in found.values())):
            return None
        return found

    return wait_for(check, 10.0, f"names of {[c.id[:6] for c in containers]}", every_s=0.02)


def test_pods_listed_then_watched_name_containers_by_id_and_by_pod_uid(api: FakeKubeApi) -> None:
    r = resolver(api)
    try:
        assert r.names([on_node(WEB, WEB_POD)]) == {}  # the tick does not wait for the API
        sandbox = "4" * 64  # the pod's sandbox: in the pod's cgroup, in no containerStatuses
        found = named(r, on_node(WEB, WEB_POD), on_node(SIDECAR, WEB_POD), on_node(sandbox, WEB_POD))
        assert found[WEB] == Workload(
            name="web",
            image="registry.example/web:1.0",
            pod_name="shop-7f9c",
            pod_namespace="prod",
            pod_uid=WEB_POD,
        )
        assert found[SIDECAR].name == "sidecar"
        assert found[sandbox].name is None and found[sandbox].pod_name == "shop-7f9c"
        assert r.node_name == "node-a"
        assert api.requests[0]["fieldSelector"] == ["spec.nodeName=node-a"]
        lists = api.lists()
        # A pod made later comes by the watch (no new list), its container's id once it runs.
        api.put(pod(LATE_POD, "batch-x", "jobs", containers={"job": LATE}))
        assert named(r, on_node(LATE, LATE_POD))[LATE].pod_name == "batch-x"
        assert api.lists() == lists and api.watches() >= 1
        watch = next(q for q in api.requests if "watch" in q)
        assert watch["resourceVersion"] == [str(api.events[1][0])]
    finally:
        r.close()


def test_a_pod_deleted_mid_window_keeps_its_names(api: FakeKubeApi) -> None:
    r = resolver(api)
    try:
        named(r, on_node(WEB, WEB_POD))
        api.delete(WEB_POD)
        wait_for(lambda: api.events[-1][1] == "DELETED", 5.0, "the deletion")
        time.sleep(0.5)  # the watch delivered it
        # a container of the deleted pod asked for the first time (its last window): still named
        found = named(r, on_node(WEB, WEB_POD), on_node(SIDECAR, WEB_POD))
        assert found[SIDECAR].pod_name == "shop-7f9c" and found[WEB].name == "web"
    finally:
        r.close()


def test_an_unknown_pod_uid_lists_again_a_few_times_at_most(api: FakeKubeApi) -> None:
    r = resolver(api)
    try:
        named(r, on_node(WEB, WEB_POD))
        before = api.lists()
        # A pod the watch never told of (a missed event): listed again for it, and then named.
        missed = pod(LATE_POD, "missed", "jobs", containers={"job": LATE})
        missed["metadata"]["resourceVersion"] = "1"
        api.pods[LATE_POD] = missed
        assert named(r, on_node(LATE, LATE_POD))[LATE].pod_name == "missed"
        assert api.lists() == before + 1
        # A uid no list gives (not this node's): a few lists, then no more.
        stranger = on_node("5" * 64, str(uuid.uuid4()))
        for _ in range(100):
            assert stranger.id not in r.names([stranger])
            time.sleep(0.02)
        assert api.lists() == before + 1 + 3
    finally:
        r.close()


def test_a_static_pod_is_found_by_its_mirror_pods_annotation(api: FakeKubeApi) -> None:
    config_hash = "f" * 32  # the kubelet's cgroup names a static pod by its config hash
    api.put(
        pod(
            str(uuid.uuid4()),
            "etcd-node-a",
            "kube-system",
            annotations={"kubernetes.io/config.mirror": config_hash},
        )
    )
    r = resolver(api)
    try:
        static = on_node(
            "6" * 64,
            f"{config_hash[:8]}-{config_hash[8:12]}-{config_hash[12:16]}-{config_hash[16:20]}-{config_hash[20:]}",
        )
        api.put(
            pod(
                str(uuid.uuid4()),
                "kube-proxy",
                "kube-system",
                annotations={"kubernetes.io/config.mirror": static.pod_uid or ""},
            )
        )
        assert named(r, static)[static.id].pod_name == "kube-proxy"
    finally:
        r.close()


def test_pages_of_a_long_list_are_all_read(api: FakeKubeApi) -> None:
    uids = [str(uuid.uuid4()) for _ in range(250)]
    for n, uid in enumerate(uids):
        api.put(pod(uid, f"p{n:03d}", containers={"c": f"{n:064x}"}))
    r = resolver(api)
    try:
        last = on_node(f"{249:064x}", uids[249])
        assert named(r, last)[last.id].pod_name == "p249"
        pages = [q for q in api.requests if "watch" not in q]
        assert [q.get("limit") for q in pages[:3]] == [["100"]] * 3 and "continue" in pages[2]
    finally:
        r.close()


def test_an_expired_watch_lists_again(api: FakeKubeApi) -> None:
    api.expired_below = 10**9  # every watch: 410 Expired
    r = resolver(api)
    try:
        named(r, on_node(WEB, WEB_POD))
        wait_for(lambda: api.lists() >= 3, 10.0, "lists after expired watches")
    finally:
        r.close()


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("unauthorized", "refused the token (HTTP 401)"),
        ("forbidden", "forbids listing pods (HTTP 403)"),
        ("garbage", "answered something that is not a PodList"),
        ("slow", "did not answer within 0.5 s"),
        ("huge", "answered more than 4 MB"),
    ],
)
def test_an_api_that_fails_gives_one_line_per_outage_and_names_once_it_answers(
    api: FakeKubeApi, caplog: pytest.LogCaptureFixture, mode: str, said: str
) -> None:
    caplog.set_level(logging.WARNING)
    api.mode = mode
    r = resolver(api, timeout_s=0.5, max_bytes=4 << 20, relist_s=0.1)
    try:
        for _ in range(60):  # three seconds of ticks at 50 ms
            started = time.perf_counter()
            assert r.names([on_node(WEB, WEB_POD)]) == {}
            assert time.perf_counter() - started < 0.05  # never waits for the API
            time.sleep(0.05)
        assert api.lists() >= 3  # asked again
        lines = [rec.getMessage() for rec in caplog.records if "Kubernetes API" in rec.getMessage()]
        assert len(lines) == 1, lines
        assert said in lines[0] and api.url in lines[0] and "uids" in lines[0]
        api.mode = "ok"
        api.released.set()
        assert named(r, on_node(WEB, WEB_POD))[WEB].pod_name == "shop-7f9c"
        assert any("answers again" in rec.getMessage() for rec in caplog.records)
        assert TOKEN not in caplog.text
    finally:
        r.close()


def test_tls_is_verified(api: FakeKubeApi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    kube = KubeApi(api.url, "node-a", str(api.token_file), None, timeout_s=2)  # the system's CAs
    r = Resolver(None, lambda changed: PodWatcher(kube, changed, retry_s=(0.1,)))
    try:
        r.names([on_node(WEB, WEB_POD)])
        wait_for(lambda: caplog.records, 5.0, "a line")
        assert "certificate is not trusted" in caplog.records[0].getMessage()
        assert "--kubernetes-ca-file" in caplog.records[0].getMessage()
        assert all(q.get("watch") is None for q in api.requests) and not api.requests  # no token sent
    finally:
        r.close()


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="https://"):
        SourceSettings(kubernetes_api="http://10.0.0.1:6443")
    monkeypatch.setattr("wattprobe.sources.identity.engine.DEFAULT_SOCKETS", ())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.setenv("NODE_NAME", "worker-3")
    names = open_names(SourceSettings())  # in a pod: on by default
    assert names is not None and names.watcher is not None and names.engine is None
    assert names.watcher.api.url == "https://[fd00::1]:6443" and names.node_name == "worker-3"
    names.close()  # no container was seen: nothing was started, nothing was asked
    assert open_names(SourceSettings(node_name="n1")).node_name == "n1"  # type: ignore[union-attr]
    # the agent's [sensor] table takes the same keys
    table = {
        "kubernetes_api": "https://api.example:6443",
        "kubernetes_ca_file": "/etc/ca.pem",
        "node_name": "n2",
    }
    sensor = from_table(SourceSettings, {**table, "container_socket": "/run/x.sock"}, "agent.toml [sensor]")
    assert (sensor.kubernetes_api, sensor.node_name, sensor.container_socket) == (
        table["kubernetes_api"],
        "n2",
        "/run/x.sock",
    )


def test_the_agent_names_a_pods_process_in_a_real_kubepods_cgroup(api: FakeKubeApi, tmp_path: Path) -> None:
    with container_cgroup(f"kubepods/pod{WEB_POD}/{WEB}") as cgroup:
        if cgroup is None:
            pytest.skip("no cgroup can be made here (not root, or a read-only cgroup filesystem)")
        with child("--api-token", TOKEN) as busy:
            (cgroup / "cgroup.procs").write_text(str(busy.pid))
            out = tmp_path / "out.json"
            documents, result = named_documents(
                out,
                "--container-socket",
                str(tmp_path / "no-engine.sock"),
                *api.args("node-a"),
                json_args=("-m", "50"),
            )
    mine = [c for d in documents for c in d["consumers"] if c["pid"] == busy.pid]
    assert mine, f"the pod's process is in no document: {result.stderr}"
    last = mine[-1]["container"]
    assert last["id"] == WEB and last["scheduler"] == "kubernetes"
    assert (last["name"], last["pod_name"], last["pod_namespace"], last["pod_uid"], last["node_name"]) == (
        "web",
        "shop-7f9c",
        "prod",
        WEB_POD,
        "node-a",
    )
    assert TOKEN not in out.read_text() and TOKEN not in result.stderr  # redacted from its command line
    assert "container engine" in result.stderr  # no engine socket: said once
    assert result.stderr.count("container engine") == 1
