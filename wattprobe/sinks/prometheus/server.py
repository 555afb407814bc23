"""The HTTP endpoint of the pull exporter: the metrics path and an index page, nothing else.

The exposition (text format 0.0.4 or OpenMetrics, by the scraper's Accept header) is prometheus_client's;
this module adds the listening socket (IPv6 `::` with an IPv4 fallback), optional TLS and basic auth,
and one-line errors for what a user can get wrong (address, port, TLS and password files). It reads a
request's head and writes a response's itself, by http.server's rules (a test holds the two to the
same findings): http.server's own way, through the email parser, was 0.1 of the 0.3 ms a kept-alive
scrape's HTTP took on an idle host.

It also holds against slow or many clients (slowloris): connections, each with its own thread, are capped
well below the descriptors the sensor and the /proc reader need (MAX_CONNECTIONS, at most an eighth of
the soft RLIMIT_NOFILE); a request (request line and headers, and a TLS handshake before it) must arrive
whole within REQUEST_DEADLINE_S, however slowly its bytes trickle in; and when slow clients hold every
slot, a new connection that brings its request whole takes the slot of the slowest (closed for it), and
one that does not is closed at once. A scraper sends its request at once: it is served while slow
clients flood the port.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import gzip
import hmac
import html
import io
import logging
import os
import resource
import selectors
import socket
import ssl
import struct
import termios
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from wattprobe import __version__
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks.kit.net import netloc

if TYPE_CHECKING:
    from wattprobe.sinks.prometheus.families import FrameCollector

log = logging.getLogger(__name__)

ANY_ADDRESS = "::"
MAX_CONNECTIONS = 64  # served at once (see _admit)
REQUEST_DEADLINE_S = 5.0  # for a whole request to arrive, from its first byte (or the connection)
IDLE_TIMEOUT_S = 30.0  # a kept-alive connection's wait for its next request
WRITE_TIMEOUT_S = 30.0  # to send a response
EVICT_SILENT_S = 0.5  # a connection silent this long may be closed to make room (see _stalled)
ADMIT_WAIT_S = 1.0  # a new connection waits this long for a slot, then is closed
_MAX_LINE = 65536  # bytes in a header line, and header lines in a request: http.client's limits
_MAX_HEADERS = 100
_OWS = " \t"  # the white space around a header field's value


@dataclass(eq=False)
class _Connection:
    """A connection being served: whether, and since when, it waits for a request."""

    sock: socket.socket
    deadline: float  # when the request it waits for must have arrived
    waiting_since: float | None  # None once its request's headers are in, and while it is served
    started: bool = False  # the request it waits for has begun to arrive
    evicted: bool = False
    first: bool = True  # no request served yet


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer when the descriptor limit is low: an eighth of it at most."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else max(1, min(MAX_CONNECTIONS, soft // 8))


class MetricsServer(ThreadingHTTPServer):
    """A thread per connection; serves `collector` at `metrics_path`."""

    daemon_threads = True
    # Connections the kernel queues before accept(): socketserver's (and prometheus_client's) default of
    # 5 drops SYNs when scrapers arrive together, and a dropped SYN costs its client 1, 3, 7 s and more
    # (retransmits) of latency. Linux caps the value at net.core.somaxconn, as Go servers do.
    request_queue_size = socket.SOMAXCONN
    collector: FrameCollector
    metrics_path = "/metrics"
    credentials: bytes | None = None  # b"user:password" when basic auth is on
    tls: ssl.SSLContext | None = None

    def __init__(self, family: socket.AddressFamily, address: tuple) -> None:
        self.address_family = family
        self.max_connections = connection_cap()
        self._connections: dict[socket.socket, _Connection] = {}
        self._slots = threading.Condition()  # guards _connections; notified when one ends
        self._wake_read, self._wake_write = os.pipe()  # shutdown() wakes serve_forever() through it
        os.set_blocking(self._wake_read, False)
        self._stopping = False
        self._stopped = threading.Event()
        super().__init__(address, _Handler, bind_and_activate=False)

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """socketserver's loop without its polling (its own comment asks for this): it waits for a
        connection or for `shutdown()`, which wakes it through a pipe, so an idle agent is woken by
        nothing between scrapes. `poll_interval` is not used."""
        self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_read, selectors.EVENT_READ)
                while not self._stopping:
                    ready = selector.select()
                    if not self._stopping and any(key.fileobj is self for key, _ in ready):
                        self._handle_request_noblock()  # type: ignore[attr-defined]  # socketserver's own step
        finally:
            with contextlib.suppress(OSError):
                while os.read(self._wake_read, 64):
                    pass
            self._stopping = False
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever() (running in another thread, or about to) and wait for it to end."""
        self._stopping = True
        os.write(self._wake_write, b"\0")
        self._stopped.wait()

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:  # `::` takes IPv4 clients too
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # A connection reaches accept() once its first bytes have come (within the request's deadline):
        # a client that connects and stays silent costs no descriptor, and one accepted brings its request.
        with contextlib.suppress(OSError, AttributeError):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, int(REQUEST_DEADLINE_S))
        TCPServer.server_bind(self)  # not HTTPServer's: its reverse DNS lookup can hang start-up
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{netloc(self.server_name, self.server_port)}{self.metrics_path}"

    def use_tls(self, context: ssl.SSLContext) -> None:
        # The handshake happens in the connection's thread (see _Handler.setup), not in accept().
        self.tls = context
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: object, client_address: tuple) -> None:
        log.debug("connection from %s failed", client_address[0], exc_info=True)

    def get_request(self) -> tuple[socket.socket, tuple]:
        try:
            return super().get_request()
        except OSError as error:  # out of descriptors: wait, rather than spin on a listener that is ready
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                time.sleep(0.1)
            raise

    def process_request(self, request: socket.socket, client_address: tuple) -> None:  # type: ignore[override]
        if not self._admit(request):
            log.debug(
                "connection from %s closed: %d connections already", client_address[0], len(self._connections)
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._slots:  # forgotten before it is closed: an eviction cannot reach a reused descriptor
            if self._connections.pop(request, None) is not None:
                self._slots.notify()
        super().shutdown_request(request)

    def connection(self, request: socket.socket) -> _Connection:
        """The record of an admitted connection (a fresh one for a request that bypassed _admit)."""
        found = self._connections.get(request)
        if found is None:
            now = time.monotonic()
            found = _Connection(request, now + REQUEST_DEADLINE_S, now)
        return found

    def _admit(self, request: socket.socket) -> bool:
        """Whether `request` may be served: at once below the cap; else, when slow clients hold slots,
        only if it brings its request, in the slot of the slowest (closed for it); else once a slot
        frees, within ADMIT_WAIT_S. New slow clients are closed at once, so the backlog drains fast and
        a scraper's connection behind them is reached."""
        now = time.monotonic()
        give_up = now + ADMIT_WAIT_S
        with self._slots:
            full = len(self._connections) >= self.max_connections
            if full and self._stalled(now) is not None and not _brings_request(request):
                return False
            while len(self._connections) >= self.max_connections:
                victim = None if any(c.evicted for c in self._connections.values()) else self._stalled(now)
                if victim is not None:  # its slot frees when its thread sees the end
                    victim.evicted = True
                    # The socket's own shutdown, not SSLSocket's: its thread, blocked reading, sees the end.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(victim.sock, socket.SHUT_RDWR)
                if now >= give_up:
                    return False
                self._slots.wait(0.05)
                now = time.monotonic()
            self._connections[request] = _Connection(request, now + REQUEST_DEADLINE_S, now)
        return True

    def _stalled(self, now: float) -> _Connection | None:
        """The connection whose client stopped sending its request halfway (its thread read all there
        was), else the one silent longest, for EVICT_SILENT_S at least; None when every one is being
        served or its request is on its way. A scraper's request arrives whole: it is never the one."""
        waiting = [
            c
            for c in self._connections.values()
            if not c.evicted
            and c.waiting_since is not None
            and (c.started or now - c.waiting_since >= EVICT_SILENT_S)
        ]
        for c in sorted(waiting, key=lambda c: (not c.started, c.waiting_since or 0.0)):
            if _unread(c.sock) == 0:  # bytes there unread: a client served late, not a slow one
                return c
        return None


def _brings_request(sock: socket.socket) -> bool:
    """Whether the head of a request waits unread on `sock` (with TLS, which cannot be read here: any
    bytes)."""
    try:
        data = socket.socket.recv(sock, 4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:
        return False
    if isinstance(sock, ssl.SSLSocket):
        return bool(data)
    return len(data) == 4096 or b"\n\r\n" in data or b"\n\n" in data


def _unread(sock: socket.socket) -> int:
    """Bytes received on `sock` that its thread has not read yet."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def listen(address: str, port: int) -> MetricsServer:
    """A bound, listening server; WattprobeError with the fix when the address or port cannot work."""
    if address == ANY_ADDRESS:
        try:
            return _listen(socket.AF_INET6, ("::", port, 0, 0), address, port)
        except OSError as error:  # IPv6 disabled on this host
            if error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            log.info("IPv6 unavailable (%s): listening on 0.0.0.0", error.strerror)
            return _listen(socket.AF_INET, ("0.0.0.0", port), "0.0.0.0", port)
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise WattprobeError(
            f"cannot listen on {address!r}: not an IP address or a known host name ({error}); "
            f"give -a an address of this machine, e.g. :: (all) or 127.0.0.1"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    return _listen(family, sockaddr, address, port)


def _listen(family: socket.AddressFamily, sockaddr: tuple, address: str, port: int) -> MetricsServer:
    server = None
    try:
        server = MetricsServer(family, sockaddr)
        server.server_bind()
        server.server_activate()
    except OSError as error:
        if server is not None:
            server.server_close()
        if address == ANY_ADDRESS and error.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
        raise WattprobeError(_bind_error(error, address, port)) from None
    return server


def _bind_error(error: OSError, address: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {address} is already in use; stop what uses it or choose another port with -p"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"{address} is not an address of this machine; use -a :: (all addresses) or one of its own"
    if error.errno == errno.EACCES:
        return f"no permission to listen on port {port} (ports below 1024 need privileges); use -p 8080"
    return f"cannot listen on {address} port {port}: {error.strerror}"


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """A server TLS context from PEM files, or None when neither is given."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise UsageError("--tls-cert and --tls-key go together: give both PEM files")
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise WattprobeError(f"cannot read the TLS {what} {path}: {error.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        reason = getattr(error, "reason", None) or error.strerror or str(error)
        raise WattprobeError(
            f"cannot use {cert} and {key} as a TLS certificate and its key ({reason}); "
            f"give a PEM certificate (chain) and the PEM private key that matches it"
        ) from None
    return context


def read_credentials(path: str | None) -> bytes | None:
    """`USER:PASSWORD` from the first line of a file (kept out of the command line, which is visible)."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise WattprobeError(f"cannot read the basic auth file {path}: {reason}") from None
    user, colon, password = line.partition(":")
    if not user or not colon or not password:
        raise WattprobeError(f"the basic auth file {path} must hold one line USER:PASSWORD")
    return line.encode()


INDEX_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>wattprobe</title></head>
<body><h1>wattprobe {version}</h1><p>Metrics for Prometheus: <a href="{path}">{path}</a></p></body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    server_version = f"wattprobe/{__version__}"
    server_line = f"Server: {server_version} {BaseHTTPRequestHandler.sys_version}"  # version_string()'s
    protocol_version = "HTTP/1.1"  # keep-alive: a scraper reuses its connection
    timeout = None  # set per read from the request's deadline, then WRITE_TIMEOUT_S to answer
    raw_requestline: bytes  # BaseHTTPRequestHandler's: the request line as read
    fields: dict[str, str]  # the request's header fields by lower-case name (the first of each)

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):  # each response goes out in one write: no need to coalesce
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.record = self.server.connection(self.request)
        if isinstance(self.connection, ssl.SSLSocket):  # within the first request's deadline
            self.connection.settimeout(max(self.record.deadline - time.monotonic(), 0.001))
            self.connection.do_handshake()
        self.rfile.close()  # read through the deadline instead
        self.rfile = io.BufferedReader(_RequestReader(self.connection, self.record))

    @property
    def request_version(self) -> str:
        return self._request_version

    @request_version.setter
    def request_version(self, version: str) -> None:
        # HTTP/0.9 (a request line without a version, or too bad to read one from, or that says 0.9) is
        # answered as HTTP/1.0: with a status line and headers, never as a bare body.
        self._request_version = "HTTP/1.0" if version == "HTTP/0.9" else version

    def handle_one_request(self) -> None:
        record = self.record
        if not record.first:  # kept alive: waits for its next request
            record.waiting_since = now = time.monotonic()
            record.deadline = now + IDLE_TIMEOUT_S
            record.started = False
        record.first = False
        # http.server's step, with GET and HEAD answered at once rather than looked up by name.
        try:
            self.raw_requestline = line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            elif not line:
                self.close_connection = True
            elif self.parse_request():
                if self.command in ("GET", "HEAD"):
                    self._respond(send_body=self.command == "GET")
                else:
                    self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
        except TimeoutError as error:  # a read or a write timed out: the connection is dropped
            self.log_error("Request timed out: %r", error)
            self.close_connection = True

    def parse_request(self) -> bool:
        parsed = self._parse_request()
        self.record.waiting_since = None
        self.connection.settimeout(WRITE_TIMEOUT_S)
        return parsed

    def _parse_request(self) -> bool:
        """BaseHTTPRequestHandler.parse_request's rules and answers, with the headers read here line by
        line: its email parser took a third of the HTTP path's CPU at each scrape. `Expect:
        100-continue` gets no interim answer: a GET or HEAD has no body to wait for."""
        self.command = ""
        self.request_version = "HTTP/0.9"  # until the request line says otherwise
        self.close_connection = True
        self.requestline = line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if not words:
            return False
        if len(words) >= 3:
            number = _http_version(words[-1])
            if number is None:
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({words[-1]!r})")
                return False
            if number >= (2, 0):
                self.send_error(
                    HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({words[-1][5:]})"
                )
                return False
            self.close_connection = number < (1, 1)
            self.request_version = words[-1]
        if not 2 <= len(words) <= 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({line!r})")
            return False
        command, path = words[:2]
        if len(words) == 2:
            self.close_connection = True
            if command != "GET":
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad HTTP/0.9 request type ({command!r})")
                return False
        # As http.server does: `//path` would read as a host to a client it is sent back to.
        self.command, self.path = command, "/" + path.lstrip("/") if path.startswith("//") else path
        headers = self._read_headers()
        if headers is None:
            return False
        self.fields = headers
        connection = headers.get("connection", "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        return True

    def _read_headers(self) -> dict[str, str] | None:
        """The request's header fields by lower-case name, as RFC 9112 reads them: the value without the
        spaces around it, a folded line (one that starts with a space or tab) joined to the one before
        with a space, a line that is no field (no name before its colon) skipped, the first of a name
        kept; None, the error answered, past http.client's limits on a line's length and the lines' count."""
        fields: list[list[str]] = []
        for _ in range(_MAX_HEADERS + 1):
            raw = self.rfile.readline(_MAX_LINE + 1)
            if len(raw) > _MAX_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return None
            line = raw.decode("iso-8859-1").rstrip("\r\n")
            if not line:  # the blank line that ends them (or the end of the stream)
                headers: dict[str, str] = {}
                for name, value in fields:
                    headers.setdefault(name.lower(), value)  # the first of a name, as email's get() gives
                return headers
            if line[0] in _OWS:
                if fields:
                    fields[-1][1] = (fields[-1][1] + " " + line.strip(_OWS)).strip(_OWS)
                continue
            name, colon, value = line.partition(":")
            if colon and name and not any(c in name for c in _OWS):
                fields.append([name, value.strip(_OWS)])
        self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
        return None

    def _respond(self, *, send_body: bool) -> None:
        if not self._authorized():
            self._send(
                401, b"401 unauthorized\n", "text/plain; charset=utf-8", send_body,
                [("WWW-Authenticate", 'Basic realm="wattprobe", charset="UTF-8"')],
            )  # fmt: skip
            return
        try:
            target = self.path  # origin-form (`/metrics?x`) read at once, as urlsplit reads it
            path = target.split("?", 1)[0].split("#", 1)[0] if target[:1] == "/" else urlsplit(target).path
        except ValueError:  # e.g. `http://[x/metrics`: a host part that is not one
            self._send(400, b"400 bad request target\n", "text/plain; charset=utf-8", send_body)
            return
        if path == self.server.metrics_path:
            self._metrics(send_body)
        elif path == "/":
            page = INDEX_PAGE.format(version=__version__, path=html.escape(self.server.metrics_path))
            self._send(200, page.encode(), "text/html; charset=utf-8", send_body)
        else:
            self._send(404, b"404 not found\n", "text/plain; charset=utf-8", send_body)

    def _metrics(self, send_body: bool) -> None:
        try:
            body, content_type = self.server.collector.exposition(self.fields.get("accept", ""))
        except Exception as error:  # a bug must not take the agent down: this scrape fails, not the next
            log.error("scrape failed: %r", error, exc_info=log.isEnabledFor(logging.DEBUG))
            self._send(
                500, b"500 scrape failed, see the agent's log\n", "text/plain; charset=utf-8", send_body
            )
            return
        headers = []
        if _accepts_gzip(self.fields.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=5)
            headers.append(("Content-Encoding", "gzip"))
        self._send(200, body, content_type, send_body, headers)

    def _authorized(self) -> bool:
        expected = self.server.credentials
        if expected is None:
            return True
        scheme, _, token = self.fields.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, expected)

    def _send(
        self, status: int, body: bytes, content_type: str, send_body: bool, headers: list | None = None
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(status)
        head = [
            f"{self.protocol_version} {status} {self.responses[status][0]}",
            self.server_line,
            f"Date: {_http_date()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        head += [f"{name}: {value}" for name, value in headers or ()]
        # Head and body in one write: in two, the body waits for the ACK of the head on a kept-alive
        # connection (Nagle's algorithm against the client's delayed ACK: 40 ms and more per scrape).
        self.wfile.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + (body if send_body else b""))

    def log_message(self, format: str, *args: object) -> None:
        if log.isEnabledFor(logging.DEBUG):  # every request comes here: format only what is written
            log.debug("%s %s", self.address_string(), format % args)


class _RequestReader(io.RawIOBase):
    """Reads a connection within its request's deadline: each read waits only for the time left, so a
    client sending a byte at a time cannot stretch it. The first byte of a request kept alive starts its
    REQUEST_DEADLINE_S; the end of its headers ends its wait (it can no longer be closed for room)."""

    def __init__(self, sock: socket.socket, record: _Connection) -> None:
        self.sock = sock
        self.record = record

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        record = self.record
        left = record.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)
        n = self.sock.recv_into(buffer)
        if n:
            if not record.started:
                record.started = True
                record.deadline = min(record.deadline, time.monotonic() + REQUEST_DEADLINE_S)
            data = buffer[:n].tobytes()
            if b"\n\r\n" in data or b"\n\n" in data:  # the headers are in: no longer waiting
                record.waiting_since = None
        return n


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() == "gzip" and params.replace(" ", "") not in ("q=0", "q=0.0"):
            return True
    return False


def _http_version(word: str) -> tuple[int, int] | None:
    """(major, minor) of a request line's `HTTP/x.y`; None for anything else (http.server's rules:
    one dot, digits only, at most 10 of them each)."""
    protocol, _, number = word.partition("/")
    parts = number.split(".")
    if (
        protocol != "HTTP"
        or len(parts) != 2
        or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts)
    ):
        return None
    return int(parts[0]), int(parts[1])


_date: tuple[int, str] = (0, "")  # the Date header of the current second
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date() -> str:
    """Now as an HTTP Date header's value, formatted once a second."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, imf_date(second))
    return _date[1]


def imf_date(second: int) -> str:
    """A Unix time as RFC 9110's IMF-fixdate, in English whatever the locale: email.utils.formatdate's
    text, without its way through datetime, which took 50 µs of CPU at each scrape a second apart (a
    fifth of the HTTP exchange)."""
    t = time.gmtime(second)
    day, month = _DAYS[t.tm_wday], _MONTHS[t.tm_mon - 1]
    return f"{day}, {t.tm_mday:02d} {month} {t.tm_year:04d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
