"""Property: whatever bytes a client sends to the metrics port (request lines, targets, versions, headers
and line ends generated, or raw bytes), over a real loopback socket, it gets a well-formed HTTP/1.x
response or a closed connection within a time bound, and the server answers a good scrape afterwards."""

from __future__ import annotations

import base64
import http.client
import io
import itertools
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import frames
from tests.support.net import http_get
from wattprobe.sinks.prometheus.families import FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.prometheus.server import MetricsServer, listen

CREDENTIALS = b"user:pass"
GOOD_AUTH = "Basic " + base64.b64encode(CREDENTIALS).decode()
TIME_BOUND_S = 2.0  # to the end of the answer, once the client has sent all and shut its side
FRAME = frames.frame([frames.consumer(frames.process(pid, f"worker --n {pid}"), 10.0) for pid in (101, 102)])


@pytest.fixture(scope="module", params=[None, CREDENTIALS], ids=["open", "basic-auth"])
def server(request: pytest.FixtureRequest) -> Iterator[MetricsServer]:
    """One server for all the examples of a test, served from a thread of this process."""
    served = listen("127.0.0.1", 0)
    served.collector = FrameCollector(lambda: FRAME, SeriesSettings())
    served.credentials = request.param
    thread = threading.Thread(target=served.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()


TOKEN = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
ANY_TEXT = st.text(max_size=40)  # any code point: controls, non-ASCII, lone surrogates
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "OPTIONS", "CONNECT", "PRI", "get", ""]) | TOKEN
TARGETS = st.sampled_from(
    [
        "/metrics",
        "/",
        "/metrics?x=1&x=2",
        "/metrics/",
        "//metrics",
        "*",
        "http://127.0.0.1/metrics",
        "/%00%ff",
        "//[x/metrics",
        "http://[::1/metrics",
        "/" + "a" * 70_000,  # past the request line's limit
    ]
) | ANY_TEXT.map(lambda t: "/" + t)
VERSIONS = st.sampled_from(
    [
        "HTTP/1.1",
        "HTTP/1.0",
        "HTTP/0.9",
        "HTTP/2.0",
        "HTTP/1.1.1",
        "HTTP/01.1",
        "HTTP/1.",
        "http/1.1",
        "HTTP/x",
        "",
    ]
)
HEADER_VALUES = {
    "Accept": [
        "application/openmetrics-text; version=1.0.0",
        "application/openmetrics-text; version=abc; charset=utf-8",
        "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ";;,,=",
    ],
    "Accept-Encoding": ["gzip", "gzip;q=0", "gzip; q=abc", "*", "identity, gzip;q=1.0"],
    "Authorization": [
        GOOD_AUTH,
        "Basic ===",
        "Basic dXNlcg==",
        "Basic ü",
        "Bearer x",
        "Basic",
        "basic  " + GOOD_AUTH[6:],
    ],
    "Content-Length": ["0", "-1", "5", "99999999999999999999", "abc"],
    "Transfer-Encoding": ["chunked", "gzip, chunked"],
    "Connection": ["close", "keep-alive", "upgrade"],
    "Expect": ["100-continue", "200-ok"],
    "Host": ["127.0.0.1", "", "[::1", "a" * 300],
}
HEADERS = st.lists(
    st.one_of(
        st.sampled_from(sorted(HEADER_VALUES)).flatmap(
            lambda name: st.tuples(st.just(name), st.sampled_from(HEADER_VALUES[name]) | ANY_TEXT)
        ),
        st.tuples(TOKEN | ANY_TEXT, ANY_TEXT),
    ),
    max_size=8,
) | st.just([("X-A", "b")] * 101)  # past the count of headers allowed


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request built from parts (good, odd or wrong), possibly with a body or a second request."""
    eol = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    line = " ".join(p for p in (draw(METHODS), draw(TARGETS), draw(VERSIONS)) if p or draw(st.booleans()))
    headers = "".join(f"{name}: {value}{eol}" for name, value in draw(HEADERS))
    return encode(line + eol + headers + eol) + draw(st.binary(max_size=64))


REQUESTS = st.one_of(requests(), st.binary(max_size=2048), requests().map(lambda r: r * 2))


def exchange(port: int, data: bytes, cuts: list[int]) -> tuple[bytes, float]:
    """Send `data` (in pieces, cut at `cuts`), shut the sending side, and read the answer to its end."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIME_BOUND_S + 3) as sock:
        began = time.monotonic()
        bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
        try:
            for start, end in itertools.pairwise(bounds):
                sock.sendall(data[start:end])
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN: it answered and closed before reading all
            pass
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - began


class _Received:
    """What http.client reads a response from: the bytes received."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))  # type: ignore[arg-type]


def check_answer(answer: bytes, request: bytes) -> None:
    """`answer` is empty (closed), or an HTTP/1.x response whose headers end and whose body is whole."""
    if not answer:
        return
    assert answer.startswith((b"HTTP/1.0 ", b"HTTP/1.1 ")), answer[:200]
    head = answer.partition(b"\r\n\r\n")
    assert head[1], f"headers never end: {answer[:300]!r}"
    method = "HEAD" if request.startswith(b"HEAD ") else "GET"
    response = http.client.HTTPResponse(_Received(answer), method=method)  # type: ignore[arg-type]
    response.begin()  # skips a 100 Continue
    assert 100 <= response.status <= 599
    assert response.getheader("Content-Length") is not None, answer[:300]
    body = response.read()  # raises IncompleteRead when the body is shorter than announced
    assert len(body) == int(response.getheader("Content-Length") or 0) or method == "HEAD"


def good_scrape(served: MetricsServer) -> None:
    status, _, body = http_get(served.url(), {"Authorization": GOOD_AUTH})
    assert status == 200 and b"\nwattprobe_host_power_watts 60.0\n" in body, (status, body[:200])


@settings(
    max_examples=100,
    deadline=None,  # the time bound is asserted below, on the server's part only
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS, cuts=st.lists(st.integers(min_value=0), max_size=3))
def test_any_request_gets_a_well_formed_answer_in_time(
    server: MetricsServer, request: bytes, cuts: list[int]
):
    answer, took = exchange(server.server_port, request, cuts)
    assert took < TIME_BOUND_S, (took, request[:200])
    check_answer(answer, request)
    good_scrape(server)
