"""Property: whatever bytes a client sends to the metrics port (request lines, targets, versions, headers
and line ends generated, or raw bytes), over a real loopback socket, it gets a well-formed HTTP/1.x
response or a closed connection within a time bound, and the server answers a good scrape afterwards."""

from __future__ import annotations

import base64
import email.utils
import http.client
import io
import itertools
import socket
import string
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import frames
from tests.support.net import http_get
from wattprobe.sinks.prometheus.families import FrameCollector
from wattprobe.sinks.prometheus.series import SeriesSettings
from wattprobe.sinks.prometheus.server import MetricsServer, _Handler, imf_date, listen

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


class _Parsed:
    """What a handler's parse of a request head gave: its result, its error's status, its findings."""

    def __init__(self, handler: BaseHTTPRequestHandler, parsed: bool, errors: list[int]) -> None:
        self.ok = parsed
        self.error = errors[0] if errors else None
        self.command = handler.command if parsed else None
        self.path = handler.path if parsed else None
        self.close = handler.close_connection if parsed else None


def _parse(cls: type[BaseHTTPRequestHandler], head: bytes) -> tuple[_Parsed, BaseHTTPRequestHandler]:
    """Parse `head` with a handler of `cls` made without a socket (its answers recorded, not sent)."""
    errors: list[int] = []
    handler = cls.__new__(cls)
    handler.send_error = lambda code, *_: errors.append(code)  # type: ignore[method-assign]
    handler.rfile, handler.wfile = io.BytesIO(head), io.BytesIO()  # type: ignore[assignment]
    handler.raw_requestline = handler.rfile.readline(65537)  # type: ignore[attr-defined]
    if len(handler.raw_requestline) > 65536:  # handle_one_request's 414, before either parse
        return _Parsed(handler, False, [414]), handler
    parse = handler._parse_request if isinstance(handler, _Handler) else handler.parse_request
    return _Parsed(handler, parse(), errors), handler


class _Stdlib(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"


FIELD_NAME = st.text("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits, min_size=1, max_size=16)
FIELD_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip)
OWS = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def well_formed_heads(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A request line of parts good or wrong, then header fields as RFC 9112 writes them (spaces or
    tabs around the value), and the names they use."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    # A target with a line feed would end the request line there: that head is not the one drawn (the
    # line after it, not a field, is read as RFC 9112 says, skipped, where email's parser stops).
    parts = (draw(METHODS), draw(TARGETS.filter(lambda t: "\n" not in t)), draw(VERSIONS))
    line = " ".join(p for p in parts if p)
    fields = draw(
        st.lists(st.tuples(FIELD_NAME | st.sampled_from(sorted(HEADER_VALUES)), FIELD_VALUE), max_size=8)
    )
    head = line + eol
    for name, value in fields:
        head += f"{name}:{draw(OWS)}{value}{draw(OWS)}{eol}"
    return encode(head + eol), [name for name, _ in fields]


@settings(max_examples=300, deadline=None)
@given(well_formed_heads())
def test_a_well_formed_request_reads_as_the_standard_library_reads_it(head: tuple[bytes, list[str]]):
    """The server reads a request's head itself (the standard library's email parser took a third of
    a scrape's HTTP time): where the head is well formed, it finds what `http.server` finds."""
    data, names = head
    ours, handler = _parse(_Handler, data)
    theirs, reference = _parse(_Stdlib, data)
    assert (ours.ok, ours.error, ours.command, ours.path, ours.close) == (
        theirs.ok, theirs.error, theirs.command, theirs.path, theirs.close
    )  # fmt: skip
    if ours.ok:
        for name in names:
            expected = reference.headers.get(name)
            assert handler.fields.get(name.lower()) == (
                expected.strip(" \t") if expected is not None else None
            )


def test_a_folded_or_odd_header_line_reads_as_rfc_9112_says():
    data = (
        b"GET /metrics HTTP/1.1\r\nAccept: text/plain;\r\n\t version=0.0.4\r\nno colon here\r\n"
        b"Bad Name: x\r\n: nameless\r\nAccept-Encoding:   gzip  \r\n\r\n"
    )
    parsed, handler = _parse(_Handler, data)
    assert parsed.ok and not parsed.close
    assert handler.fields == {"accept": "text/plain; version=0.0.4", "accept-encoding": "gzip"}


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    ],
)
def test_a_head_past_the_limits_is_answered_with_the_standard_status(head: bytes, status: int):
    assert _parse(_Handler, head)[0].error == status == _parse(_Stdlib, head)[0].error


def test_a_version_in_digits_other_than_ascii_is_refused():
    """`HTTP/1.١` (an Arabic-Indic one) reads as 1.1 to http.server; it is no HTTP version."""
    assert _parse(_Handler, "GET /metrics HTTP/1.١\r\n\r\n".encode())[0].error == 400


@given(st.integers(min_value=0, max_value=253402300799))  # 9999-12-31T23:59:59Z
def test_the_date_header_reads_as_the_standard_library_writes_it(second: int):
    assert imf_date(second) == email.utils.formatdate(second, usegmt=True)
