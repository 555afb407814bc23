"""No output carries a secret from a command line: one real agent, every output that exports command
lines (json, Prometheus in both namings and both formats, Riemann, Warp 10), one real process whose
argv holds the secret shapes, its title written into argv[0] included."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from types import ModuleType

from tests.support import agents
from tests.support.net import free_port, http_get
from tests.support.powercap_tree import PowercapTree
from tests.support.processes import child
from tests.support.prometheus import PROMETHEUS_ACCEPT
from tests.support.riemann import RiemannServer
from tests.support.waiting import wait_for
from tests.support.warp10 import TOKEN, Ingress, environment


def secrets_and_argvs(marker: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Secrets, and two processes' argv[0] and arguments that carry each in a shape that leaked. Two:
    Riemann and Warp 10 cut a command line at 256 characters, and each one ends with `marker`, so that
    an output that shows the marker shows the whole command line."""
    secrets = [f"Zq9{uuid.uuid4().hex[:12]}" for _ in range(13)]
    s = iter(secrets)
    first = [
        "--token", "--password", next(s),
        f"PASSWORD={next(s)}",
        f"https://user:p@{next(s)}@host/",
        "-H", f"Authorization: Bearer {next(s)}",
        f"https://{next(s)}@github.com/",
        f"{marker}-1",
    ]  # fmt: skip
    second = [
        f"password: {next(s)}",
        f"--set=password={next(s)}",
        f"DB_PASS={next(s)}",
        "mysql", f"-p{next(s)}", "db",
        "curl", "-u", f"admin:{next(s)}",
        "redis-cli", "-a", next(s),
        "-H", f"X-Api-Key: {next(s)}",
        f"{marker}-2",
    ]  # fmt: skip
    # The first wrote its title into argv[0] (one argument with spaces), as nginx and postgres do.
    return secrets, [(f"worker --password {next(s)}", first), ("python3", second)]


def test_no_output_carries_a_secret(pb2: ModuleType, tmp_path: Path) -> None:
    marker = f"wpredact-{uuid.uuid4().hex[:8]}"
    secrets, processes = secrets_and_argvs(marker)
    tree = PowercapTree(tmp_path / "powercap")
    out, native, scaphandre = tmp_path / "out.json", free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}/metrics" for port in (native, scaphandre)]
    exported: dict[str, str] = {}

    def scraped() -> bool:  # every Prometheus exposition, once each lists the process
        for url in urls:
            for kind, headers in (("text", {}), ("openmetrics", {"Accept": PROMETHEUS_ACCEPT})):
                status, _, body = http_get(url, headers)
                if status != 200 or not all(f"{marker}-{n}" in body.decode() for n in (1, 2)):
                    return False
                exported[f"prometheus {url} {kind}"] = body.decode()
        return True

    with (
        tree.running(),
        child(*processes[0][1], argv0=processes[0][0]),
        child(*processes[1][1], argv0="python3"),
    ):
        riemann, warp10 = RiemannServer(pb2), Ingress()
        config = tmp_path / "agent.toml"
        config.write_text(
            f"""
step = 0.5
[sensor]
name = "powercap_rapl"
powercap_root = "{tree.root}"
[outputs.json]
file = "{out}"
process_regex = "{marker}"
[[outputs.prometheus]]
address = "127.0.0.1"
port = {native}
process_regex = "{marker}"
cmdline_max_length = 100000
[[outputs.prometheus]]
address = "127.0.0.1"
port = {scaphandre}
naming = "scaphandre"
process_regex = "{marker}"
cmdline_max_length = 100000
[outputs.riemann]
address = "127.0.0.1"
port = {riemann.port}
[outputs.warp10]
host = "127.0.0.1"
port = {warp10.server_address[1]}
write_token = "{TOKEN}"
"""
        )
        agent = agents.start(
            agents.command("agent", "-c", str(config)), env=environment(), stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for(
                lambda: out.exists() and marker in out.read_text(), 30, "the process in json", alive=agent
            )
            wait_for(
                lambda: marker in str(riemann.events),
                30,
                lambda: f"Riemann {len(riemann.events)} {str(riemann.events)[:3000]}",
                alive=agent,
            )
            wait_for(lambda: marker in str(warp10.points), 30, "the process in Warp 10", alive=agent)
            wait_for(scraped, 30, "the process in every Prometheus exposition", alive=agent)
        finally:
            stderr = agents.stop(agent)
            riemann.stop()
            warp10.stop()
    exported["json"] = out.read_text()
    exported["riemann"] = b"".join(event.SerializeToString() for event in riemann.events).decode("latin-1")
    exported["warp10"] = str(warp10.points)
    assert "Traceback" not in stderr, stderr
    for output, text in exported.items():
        assert f"{marker}-1" in text and f"{marker}-2" in text, output  # whole command lines
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], f"{output} carries {leaked}"
        assert "worker --password <redacted>" in text and "-p<redacted> db" in text, output
