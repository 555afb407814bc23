"""`wattprobe prometheus` end to end: a real agent on a synthetic powercap tree, scraped over loopback."""

from __future__ import annotations

import base64
import gzip
import http.client
import itertools
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from tests.support import agents
from tests.support.net import http_get, taken_port
from tests.support.powercap_tree import PowercapTree
from tests.support.processes import child
from tests.support.prometheus import PROMETHEUS_ACCEPT, binary, exporter, one, parse, scrape, serving
from tests.support.waiting import wait_for

HOST_WATTS = 60.0  # psys of the default synthetic tree


@pytest.mark.parametrize(
    ("naming", "power", "energy", "scale"),
    [
        ("native", "wattprobe_host_power_watts", "wattprobe_host_energy_joules_total", 1.0),
        ("scaphandre", "scaph_host_power_microwatts", "scaph_host_energy_microjoules", 1e6),
    ],
)
def test_values_match_the_synthetic_tree(powercap: PowercapTree, naming, power, energy, scale):
    """Host, socket and domain power as the tree draws them, from the first scrape on, across wraps.

    The sampler runs on the tree's clock: time passes when the tree advances, so the figures are exact.
    """
    sampler = powercap.sampler()
    sampler.tick()
    powercap.advance(0.2)
    sampler.tick()  # the first Frame, which serving starts with
    with serving(sampler, "--naming", naming, "--min-interval", "0.05") as url:
        scrapes = [scrape(url)]
        for _ in range(3):  # the counters start 1 J below their wrap: every zone wraps on the way
            powercap.advance(0.2)  # the last Frame is older than --min-interval: a scrape measures anew
            scrapes.append(scrape(url))
    sampler.close()
    for found in scrapes:
        assert one(found, power) == pytest.approx(HOST_WATTS * scale, rel=1e-4)
        if naming == "native":
            assert one(found, "wattprobe_socket_power_watts", socket="1") == pytest.approx(20.0, rel=1e-4)
            assert one(found, "wattprobe_domain_power_watts", socket="0", domain="core") == pytest.approx(
                12.0, rel=1e-4
            )
            assert one(found, "wattprobe_domain_power_watts", socket="1", domain="dram") == pytest.approx(
                5.0, rel=1e-4
            )
        else:
            assert one(found, "scaph_socket_power_microwatts", socket_id="1") == pytest.approx(20e6, rel=1e-4)
            assert one(
                found, "scaph_domain_power_microwatts", socket_id="0", domain_name="uncore"
            ) == pytest.approx(3e6, rel=1e-4)
            assert one(found, "scaph_domain_energy_microjoules", socket_id="0", domain_name="uncore") > 0
    energies = [one(found, energy) / scale for found in scrapes]
    assert energies == sorted(energies)
    assert energies[-1] > 10.0  # past the wrap of every zone


def test_agent_process_has_power_from_the_first_scrape(powercap: PowercapTree):
    """The real command: power at the first scrape, energy counters never going back across wraps."""
    with powercap.running(), exporter(powercap.root, "--min-interval", "0.1") as agent:
        scrapes = [scrape(agent.url)]
        for _ in range(3):  # each scrape once the last measurement is older than --min-interval
            window = one(scrapes[-1], "wattprobe_window_seconds")
            scrapes.append(wait_for(lambda w=window: _new_window(agent.url, w), 10, "a new measurement"))
    # The tree's writer is another process, late by a few ms on a busy machine: loose bounds here.
    assert one(scrapes[0], "wattprobe_host_power_watts") == pytest.approx(HOST_WATTS, rel=0.15)
    assert one(scrapes[0], "wattprobe_window_seconds") >= 0.5  # the start-up window, not a few ms
    for name in ("wattprobe_host_energy_joules_total", "wattprobe_socket_energy_joules_total"):
        energies = [sum(v for _, v in found[name]) for found in scrapes]
        assert energies == sorted(energies) and energies[-1] > energies[0]


def _new_window(url: str, window: float):
    """A scrape of `url` whose window is not `window` (None while it is)."""
    found = scrape(url)
    return found if one(found, "wattprobe_window_seconds") != window else None


