"""Containers named by their engine (the Docker Engine API on a unix socket), off the tick: a fake
engine on a real unix socket, its failures one by one, then a real Podman."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tests.support.engine import FakeEngine, container, refusing
from tests.support.names import named_documents
from tests.support.podman import Podman, podman_unavailable
from tests.support.waiting import wait_for
from wattprobe.core.model import Container, Workload
from wattprobe.sources import SourceSettings, open_names
from wattprobe.sources.identity.engine import EngineApi
from wattprobe.sources.identity.resolver import Resolver

A = "a" * 64
B = "b" * 64
GONE = "c" * 64


def containers(*ids: str) -> list[Container]:
    return [Container(i, "podman", "podman") for i in ids]


def resolver(socket_path: Path, timeout_s: float = 0.5) -> Resolver:
    return Resolver(EngineApi(str(socket_path), timeout_s=timeout_s), retry_s=(0.1,))


def named(r: Resolver, *ids: str) -> dict[str, Workload]:
    """What names() gives once every id is named (asking as a tick would, every 20 ms)."""
    return wait_for(
        lambda: (found := dict(r.names(containers(*ids)))) and len(found) == len(ids) and found,
        5.0,
        f"names of {ids}",
        every_s=0.02,
    )


def test_the_engine_names_a_container_from_a_later_tick_on_and_is_asked_once(tmp_path: Path) -> None:
    listed = [container(A, "web", "nginx:1.27", {"tier": "front", "app": "shop"}), container(B, "db")]
    with FakeEngine(tmp_path / "engine.sock", listed) as engine:
        r = resolver(engine.path)
        try:
            assert r.names(containers(A, B)) == {}  # not known yet: the tick does not wait
            found = named(r, A, B)
            assert found[A] == Workload(
                name="web", image="nginx:1.27", labels=(("app", "shop"), ("tier", "front"))
            )
            assert found[B].name == "db"
            for _ in range(20):
                r.names(containers(A, B, GONE))  # GONE is new: asked once; A and B never again
            wait_for(lambda: len(engine.requests) == 2, 5.0, "the second request")
            time.sleep(0.3)
            assert len(engine.requests) == 2
            assert json.loads(engine.requests[0]["filters"][0]) == {"id": sorted([A, B])}
            assert json.loads(engine.requests[1]["filters"][0]) == {"id": [GONE]}
            assert GONE not in r.names(containers(A, B, GONE))  # the engine does not know it
        finally:
            r.close()


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("garbage", "answered something that is not JSON"),
        ("forbidden", "refused the request (HTTP 403)"),
        ("error", "answered HTTP 500"),
        ("slow", "did not answer within 0.3 s"),
    ],
)
def test_an_engine_that_fails_gives_one_line_per_outage_and_names_once_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, said: str
) -> None:
    with FakeEngine(tmp_path / "engine.sock", [container(A, "web")], mode=mode) as engine:
        r = resolver(engine.path, timeout_s=0.3)
        caplog.set_level(logging.WARNING)
        try:
            for _ in range(40):  # two seconds of ticks at 50 ms
                started = time.perf_counter()
                assert r.names(containers(A)) == {}
                assert time.perf_counter() - started < 0.05  # never waits for the engine
                time.sleep(0.05)
            assert len(engine.requests) >= 3  # asked again, with a delay
            lines = [r.getMessage() for r in caplog.records if "container engine" in r.getMessage()]
            assert len(lines) == 1, lines
            assert said in lines[0] and str(engine.path) in lines[0] and "short ids" in lines[0]
            engine.mode = "ok"
            engine.released.set()
            assert named(r, A)[A].name == "web"
            assert any("answers again" in r.getMessage() for r in caplog.records)
        finally:
            r.close()


def test_no_socket_or_a_refused_connection_says_why_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with refusing(tmp_path / "refusing.sock") as path:
        for socket_path, said in (
            (tmp_path / "none.sock", "no socket there"),
            (path, "refused the connection"),
        ):
            caplog.clear()
            r = resolver(socket_path)
            try:
                for _ in range(20):
                    assert r.names(containers(A)) == {}
                    time.sleep(0.03)
            finally:
                r.close()
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1 and said in lines[0], lines


def test_names_cost_dict_lookups(tmp_path: Path) -> None:
    ids = [f"{i:064x}" for i in range(50)]
    with FakeEngine(tmp_path / "engine.sock", [container(i, f"c{n}") for n, i in enumerate(ids)]) as engine:
        r = resolver(engine.path)
        try:
            named(r, *ids)
            asked = containers(*ids)
            started = time.perf_counter()
            for _ in range(1000):
                r.names(asked)
            per_tick = (time.perf_counter() - started) / 1000
            assert per_tick < 1e-3, per_tick  # about 10 µs for 50 containers
            assert len(engine.requests) == 1
        finally:
            r.close()


def test_open_names_only_where_an_engine_or_kubernetes_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr("wattprobe.sources.identity.engine.DEFAULT_SOCKETS", (str(tmp_path / "docker.sock"),))
    assert open_names(SourceSettings()) is None  # nothing to ask on this host: no thread, no cost
    given = open_names(SourceSettings(container_socket=str(tmp_path / "missing.sock")))
    assert (
        given is not None and given.engine is not None and given.watcher is None and given.node_name is None
    )


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    why = podman_unavailable()
    if why:
        pytest.skip(why)
    with Podman(tmp_path_factory.mktemp("podman")) as engine:
        yield engine


def test_a_real_podman_container_carries_its_name_in_the_agents_output(
    podman: Podman, tmp_path: Path
) -> None:
    name = f"wattprobe-burner-{time.monotonic_ns() % 10**9}"
    cid = podman.run(name, "sh", "-c", "while :; do :; done", labels={"team": "energy"})
    documents, result = named_documents(tmp_path / "out.json", "--container-socket", str(podman.socket))
    mine = [
        c["container"]
        for d in documents
        for c in d["consumers"]
        if c["container"] and c["container"]["id"] == cid
    ]
    assert mine, f"the container's process is in no document: {result.stderr}"
    assert mine[-1]["name"] == name  # the engine's name, not the short id
    assert mine[-1]["runtime"] == "podman" and mine[-1]["pod_name"] is None
    assert mine[0]["name"] in (name, cid[:12])  # the first Frame may come before the engine's answer
    assert "container engine" not in result.stderr
