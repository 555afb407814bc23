"""`wattprobe warp10` (also `warpten`): send power to a Warp 10 platform as Geo Time Series.

Every step, one POST to /api/v0/update with the write token in the X-Warp10-Token header and one
GTS input line per point: `TS// class{label=value,...} VALUE`, TS in microseconds since the epoch,
VALUE a number (integer for energy counters, decimal for power), class and labels percent-encoded
(UTF-8) as Warp 10 decodes them. Points that cannot be sent (server down, 5xx, timeout) wait in a
bounded buffer, oldest dropped first when it is full, and go out, in order, once the server answers.
The token is never logged.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
from collections import deque
from urllib.parse import quote

from wattprobe.errors import UsageError, WattprobeError
from wattprobe.options import count, port, positive
from wattprobe.sinks.points import Point, frame_points

NAME = "warp10"
HELP = "send power to a Warp 10 platform (GTS over HTTP)"

log = logging.getLogger(__name__)

TOKEN_ENV = "SCAPH_WARP10_WRITE_TOKEN"
UPDATE_PATH = "/api/v0/update"
TIMEOUT_S = 10.0
BATCH = 10_000  # lines per POST when catching up after an outage
RETRYABLE = (408, 429)  # 4xx answers worth sending again; any other 4xx will never succeed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-H", "--host", default="localhost", help="Warp 10 host name or IP (default localhost)"
    )
    parser.add_argument("-p", "--port", type=port, default=8080, help="Warp 10 port (default 8080)")
    parser.add_argument("-S", "--scheme", choices=("http", "https"), default="http", help="default http")
    parser.add_argument(
        "-t", "--write-token", help=f"Warp 10 write token (default: the {TOKEN_ENV} environment variable)"
    )
    parser.add_argument(
        "-s", "--step", type=positive, default=2, help="seconds between measurements (default 2)"
    )
    parser.add_argument(
        "-q", "--qemu", action="store_true", help="add a vmname label to QEMU/KVM guest processes"
    )
    parser.add_argument(
        "--max-buffered-points",
        type=count,
        default=100_000,
        help="points kept while Warp 10 is unreachable, oldest dropped first; at least one step's worth "
        "(default 100000)",
    )


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler

    token = args.write_token or os.environ.get(TOKEN_ENV)
    if not token:
        raise WattprobeError(f"no Warp 10 write token: pass -t/--write-token TOKEN or set {TOKEN_ENV}")
    if args.max_buffered_points < 1:
        raise UsageError("--max-buffered-points must be at least 1")
    host = f"[{args.host}]" if ":" in args.host else args.host
    client = Warp10Client(f"{args.scheme}://{host}:{args.port}{UPDATE_PATH}", token, args.max_buffered_points)
    hostname = socket.gethostname()
    sampler = open_sampler(args)
    try:
        for frame in sampler.frames(args.step):
            ts_us = int(frame.timestamp * 1e6)
            points = [p for p in frame_points(frame, qemu=args.qemu) if math.isfinite(p.value)]
            client.send([gts_line(p, ts_us, hostname) for p in points])
    finally:
        sampler.close()
    return 0


def _encode(text: str) -> str:
    """Percent-encode every byte outside letters, digits and `-._~` (spaces as %20, never `+`)."""
    return quote(text, safe="")


def gts_line(point: Point, ts_us: int, host: str) -> str:
    """One GTS input line, with the host as the first label."""
    labels = ",".join(f"{_encode(k)}={_encode(v)}" for k, v in (("host", host), *point.labels) if v != "")
    # repr() of a float always has a '.' or an exponent, so Warp 10 stores a decimal; an int stays a long.
    return f"{ts_us}// {_encode(point.name)}{{{labels}}} {point.value!r}"


class Warp10Client:
    """POSTs GTS lines; keeps what could not be sent, up to `max_points` lines."""

    def __init__(self, url: str, token: str, max_points: int) -> None:
        self.url = url
        self._token = token
        self.max_points = max_points
        self.pending: deque[str] = deque(maxlen=max_points)
        self._failing = False

    def send(self, lines: list[str]) -> None:
        """Queue lines, then send everything pending, oldest first, until done or the server fails."""
        overflow = len(self.pending) + len(lines) - self.max_points
        if overflow > 0:
            log.warning("warp10: buffer full, dropping the %d oldest points", overflow)
        self.pending.extend(lines)
        while self.pending:
            batch = [self.pending[i] for i in range(min(BATCH, len(self.pending)))]
            outcome = self._post(batch)
            if outcome == "retry":
                return
            for _ in batch:
                self.pending.popleft()
        if self._failing:
            log.warning("warp10: %s answers again; points kept during the outage were sent", self.url)
            self._failing = False

    def _post(self, lines: list[str]) -> str:
        """'sent', 'dropped' (the server refused them for good) or 'retry'."""
        import http.client
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url,
            data=("\n".join(lines) + "\n").encode(),
            method="POST",
            headers={"X-Warp10-Token": self._token, "Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read()
            return "sent"
        except urllib.error.HTTPError as error:
            body = self._redact(error.read(500).decode(errors="replace").strip())
            if 400 <= error.code < 500 and error.code not in RETRYABLE:
                log.error(
                    "warp10: %s refused %d points (HTTP %d): %s", self.url, len(lines), error.code, body
                )
                return "dropped"
            why = f"HTTP {error.code}: {body}"
        # URLError, timeouts and resets are OSErrors; a garbled answer is an HTTPException.
        except (OSError, ValueError, http.client.HTTPException) as error:
            why = self._redact(str(getattr(error, "reason", error)))
        log.log(
            logging.INFO if self._failing else logging.WARNING,
            "warp10: cannot send to %s (%s); %d points kept to send later",
            self.url,
            why,
            len(self.pending),
        )
        self._failing = True
        return "retry"

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>")
