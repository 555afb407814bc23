"""PowerAPI's CSV directory layout, appended to tick by tick, readable by PowerAPI's CsvDB.

- HWPC: `<dir>/<group>.csv`, header `timestamp,sensor,target,socket,cpu,<events in byte order>`,
  one row per (tick, target, socket, cpu), integer ms timestamps, no empty cells.
- Power: `<dir>/<sensor>-<target>/PowerReport.csv`, header `timestamp,sensor,target,power,socket`
  then the other metadata keys sorted. CsvDB reads one row per timestamp and target from a file,
  so a report scoped to one socket goes to `PowerReport-socket<N>-<scope>.csv` beside it.
  A cgroup target's slashes make nested directories, as PowerAPI's own writer does.
A file that already exists is appended to when its header matches, else left alone (logged).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from wattprobe.errors import WattprobeError
from wattprobe.sinks.powerapi.reports import Report

log = logging.getLogger(__name__)

HWPC_COMMON = ["timestamp", "sensor", "target", "socket", "cpu"]
POWER_COMMON = ["timestamp", "sensor", "target", "power", "socket"]


class CsvDirectory:
    """Writes each tick's reports into `root` in PowerAPI's layout."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WattprobeError(
                f"cannot create the CSV directory {root}: {error.strerror}; choose another with --csv"
            ) from None
        self._headers: dict[Path, list[str] | None] = {}  # None: the file is skipped this run

    def write(self, reports: list[Report]) -> None:
        rows: dict[Path, list[dict[str, object]]] = {}
        for report in reports:
            for path, row in self._rows(report):
                rows.setdefault(path, []).append(row)
        for path, file_rows in rows.items():
            self._append(path, file_rows)

    def _rows(self, report: Report) -> list[tuple[Path, dict[str, object]]]:
        common = {"timestamp": report["timestamp"], "sensor": report["sensor"], "target": report["target"]}
        if "groups" in report:
            return [
                (self.root / f"{group}.csv", common | {"socket": socket, "cpu": cpu} | events)
                for group, sockets in report["groups"].items()
                for socket, cpus in sorted(sockets.items(), key=lambda item: int(item[0]))
                for cpu, events in sorted(cpus.items(), key=lambda item: int(item[0]))
            ]
        directory = self._target_dir(report["sensor"], report["target"])
        if directory is None:
            return []
        metadata = report["metadata"]
        name = "PowerReport.csv"
        if "socket" in metadata:
            name = f"PowerReport-socket{metadata['socket']}-{metadata.get('scope', 'all')}.csv"
        return [(directory / name, common | {"power": report["power"], "socket": ""} | metadata)]

    def _target_dir(self, sensor: str, target: str) -> Path | None:
        parts = f"{sensor}-{target}".split("/")
        if any(part in (".", "..") for part in parts) or "\0" in target:
            log.warning("CSV: target %r cannot name a directory; its reports are not written", target)
            return None
        return self.root.joinpath(*(p for p in parts if p))

    def _append(self, path: Path, rows: list[dict[str, object]]) -> None:
        header = self._header(path, rows[0])
        if header is None:
            return
        keep = [row for row in rows if set(row) == set(header)]
        if len(keep) < len(rows):
            log.warning("CSV: %d rows with other columns than %s left out", len(rows) - len(keep), path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0
            with open(path, "a", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
                if new:
                    writer.writeheader()
                writer.writerows(keep)
        except OSError as error:
            log.warning("CSV: cannot write %s: %s", path, error.strerror)

    def _header(self, path: Path, row: dict[str, object]) -> list[str] | None:
        """The file's columns: fixed by the first row this run, checked against an existing file."""
        if path in self._headers:
            return self._headers[path]
        common = HWPC_COMMON if "cpu" in row else POWER_COMMON
        header = common + sorted(set(row) - set(common))
        try:
            with open(path, encoding="utf-8") as f:
                existing = f.readline().strip()
        except FileNotFoundError:
            existing = ""
        except OSError as error:
            log.warning("CSV: cannot read %s: %s", path, error.strerror)
            existing = ""
        if existing and existing != ",".join(header):
            log.error(
                "CSV: %s has other columns (%s) than this run writes (%s): not writing it; "
                "move it away or choose another --csv directory",
                path,
                existing,
                ",".join(header),
            )
            self._headers[path] = None
            return None
        self._headers[path] = header
        return header
