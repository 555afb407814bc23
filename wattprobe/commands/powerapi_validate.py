"""`wattprobe powerapi-validate`: check JSON-lines report files against the shipped JSON schemas.

Each line is one HWPC report (it has `groups`) or Power report (it has `power`), checked against
hwpc-report.schema.json or power-report.schema.json (draft 2020-12, in this package). Errors name
the file, line and JSON path; the exit status is 1 when any line is wrong.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from importlib.resources import files
from typing import Any

from wattprobe.errors import WattprobeError

NAME = "powerapi-validate"
HELP = "check PowerAPI report files (JSON lines) against the HWPC and Power report schemas"
SCHEMAS = {"hwpc": "hwpc-report.schema.json", "power": "power-report.schema.json"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSON-lines files, one report per line")


def run(args: argparse.Namespace) -> int:
    validators = load_validators()
    failed = False
    for path in args.files:
        reports, errors = check_file(path, validators)
        for error in errors:
            print(error)
        if errors:
            failed = True
        else:
            print(f"{path}: ok, {reports} reports")
    return 1 if failed else 0


def load_validators() -> dict[str, Any]:
    """A jsonschema validator per report kind."""
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        raise WattprobeError(
            "powerapi-validate needs the jsonschema package: pip install 'wattprobe[validate]'"
        ) from None
    here = files("wattprobe.sinks.powerapi")
    return {
        kind: Draft202012Validator(json.loads(here.joinpath(name).read_text(encoding="utf-8")))
        for kind, name in SCHEMAS.items()
    }


def check_file(path: str, validators: dict[str, Any]) -> tuple[int, list[str]]:
    """The number of reports in a file and its errors, each 'FILE:LINE: message' (or 'FILE: message')."""
    reports = 0
    errors = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    reports += 1
                    errors += [f"{path}:{number}: {message}" for message in check_line(line, validators)]
    except UnicodeDecodeError as error:
        errors.append(f"{path}: not UTF-8 text ({error.reason} at byte {error.start} of a line)")
    except OSError as error:
        errors.append(f"{path}: cannot read: {error.strerror}")
    return reports, errors


def check_line(line: str, validators: dict[str, Any]) -> list[str]:
    """What is wrong with one line: not JSON, neither kind of report, or schema errors by JSON path."""
    try:
        report = json.loads(line.strip())
    except json.JSONDecodeError as error:
        return [f"not JSON: {error.msg} at column {error.colno}"]
    if not isinstance(report, dict):
        return [f"a report is a JSON object, got {type(report).__name__}"]
    if "groups" in report:
        kind = "hwpc"
    elif "power" in report:
        kind = "power"
    else:
        return ["neither an HWPC report (no 'groups') nor a Power report (no 'power')"]
    messages = []
    for problem in sorted(validators[kind].iter_errors(report), key=lambda e: list(map(str, e.path))):
        expected = problem.schema.get("description") if isinstance(problem.schema, dict) else None
        hint = f" (expected: {expected})" if expected and problem.validator != "required" else ""
        key = "key " if "propertyNames" in problem.relative_schema_path else ""
        messages.append(f"{kind} report: {problem.json_path}: {key}{problem.message}{hint}")
    if not messages:
        messages += _check_date(report["timestamp"], kind)
    return messages


def _check_date(timestamp: Any, kind: str) -> list[str]:
    """The schema checks the shape of a date; this checks it exists (no 30 February)."""
    if isinstance(timestamp, str) and "T" in timestamp:
        try:
            datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f")
        except ValueError as error:
            return [f"{kind} report: $.timestamp: {error}"]
    return []
