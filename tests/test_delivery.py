"""The pipeline's delivery of a remote sink (the real warp10 sink) to a loopback server that is down,
then slow, then answering 503, then up: the tick never waits, each outage is said once, nothing within
the queue's capacity is lost, the oldest items go first beyond it, and closing waits a bounded time."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.frames import TIMESTAMP, frame
from tests.support.net import free_port
from tests.support.waiting import wait_for
from wattprobe.pipeline.delivery import Delivered, delivered
from wattprobe.retry import Backoff
from wattprobe.sinks import Context, Sink, remote, warp10
from wattprobe.sinks.powerapi import sink as powerapi

TOKEN = "t0ken"
SLOW_S = 0.3
TICK_BUDGET_S = 0.005


class Server(ThreadingHTTPServer):
    """Answers POSTs as `mode` says: "up" (204), "slow" (204 after SLOW_S), "503". Records the
    frames (their index, from the lines' timestamps) of every accepted request, and of every request."""

    daemon_threads = True

    def __init__(self, port: int, mode: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.mode = mode
        self.accepted: list[int] = []  # frame index of each accepted line, in arrival order
        self.tried: list[list[int]] = []  # frame indexes of each request's lines
        self.busy = threading.Event()  # a slow request is being answered
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        frames = [round(int(line.split("//")[0]) / 1e6 - TIMESTAMP) for line in body.splitlines()]
        self.server.tried.append(frames)
        if self.server.mode == "503":
            self.send_error(503)
            return
        if self.server.mode == "slow":
            self.server.busy.set()
            time.sleep(SLOW_S)
        self.server.accepted.extend(frames)
        self.send_response(204)
        self.end_headers()


def warp10_sink(port: int, frames_kept: int) -> tuple[Sink, int]:
    """The warp10 sink to 127.0.0.1:`port`, keeping `frames_kept` frames' worth of points; and the
    points per frame."""
    settings = warp10.Settings(host="127.0.0.1", port=port, write_token=TOKEN)
    context = Context(hostname="node-1")
    per_frame = len(warp10.create(settings, context).render(frame()))
    settings = dataclasses.replace(settings, max_buffered_points=frames_kept * per_frame)
    return warp10.create(settings, context), per_frame


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


def test_down_slow_503_then_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    port = free_port()
    sink, per_frame = warp10_sink(port, frames_kept=5)
    assert remote(sink) is not None
    output = delivered(sink, backoff=Backoff(0.05, 0.2), flush_s=5.0)
    assert isinstance(output, Delivered) and output.name == "warp10"
    durations: list[float] = []

    def write(*indexes: int) -> None:
        for n in indexes:
            started = time.perf_counter()
            output.write(frame(timestamp=TIMESTAMP + n))
            durations.append(time.perf_counter() - started)

    def arrived(*indexes: int) -> bool:
        return all(server.accepted.count(n) == per_frame for n in indexes)

    # Down: nothing listens; the frames wait.
    write(0, 1, 2)
    wait_for(lambda: warnings(caplog, "retrying in"), 5, "the outage to be said")
    # Slow: the waiting frames go out; a send in flight holds no write back.
    server = Server(port, "slow")
    try:
        assert server.busy.wait(5)
        write(3, 4)
        wait_for(lambda: arrived(0, 1, 2, 3, 4), 10, "frames 0-4")
        assert warnings(caplog, "works again") == 1
        # 503: a second outage; beyond the capacity (5 frames) the oldest are dropped.
        server.mode = "503"
        write(5)
        wait_for(lambda: warnings(caplog, "retrying in") == 2, 5, "the second outage to be said")
        write(6, 7, 8, 9, 10, 11, 12)
        wait_for(lambda: any(tried[:1] == [8] for tried in server.tried), 5, "a retry of frames 8-12")
        # Up: what was kept arrives, in order, and the dropped frames never do.
        server.mode = "up"
        wait_for(lambda: arrived(8, 9, 10, 11, 12), 10, "frames 8-12")
        # Closing sends what waits, even to a slow server, within its bound.
        server.mode = "slow"
        write(13, 14)
        started = time.monotonic()
        output.close()
        closing_s = time.monotonic() - started
    finally:
        server.stop()
    assert arrived(13, 14) and closing_s < output.flush_s
    assert sorted(set(server.accepted)) == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14]
    assert server.accepted == sorted(server.accepted)
    assert output.delivery.dropped == 3 * per_frame
    assert warnings(caplog, "retrying in") == 2  # one line per outage, each way
    assert warnings(caplog, "works again") == 2
    assert warnings(caplog, "oldest dropped") == 1
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 5
    assert max(durations) < TICK_BUDGET_S, durations


def test_closing_gives_up_at_its_bound_when_the_far_end_is_down(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sink, _ = warp10_sink(free_port(), frames_kept=5)
    output = delivered(sink, backoff=Backoff(0.05, 0.2), flush_s=0.5)
    output.write(frame())
    started = time.monotonic()
    output.close()
    assert 0.4 < time.monotonic() - started < 1.5
    assert isinstance(output, Delivered) and output.delivery.pending == 0
    assert warnings(caplog, "retrying in") == 1


def test_a_local_sink_is_not_wrapped() -> None:
    sink = powerapi.create(powerapi.Settings(file="-"), Context(hostname="node-1"))
    try:
        assert remote(sink) is None and delivered(sink) is sink
    finally:
        sink.close()