def test_negotiation_promtool_and_a_4000_character_cmdline(tmp_path: Path):
    """Text 0.0.4 or OpenMetrics as asked; gzip; `promtool check metrics` passes with a nasty cmdline."""
    promtool = binary("promtool")
    tree = PowercapTree(tmp_path / "powercap")
    nasty = 'marker-4000 "quoted" back\\slash\nline ' + "x" * 4000
    with (
        tree.running(),
        child(nasty),
        exporter(tree.root, "--process-regex", "marker-4000", "--containers", "--qemu") as agent,
    ):
        wait_for(lambda: _spinning(agent.url), 20, "the busy child in a measurement")
        status, headers, text = http_get(agent.url)
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        status, headers, om = http_get(agent.url, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert headers["Content-Encoding"] == "gzip"
        om = gzip.decompress(om).decode()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    families = {f.name: f for f in parse_openmetrics(om)}
    assert families["wattprobe_host_energy_joules"].type == "counter"
    assert families["wattprobe_sensor"].type == "info"
    found = parse(text.decode())
    mine = [(lab, v) for lab, v in found["wattprobe_process_power_watts"] if '"quoted"' in lab["cmdline"]]
    ((labels, watts),) = mine  # the agent's own cmdline matches the regex too, not the quotes
    assert labels["cmdline"].endswith("x...")
    assert len(labels["cmdline"]) == 256 + 3
    assert '"quoted" back\\slash line' in labels["cmdline"]
    assert watts > 0


def _spinning(url: str) -> bool:
    """Whether a scrape shows the process with the quoted marker drawing power."""
    found = scrape(url).get("wattprobe_process_power_watts", [])
    return any('"quoted"' in labels["cmdline"] and watts > 0 for labels, watts in found)


def test_scaphandre_naming_passes_promtool_but_for_its_units(powercap: PowercapTree):
    promtool = binary("promtool")
    with powercap.running(), exporter(powercap.root, "--naming", "scaphandre") as agent:
        _, _, text = http_get(agent.url)
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.decode(), capture_output=True, text=True
    )
    complaints = [line for line in (check.stdout + check.stderr).splitlines() if line]
    # Scaphandre's own names: µJ and µW, and energy counters without _total, as its dashboards query them.
    scaphandre_names = (
        'use base unit "joules" instead of "microjoules"',
        'counter metrics should have "_total" suffix',
    )
    assert complaints and all(any(n in c for n in scaphandre_names) for c in complaints), complaints
    assert all("_microjoules" in c for c in complaints)


def test_scrapes_every_second_each_get_a_fresh_one_second_window(powercap: PowercapTree):
    """Before: with the default minimum interval of 1 s, every other scrape of a Prometheus scraping every
    second came a hair early and got the previous Frame (windows of 2 s, new values every 2 s)."""
    with powercap.running(), exporter(powercap.root) as agent:
        next_at = time.monotonic()
        windows, energies, spans = [], [], []
        for i in range(6):
            next_at += 1.0 - (0.02 if i % 2 else -0.02)  # Prometheus' jitter: a little early, a little late
            time.sleep(max(0.0, next_at - time.monotonic()))
            sent = time.monotonic()
            found = scrape(agent.url)
            spans.append((sent, time.monotonic()))
            windows.append(one(found, "wattprobe_window_seconds"))
            energies.append(one(found, "wattprobe_host_energy_joules_total"))
    assert len(set(energies)) == len(energies)  # a new measurement at every scrape
    # Each window runs from the previous scrape to this one: each was measured somewhere inside its request,
    # so the window lies between the gap separating the two requests and the span covering both.
    for window, (before, now) in zip(windows[1:], itertools.pairwise(spans), strict=True):
        assert now[0] - before[1] - 0.05 <= window <= now[1] - before[0] + 0.05


def test_an_idle_exporter_is_woken_by_nothing_between_scrapes(powercap: PowercapTree):
    """Before: its main thread and its server's loop each woke twice a second to poll, 0.2 ms of CPU a
    second: at Prometheus' default of a scrape every 15 s, as much as a scrape itself."""

    def switches(pid: int) -> int:  # a thread that sleeps throughout switches out of the CPU never
        return sum(
            int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir()
            for line in (task / "status").read_text().splitlines()
            if "ctxt_switches:" in line
        )

    with powercap.running(), exporter(powercap.root) as agent:
        scrape(agent.url)
        time.sleep(0.3)  # the scrape's connection closes and its thread ends
        before = switches(agent.process.pid)
        time.sleep(2.0)
        # Before: 8 in these 2 s. (One is let pass: a container seen on the machine would start the name
        # resolver, which retries an engine that refused on a timer of seconds.)
        assert switches(agent.process.pid) - before <= 1
        assert one(scrape(agent.url), "wattprobe_window_seconds") > 2.0  # and the next scrape measures


