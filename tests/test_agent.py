"""One sampler, many outputs: the runner's containment and `wattprobe agent -c FILE.toml`."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.support import agents
from tests.support.fake_qemu import fake_qemu
from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.powercap_tree import PowercapTree
from tests.support.prometheus import scrape
from tests.support.waiting import wait_for
from wattprobe.commands.agent import load
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.pipeline.runner import Runner
from wattprobe.sinks import Fatal, Retry


class Collect:
    """A sink that keeps what it is given; or fails on every write, as told."""

    pull = False

    def __init__(self, name: str, fail: type[Exception] | None = None) -> None:
        self.name = name
        self.fail = fail
        self.frames: list[Frame] = []
        self.closed = False

    def write(self, frame: Frame) -> None:
        if self.fail is not None:
            raise self.fail("broken on purpose")
        self.frames.append(frame)

    def close(self) -> None:
        self.closed = True


def run_sinks(powercap: PowercapTree, *sinks: Collect, steps: int = 4) -> Runner:
    sampler = powercap.sampler()
    runner = Runner(
        sampler,
        list(sinks),
        step_s=1.0,
        timeout_s=steps,
        clock=lambda: powercap.clock.ns / 1e9,
        sleep=powercap.advance,
    )
    try:
        runner.run()
    finally:
        sampler.close()
    return runner


def test_a_sink_that_fails_on_every_write_stops_nothing(powercap, caplog):
    good, broken = Collect("good"), Collect("broken", RuntimeError)
    with caplog.at_level(logging.WARNING):
        run_sinks(powercap, broken, good)
    assert len(good.frames) == 4 and all(f.host_watts == pytest.approx(60.0, rel=1e-6) for f in good.frames)
    assert caplog.text.count("output broken: broken on purpose") == 1  # once per outage
    assert good.closed and broken.closed


def test_a_fatal_sink_stops_alone_and_the_last_one_ends_the_agent(powercap, caplog):
    good, fatal = Collect("good"), Collect("fatal", Fatal)
    with caplog.at_level(logging.ERROR):
        runner = run_sinks(powercap, fatal, good)
    assert [s.name for s in runner.live] == ["good"] and len(good.frames) == 4
    assert "output fatal stopped: broken on purpose (still running: good)" in caplog.text
    with pytest.raises(WattprobeError, match="broken on purpose"):
        run_sinks(PowercapTree(powercap.root.parent / "other"), Collect("only", Fatal))


def test_a_timeout_shorter_than_the_step_still_measures_one_step(powercap):
    """Else an output that cannot be written would never say so, and the run would show nothing."""
    sink = Collect("sink")
    sampler = powercap.sampler()
    runner = Runner(
        sampler,
        [sink],
        step_s=1.0,
        timeout_s=0.3,
        clock=lambda: powercap.clock.ns / 1e9,
        sleep=powercap.advance,
    )
    try:
        runner.run()
    finally:
        sampler.close()
    assert len(sink.frames) == 1 and sink.frames[0].window_s == pytest.approx(1.0, abs=0.01)


def test_a_retry_is_said_once_and_its_end_too(powercap, caplog):
    class Flaky(Collect):
        def write(self, frame: Frame) -> None:
            if 1 <= len(self.frames) + self.misses < 3:
                self.misses += 1
                raise Retry("server away")
            self.frames.append(frame)

    flaky = Flaky("flaky")
    flaky.misses = 0
    with caplog.at_level(logging.WARNING):
        run_sinks(powercap, flaky, steps=5)
    assert len(flaky.frames) == 3
    assert caplog.text.count("server away") == 1 and caplog.text.count("output flaky: works again") == 1


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_one_agent_feeds_prometheus_json_qemu_and_a_dead_warp10(tmp_path):
    tree = PowercapTree(tmp_path / "powercap")
    port, dead = free_port(), free_port()
    out, vms = tmp_path / "out.json", tmp_path / "vms"
    config = write_config(
        tmp_path / "agent.toml",
        f"""
