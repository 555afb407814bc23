"""`pytest --wattprobe [--wattprobe-json FILE]`: each test's energy, CPU time and duration.

Registered by the package (the `pytest11` entry point), and off unless asked: without `--wattprobe`
it adds its options and does nothing else (no import of the measuring code, no helper process). With
it, each test's call phase (not its fixtures' setup and teardown) is one `wattprobe.measure()` block,
through the measuring helper that every block of the process shares, with the default sensor (`auto`)
or `--wattprobe-sensor`. The terminal summary lists the costliest tests; `--wattprobe-json` writes
every test's figures.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from wattprobe.api import Measurement

TOP = 10  # tests in the terminal summary
SENSORS = ("auto", "powercap_rapl", "powerspy2", "estimate")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wattprobe", "each test's energy (wattprobe)")
    group.addoption(
        "--wattprobe",
        action="store_true",
        default=False,
        help="measure each test's energy, CPU time and duration; list the costliest in the summary",
    )
    group.addoption(
        "--wattprobe-json",
        metavar="FILE",
        default=None,
        help="with --wattprobe: also write every test's figures to FILE as JSON",
    )
    group.addoption(
        "--wattprobe-sensor",
        choices=SENSORS,
        default="auto",
        help="with --wattprobe: the energy source, as wattprobe's --sensor (default auto)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("wattprobe"):
        config.pluginmanager.register(TestEnergy(config), "wattprobe-energy")


class TestEnergy:
    """Measures each test's call phase and keeps its outcome, in the order the tests ran."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, config: pytest.Config) -> None:
        self.sensor: str = config.getoption("wattprobe_sensor")
        self.json_path: str | None = config.getoption("wattprobe_json")
        self.tests: dict[str, dict[str, Any]] = {}
        self.problem: str | None = None  # why the JSON could not be written

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        from wattprobe.api import Measurement

        measurement = Measurement(sensor=self.sensor)
        measurement.label = (item.nodeid,)
        try:
            with measurement:
                return (yield)
        finally:
            self._entry(item.nodeid).update(_figures(measurement))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self._entry(report.nodeid)
        if report.when == "call":
            outcome: str = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            entry["outcome"] = outcome
        elif report.failed:  # setup or teardown
            entry["outcome"] = "error"
        elif report.skipped and report.when == "setup":
            entry["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.json_path is None:
            return
        from wattprobe import __version__
        from wattprobe.commandenergy.stats import SCHEMA_VERSION
        from wattprobe.errors import WattprobeError
        from wattprobe.sinks.kit.files import write_whole

        document = {
            "schema_version": SCHEMA_VERSION,
            "wattprobe_version": __version__,
            "tests": list(self.tests.values()),
        }
        try:
            write_whole(self.json_path, (json.dumps(document, indent=2) + "\n").encode())
        except WattprobeError as error:
            self.problem = str(error)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("wattprobe: the costliest tests")
        measured = [t for t in self.tests.values() if t.get("energy_j") is not None]
        for why in sorted({t["error"] for t in self.tests.values() if t.get("error")}):
            write(f"no energy measured: {why}")
        if measured:
            ranked = sorted(measured, key=lambda t: (t["energy_j"], t["cpu_seconds"] or 0), reverse=True)
            write(f"{'energy':>12}{'':12}  {'CPU time':>9}  {'duration':>9}  test")
            for test in ranked[:TOP]:
                mark = " (estimated)" if test["estimated"] else ""
                write(
                    f"{test['energy_j']:>10.3f} J{mark:<12}  {test['cpu_seconds']:>7.3f} s  "
                    f"{test['duration_s']:>7.3f} s  {test['nodeid']}"
                )
            total = sum(t["energy_j"] for t in measured)
            cpu = sum(t["cpu_seconds"] or 0 for t in measured)
            mark = " (estimated)" if any(t["estimated"] for t in measured) else ""
            write(f"{len(measured)} tests measured: {total:.3f} J{mark}, {cpu:.3f} s of CPU time in all")
        if self.problem:
            write(f"wattprobe: {self.problem}")
        elif self.json_path:
            write(f"wattprobe: every test's figures in {self.json_path}")

    def _entry(self, nodeid: str) -> dict[str, Any]:
        return self.tests.setdefault(
            nodeid,
            {
                "nodeid": nodeid,
                "outcome": "passed",
                "energy_j": None,
                "host_energy_j": None,
                "cpu_seconds": None,
                "duration_s": None,
                "estimated": None,
                "error": None,
            },
        )


def _figures(measurement: Measurement) -> dict[str, Any]:
    return {
        "energy_j": _r(measurement.energy_j),
        "host_energy_j": _r(measurement.host_energy_j),
        "cpu_seconds": _r(measurement.cpu_seconds),
        "duration_s": _r(measurement.duration_s),
        "estimated": measurement.estimated,
        "error": measurement.error,
    }


def _r(value: float | None) -> float | None:
    """Seven significant digits, as `wattprobe run -o` writes them."""
    return None if value is None else float(f"{value:.7g}")