def test_concurrent_scrapes_in_one_window_share_one_measurement(powercap: PowercapTree):
    with powercap.running(), exporter(powercap.root, "--min-interval", "30") as agent:
        results = []
        threads = [threading.Thread(target=lambda: results.append(scrape(agent.url))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(results) == 8
    windows = {one(r, "wattprobe_window_seconds") for r in results}
    energies = {one(r, "wattprobe_host_energy_joules_total") for r in results}
    assert len(windows) == 1 and len(energies) == 1


def test_index_page_404_and_basic_auth(powercap: PowercapTree, tmp_path: Path):
    secrets = tmp_path / "auth"
    secrets.write_text("prom:s3cret:with-colon\n")
    good = {"Authorization": "Basic " + base64.b64encode(b"prom:s3cret:with-colon").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"prom:wrong").decode()}
    with (
        powercap.running(),
        exporter(powercap.root, "-s", "/custom/", "--basic-auth-file", str(secrets)) as agent,
    ):
        url = agent.url
        assert url.endswith("/custom")
        root = url.removesuffix("/custom")
        status, headers, _ = http_get(url)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert http_get(url, bad)[0] == 401
        assert http_get(url, {"Authorization": "Basic !!!"})[0] == 401
        status, headers, body = http_get(root + "/", good)
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b'href="/custom"' in body
        assert http_get(url, good)[0] == 200
        assert http_get(root + "/metrics", good)[0] == 404
        assert http_get(root + "/favicon.ico", good)[0] == 404
    assert any("password in clear" in line for line in agent.log)


def test_tls(powercap: PowercapTree, tmp_path: Path):
    openssl = binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    with (
        powercap.running(),
        exporter(powercap.root, "--tls-cert", str(cert), "--tls-key", str(key)) as agent,
    ):
        assert agent.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        assert one(scrape(agent.url, context=context), "wattprobe_host_power_watts") > 0
        with pytest.raises((OSError, http.client.HTTPException)):
            http_get(agent.url.replace("https://", "http://"))


@pytest.fixture
def listening_port():
    with taken_port() as port:
        yield port


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-a", "127.0.0.1", "-p", "{busy}"],
            "already in use; stop what uses it or choose another port with -p",
        ),
        (["-a", "256.1.1.1"], "not an IP address or a known host name"),
        (["-a", "192.0.2.1", "-p", "0"], "192.0.2.1 is not an address of this machine"),
        (["--tls-cert", "{tmp}/none.pem", "--tls-key", "{tmp}/none.pem"], "cannot read the TLS certificate"),
        (["--tls-cert", "{tmp}/garbage", "--tls-key", "{tmp}/garbage"], "as a TLS certificate and its key"),
        (["--tls-cert", "{tmp}/garbage"], "--tls-cert and --tls-key go together"),
        (["--basic-auth-file", "{tmp}/none"], "cannot read the basic auth file"),
        (["--basic-auth-file", "{tmp}/garbage"], "must hold one line USER:PASSWORD"),
        (["-s", "/"], "--suffix must not be empty"),
        (["-p", "70000"], "not a TCP port"),
        (["--min-interval", "-1"], "must be a finite number >= 0"),
    ],
)
def test_bad_input_is_one_clear_line(powercap: PowercapTree, tmp_path: Path, listening_port, args, message):
    (tmp_path / "garbage").write_text("not a pem\n")
    args = [a.format(busy=listening_port, tmp=tmp_path) for a in args]
    result = agents.run(agents.on_tree(powercap.root, "prometheus", *args), timeout=20)
    err = result.stderr
    assert result.returncode != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_help_lists_every_option():
    out = agents.run(agents.command("prometheus", "--help"), check=True).stdout
    for option in ("--address", "--port", "--suffix", "--qemu", "--containers", "--naming", "--min-interval",
                   "--max-top-consumers", "--process-regex", "--cmdline-max-length", "--tls-cert", "--tls-key",
                   "--basic-auth-file"):  # fmt: skip
        assert option in out