step = 0.5
[sensor]
name = "powercap_rapl"
powercap_root = "{tree.root}"
[outputs.prometheus]
address = "127.0.0.1"
port = {port}
[outputs.json]
file = "{out}"
max_top_consumers = 1000
[outputs.qemu]
output_root = "{vms}"
[outputs.warp10]
host = "127.0.0.1"
port = {dead}
write_token = "t0ken"
""",
    )
    with tree.running(), fake_qemu("-name", "guest=vm1", busy=True) as vm:
        agent = agents.start(agents.command("agent", "-c", str(config)), stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: out.read_text().count('"host"') >= 6, 20, "six documents", alive=agent)
            scraped = scrape(f"http://127.0.0.1:{port}/metrics")
            children = psutil.Process(agent.pid).children(recursive=True)
            documents = json.loads(out.read_text())
        finally:
            stderr = agents.stop(agent)
    assert agent.returncode == 0, stderr
    assert children == []  # one process measures for every output
    # Prometheus serves one of the very Frames the json output wrote.
    (((_, watts),),) = [scraped["wattprobe_host_power_watts"]]
    assert any(doc["host"]["consumption"] == pytest.approx(watts * 1e6, rel=1e-9) for doc in documents)
    # qemu: the VM's energy is the sum of its power over the windows the json output saw.
    energy_j = int((vms / "vm1" / "intel-rapl:0" / "energy_uj").read_text()) / 1e6
    vm_watts = [c["consumption"] / 1e6 for doc in documents for c in doc["consumers"] if c["pid"] == vm.pid]
    assert energy_j == pytest.approx(sum(vm_watts) * 0.5, rel=0.25) and energy_j > 0
    # warp10 is down the whole time: said once, retried, and it never stopped the others.
    assert len(re.findall(r"warp10 http://127\.0\.0\.1:\d+/api/v0/update: .*retrying in", stderr)) == 1
    assert "t0ken" not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("step = 1\n", "no output: add a table such as [outputs.stdout]"),
        ("[outputs.nosuch]\n", "unknown output [outputs.nosuch]"),
        ("[outputs.json]\nfiel = 'x'\n", "[outputs.json]: unknown key 'fiel'"),
        ("[outputs.json]\nstep = 3\n", "[outputs.json]: step: the agent measures for every output at once"),
        ("[outputs.prometheus]\nport = 'eighty'\n", "[outputs.prometheus]: port: not a TCP port"),
        ("[outputs.prometheus]\nport = 70000\n", "[outputs.prometheus]: port: not a TCP port"),
        ("[outputs.json]\ncontainers = 'yes'\n", "[outputs.json]: containers: expected true or false"),
        (
            "[outputs.prometheus]\nnaming = 'x'\n",
            "[outputs.prometheus]: naming: expected one of native, scaphandre",
        ),
        ("[outputs.prometheus]\nsuffix = '/'\n", "[outputs.prometheus]: --suffix must not be empty"),
        (
            "[sensor]\nname = 'estimate'\nvm = true\n[outputs.stdout]\n",
            "[sensor]: --vm reads the powercap tree",
        ),
        ("[sensor]\ntdp = -5\n[outputs.stdout]\n", "[sensor]: tdp: must be a finite number above 0"),
        ("step = 0\n[outputs.stdout]\n", "step: must be a finite number above 0"),
        ("step = 1e300\n[outputs.stdout]\n", "the step must be above 0 seconds and at most 86400"),
        ("timeout = -5\n[outputs.stdout]\n", "timeout: must be a finite number above 0, got '-5'"),
        ("timeout = 0\n[outputs.stdout]\n", "timeout: must be a finite number above 0, got '0'"),
        ("sensor = 3\n[outputs.stdout]\n", "sensor must be a table"),
        ("[outputs\n", "not valid TOML"),
    ],
)
def test_configuration_errors_name_the_file_table_and_key(tmp_path, text, message):
    config = write_config(tmp_path / "agent.toml", text)
    with pytest.raises(UsageError) as error:
        load(str(config))
    assert str(error.value).startswith(str(config)) and message in str(error.value)


def test_configuration_errors_are_one_line_from_the_command(tmp_path):
    config = write_config(tmp_path / "agent.toml", "[outputs.json]\nfiel = 'x'\n")
    result = agents.run(agents.command("agent", "-c", str(config)))
    assert result.returncode == 2
    assert result.stderr == f"wattprobe: error: {config} [outputs.json]: unknown key 'fiel' (known: " + (
        "container_regex, containers, file, max_top_consumers, process_regex, resources)\n"
    )
    missing = agents.run(agents.command("agent", "-c", str(tmp_path / "none.toml")))
    assert (missing.returncode, missing.stderr) == (
        1,
        f"wattprobe: error: cannot read {tmp_path / 'none.toml'}: No such file or directory\n",
    )


def test_an_output_that_fails_its_first_write_stops_alone_as_it_would_later(tmp_path):
    """/dev/full opens, then refuses every write: beside a good output it used to stop the whole agent at
    start, while a disk that fills up later stops that output alone (as the README says)."""
    good = tmp_path / "good.json"
    config = write_config(
        tmp_path / "agent.toml",
        f"step = 0.3\ntimeout = 1.5\n[sensor]\nname = 'estimate'\n"
        f"[[outputs.json]]\nfile = '/dev/full'\n[[outputs.json]]\nfile = '{good}'\n",
    )
    result = agents.run(agents.command("agent", "-c", str(config)))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "wattprobe: ERROR: output json stopped: cannot write /dev/full: No space left on device; choose "
        "another path with -f (still running: json)\n"
    )
    assert len(json.loads(good.read_text())) >= 3


def test_an_output_that_cannot_open_stops_the_agent_at_start(tmp_path):
    """A path that cannot be opened is a mistake in the configuration: nothing runs half-configured."""
    config = write_config(
        tmp_path / "agent.toml",
        f"[sensor]\nname = 'estimate'\n[outputs.stdout]\n[outputs.json]\nfile = '{tmp_path}/no/out.json'\n",
    )
    result = agents.run(agents.command("agent", "-c", str(config)))
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"wattprobe: error: cannot write {tmp_path}/no/out.json: No such file or directory; choose another "
        "path with -f\n"
    )


def test_a_configuration_that_is_not_utf8_is_one_line(tmp_path):
    """It was a UnicodeDecodeError traceback."""
    config = tmp_path / "agent.toml"
    config.write_bytes(b"step = 1\n# caf\xe9 (latin-1)\n[outputs.stdout]\n")
    result = agents.run(agents.command("-s", "estimate", "agent", "-c", str(config)))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"wattprobe: error: {config}: line 2: byte 0xe9 is not UTF-8: a TOML file is UTF-8 text\n"
    )


def test_a_timeout_of_0_or_less_is_refused_before_anything_is_written(tmp_path):
    """It used to write an empty array and exit 0, as if it had measured."""
    for timeout in ("-5", "0"):
        config = write_config(tmp_path / "agent.toml", f"timeout = {timeout}\n[outputs.json]\n")
        result = agents.run(agents.command("-s", "estimate", "agent", "-c", str(config)))
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == (
            f"wattprobe: error: {config}: timeout: must be a finite number above 0, got '{timeout}'\n"
        )


def collisions(tmp: Path) -> list[tuple[str, str]]:
    """Configurations whose outputs write to one place (`tmp` holds same.json), and what is said."""
    (tmp / "link.json").symlink_to(tmp / "same.json")
    os.link(tmp / "same.json", tmp / "hard.json")
    (tmp / "vms" / "csv").mkdir(parents=True)
    (tmp / "elsewhere").symlink_to(tmp / "vms" / "csv")
    return [
        (f"[[outputs.json]]\nfile = '{tmp}/same.json'\n[[outputs.json]]\nfile = '{tmp}/./same.json'\n",
            f"[[outputs.json]] #1 (file {tmp}/same.json) and [[outputs.json]] #2 (file {tmp}/./same.json) "
            f"both write to {tmp}/same.json: give each output its own file"),
        (f"[[outputs.json]]\nfile = '{tmp}/new.json'\n[outputs.powerapi]\nfile = '{tmp}/no/../new.json'\n",
            f"both write to {tmp}/new.json"),
        (f"[[outputs.json]]\nfile = '{tmp}/same.json'\n[outputs.powerapi]\nfile = '{tmp}/link.json'\n",
            f"[[outputs.json]] #1 (file {tmp}/same.json) and [outputs.powerapi] (file {tmp}/link.json) both"),
        (f"[outputs.json]\nfile = '{tmp}/same.json'\n[outputs.powerapi]\nfile = '{tmp}/hard.json'\n",
            f"[outputs.json] (file {tmp}/same.json) and [outputs.powerapi] (file {tmp}/hard.json) both"),
        ("[outputs.stdout]\n[outputs.json]\n",
            "[outputs.stdout] (standard output) and [outputs.json] (no file: standard output) both write to "
            "standard output: only one output can, give the others a file"),
        ("[outputs.json]\n[outputs.powerapi]\nfile = '-'\n", "(file -: standard output) both write to"),
        ("[outputs.stdout]\n[outputs.json]\nfile = '/dev/stdout'\n", "both write to standard output"),
        (f"[outputs.qemu]\noutput_root = '{tmp}/vms'\n[outputs.powerapi]\ncsv = '{tmp}/vms/csv'\n",
            f"[outputs.qemu] (output_root {tmp}/vms) and [outputs.powerapi] (csv {tmp}/vms/csv) write in one "
            f"tree, {tmp}/vms/csv inside {tmp}/vms: give each output a directory outside the other's"),
        (f"[outputs.powerapi]\ncsv = '{tmp}/elsewhere'\n[outputs.qemu]\noutput_root = '{tmp}/vms'\n",
            f"write in one tree, {tmp}/vms/csv inside {tmp}/vms"),  # through a link
        (f"[outputs.json]\nfile = '{tmp}/vms/power.json'\n[outputs.qemu]\noutput_root = '{tmp}/vms/'\n",
            f"write in one tree, {tmp}/vms/power.json inside {tmp}/vms: put the file outside that directory"),
        ("[[outputs.prometheus]]\nport = 9100\n[[outputs.prometheus]]\naddress = '127.0.0.1'\nport = 9100\n",
            "(address :: port 9100) and [[outputs.prometheus]] #2 (address 127.0.0.1 port 9100) both listen "
            "on port 9100: give each output its own port"),
    ]  # fmt: skip


def test_outputs_that_write_to_one_place_are_refused(tmp_path):
    (tmp_path / "same.json").write_text("[]\n")
    for text, message in collisions(tmp_path):
        config = write_config(tmp_path / "agent.toml", text)
        with pytest.raises(UsageError) as error:
            load(str(config))
        assert str(error.value).startswith(f"{config}: ") and message in str(error.value), text


def test_outputs_that_only_look_alike_are_not_collisions(tmp_path):
    config = write_config(
        tmp_path / "agent.toml",
        f"""
