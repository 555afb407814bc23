"""`wattprobe powerapi-validate`: the shipped schemas agree with what PowerAPI 2.10 reads."""

from __future__ import annotations

import json

import pytest
from powerapi.report import HWPCReport, PowerReport
from powerapi.report.report import BadInputData

from tests.support.powerapi import make_frame, utc
from wattprobe import cli
from wattprobe.commands.powerapi_validate import check_line, load_validators
from wattprobe.sinks.powerapi.reports import hwpc_reports, iso_utc, power_reports

HWPC = {
    "timestamp": 1673603482630,
    "sensor": "s",
    "target": "all",
    "metadata": {},
    "groups": {"rapl": {"0": {"0": {"RAPL_ENERGY_PKG": 5709496320, "time_enabled": 1, "time_running": 1}}}},
}
POWER = {
    "timestamp": 1673603482630,
    "sensor": "s",
    "target": "all",
    "power": 42.0,
    "metadata": {"socket": "0"},
}


@pytest.fixture(scope="module")
def validators():
    return load_validators()


def test_what_wattprobe_writes_is_valid(validators):
    frame = make_frame()
    for report in hwpc_reports(frame, "s", {0: 0, 1: 4}) + power_reports(frame, "s", processes=2):
        assert check_line(json.dumps(report), validators) == []
        assert check_line(json.dumps(report | {"timestamp": iso_utc(report["timestamp"])}), validators) == []


@pytest.mark.parametrize(
    "timestamp",
    [
        1673603482630,
        "1673603482630",
        "2023-01-14T12:37:37.1",
        "2023-01-14T12:37:37.168817",
        "2023-01-14T12:37:37.168817Z",
        "2023-01-14T12:37:37.168817+00:00",
        "2023-01-14T12:37:37",
        "2023-01-14T12:37:37.1688170",
        "2023-01-14 12:37:37.168817",
        "2023-02-30T12:37:37.168817",
        1673603482630.5,
        -5,
        True,
        "",
    ],
)
def test_timestamps_are_judged_as_powerapi_judges_them(timestamp, validators):
    for report, kind in ((HWPC, HWPCReport), (POWER, PowerReport)):
        document = report | {"timestamp": timestamp}
        with utc():
            try:
                kind.from_json(document)
                # PowerAPI also takes a bool (an int to it) and negative ms; the schemas do not.
                powerapi_reads = not isinstance(timestamp, int) or (type(timestamp) is int and timestamp >= 0)
            except (BadInputData, ValueError, TypeError, OSError):
                powerapi_reads = False
        assert (check_line(json.dumps(document), validators) == []) == powerapi_reads, timestamp


BAD_LINES = [
    ('{"timestamp": 1, "sensor": "s"', "not JSON"),
    ("[1, 2]", "a report is a JSON object, got list"),
    ('{"timestamp": 1, "sensor": "s", "target": "all", "metadata": {}}', "neither an HWPC report"),
    (json.dumps(HWPC | {"timestamp": "2023-01-14T12:37:37Z"}), "$.timestamp"),
    (json.dumps({k: v for k, v in HWPC.items() if k != "metadata"}), "'metadata' is a required property"),
    (json.dumps(HWPC | {"sensor": ""}), "$.sensor"),
    (json.dumps(HWPC | {"groups": {"rapl": {"cpu0": {"0": {"E": 1}}}}}), "socket ids"),
    (json.dumps(HWPC | {"groups": {"rapl": {"0": {"x": {"E": 1}}}}}), "cpu ids"),
    (json.dumps(HWPC | {"groups": {"rapl": {"0": {"0": {"E": -1}}}}}), "$.groups.rapl['0']['0'].E"),
    (json.dumps(HWPC | {"groups": {"rapl": {"0": {"0": {"E": 1.5}}}}}), "integers >= 0"),
    (json.dumps(HWPC | {"groups": {"rapl": {"0": {"0": {}}}}}), "should be non-empty"),
    (json.dumps(POWER | {"power": True}), "$.power"),
    (json.dumps(POWER | {"power": "42"}), "$.power"),
    (json.dumps(POWER | {"metadata": {"socket": "zero"}}), "$.metadata.socket"),
    (json.dumps(POWER | {"metadata": {"ratio": 1.5}}), "$.metadata.ratio"),
    (json.dumps(POWER | {"metadata": []}), "$.metadata"),
    (json.dumps(POWER | {"timestamp": "2023-02-30T00:00:00.0"}), "day is out of range"),
]


def test_bad_lines_get_line_numbered_errors(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(HWPC)
    lines = [good, ""]  # a blank line is skipped, but counts
    for line, _ in BAD_LINES:
        lines += [line, good]
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["powerapi-validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    for index, (_, message) in enumerate(BAD_LINES):
        number = 3 + 2 * index
        errors = [line for line in out if line.startswith(f"{path}:{number}: ")]
        assert errors and any(message in error for error in errors), (number, message, errors)
    assert not [line for line in out if line.split(":")[1] in {"1", "2", "4", "6"}]


def test_every_file_is_checked_and_unreadable_ones_said(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(HWPC) + "\n" + json.dumps(POWER) + "\n")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00")
    assert cli.main(["powerapi-validate", str(tmp_path / "absent.jsonl"), str(binary), str(good)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{tmp_path / 'absent.jsonl'}: cannot read: No such file or directory",
        f"{binary}: not UTF-8 text (invalid start byte at byte 0 of a line)",
        f"{good}: ok, 2 reports",
    ]