[[outputs.json]]
file = '/dev/null'
[[outputs.json]]
file = '/dev/null'
[[outputs.json]]
file = '{tmp_path}/a.json'
[outputs.powerapi]  # its own file inside its own directory
file = '{tmp_path}/csv/reports.jsonl'
csv = '{tmp_path}/csv'
[[outputs.prometheus]]
port = 0
[[outputs.prometheus]]
port = 0
[[outputs.prometheus]]
address = '127.0.0.1'
port = 9100
[[outputs.prometheus]]
address = '127.0.0.2'
port = 9100
[outputs.qemu]
output_root = '{tmp_path}/vms'
""",
    )
    assert len(load(str(config)).outputs) == 9


def test_colliding_outputs_are_one_line_and_touch_nothing(tmp_path):
    """Two json outputs on one file wrote an array that no longer parsed; two on stdout interleaved."""
    same = tmp_path / "same.json"
    same.write_text('["an earlier report"]\n')
    config = write_config(
        tmp_path / "agent.toml",
        f"timeout = 1\n[[outputs.json]]\nfile = '{same}'\n[[outputs.json]]\nfile = '{tmp_path}/./same.json'\n"
        "resources = true\n",
    )
    result = agents.run(agents.command("-s", "estimate", "agent", "-c", str(config)))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"wattprobe: error: {config}: [[outputs.json]] #1 (file {same}) and [[outputs.json]] #2 (file "
        f"{tmp_path}/./same.json) both write to {same}: give each output its own file\n"
    )
    assert same.read_text() == '["an earlier report"]\n'
    config.write_text("timeout = 1\n[outputs.stdout]\n[outputs.json]\n")
    result = agents.run(agents.command("-s", "estimate", "agent", "-c", str(config)))
    assert (result.returncode, result.stdout, result.stderr.count("\n")) == (2, "", 1)
    assert "both write to standard output: only one output can" in result.stderr


def test_arrays_of_tables_and_the_command_line_sensor(tmp_path):
    config = write_config(
        tmp_path / "agent.toml",
        "[sensor]\ntdp = 65\n[[outputs.json]]\nfile = 'a.json'\n[[outputs.json]]\nfile = 'b.json'\n",
    )
    from wattprobe.sources import SourceSettings

    loaded = load(str(config), SourceSettings(name="estimate", procfs_root="/host/proc"))
    assert [o.settings.file for o in loaded.outputs] == ["a.json", "b.json"]
    assert (loaded.sources.name, loaded.sources.procfs_root, loaded.sources.tdp) == (
        "estimate",
        "/host/proc",
        65.0,
    )


def test_the_shipped_example_configuration_loads():
    config = load(str(REPO / "deploy" / "agent.toml"))
    assert {o.module.NAME for o in config.outputs} >= {"prometheus", "qemu"}


def test_standard_output_on_a_full_device_stops_alone(tmp_path):
    """Standard output that refuses every write (here /dev/full) stops that output, as a json file's
    does, instead of being retried at every step; the other output goes on."""
    good = tmp_path / "good.json"
    config = write_config(
        tmp_path / "agent.toml",
        f"step = 0.3\ntimeout = 1.5\n[sensor]\nname = 'estimate'\n[outputs.stdout]\n"
        f"[[outputs.json]]\nfile = '{good}'\n",
    )
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            agents.command("agent", "-c", str(config)),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("cannot write standard output: No space left on device") == 1, result.stderr
    assert "output stdout stopped" in result.stderr
    assert len(json.loads(good.read_text())) >= 3
