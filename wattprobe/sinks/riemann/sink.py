"""`wattprobe riemann`: send host, socket, domain and process power to a Riemann server.

Riemann's protocol over TCP (optionally mutual TLS): one protobuf Msg per dispatch holding every
event, framed by a 4-byte big-endian length; the server's answer is read and its `ok` checked.
A remote sink: sending leaves the tick (`wattprobe.pipeline.delivery`), a server that goes away is
reconnected with a growing delay (1 s doubling to 60 s) while the agent keeps measuring, and only the
latest dispatch waits to be sent (Riemann is a live stream and every event carries a TTL).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wattprobe.config.settings import option
from wattprobe.config.values import port
from wattprobe.core.model import Frame
from wattprobe.errors import UsageError, WattprobeError
from wattprobe.sinks import Context, Rejected, Remote, RemoteSink, Retry, Sink
from wattprobe.sinks.kit import options, points
from wattprobe.sinks.kit.net import netloc
from wattprobe.sinks.kit.points import Point, frame_points
from wattprobe.sinks.kit.workloads import Ledger

if TYPE_CHECKING:
    from google.protobuf.message import Message

NAME = "riemann"
HELP = "send power to a Riemann server"

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 10.0
MAX_REPLY = 64 << 20
TAGS = ("scaphandre", "wattprobe")


@dataclass(frozen=True)
class Cadence(options.Cadence):
    step: float | None = options.step(5.0, "-d", "--dispatch", "--dispatch-interval", what="dispatches")


@dataclass(frozen=True)
class Settings:
    address: str = option(
        "localhost",
        "-a",
        "--address",
        help="Riemann server's name or IP address; with --mtls, the name its certificate carries "
        "(default localhost)",
    )
    port: int = option(5555, "-p", "--port", parse=port, help="Riemann TCP port (default 5555)")
    qemu: bool = options.qemu("add a vmname attribute to QEMU/KVM guest processes")
    mtls: bool = option(False, help="connect with mutual TLS (needs --ca --cert --key)")
    ca: str | None = option(None, metavar="FILE", help="CA certificate (PEM) that signed the server's")
    cert: str | None = option(None, metavar="FILE", help="client certificate (PEM)")
    key: str | None = option(None, metavar="FILE", help="client private key (PEM)")

    def __post_init__(self) -> None:
        files = {"--ca": self.ca, "--cert": self.cert, "--key": self.key}
        if not self.mtls and any(files.values()):
            raise UsageError(f"{' '.join(k for k, v in files.items() if v)} only make sense with --mtls")
        missing = [k for k, v in files.items() if not v]
        if self.mtls and missing:
            raise UsageError(f"--mtls needs {' '.join(missing)}")


host_facts = points.host_facts  # read by sinks.writes_host_facts


def create(settings: Settings, context: Context) -> Sink:
    return RiemannSink(settings, context.hostname)


class RiemannSink(RemoteSink[list["Message"]]):
    """Builds each dispatch's events on the tick; the latest dispatch is sent off the tick. Events of a
    dispatch that could not be sent are dropped when a newer one comes: Riemann is a live stream."""

    name = NAME

    def __init__(self, settings: Settings, hostname: str) -> None:
        self.settings = settings
        self.hostname = hostname
        self.ledger = Ledger()  # the workloads' energy counters
        self.client = RiemannClient(settings.address, settings.port, tls_context(settings))
        self.remote = Remote(f"riemann {self.client.where}", capacity=1)  # a live stream: the latest only

    def render(self, frame: Frame) -> list[list[Message]]:
        ttl = max(60.0, 3 * (frame.window_s or 0.0))
        points = frame_points(frame, qemu=self.settings.qemu, ledger=self.ledger)
        return [[event(p, self.hostname, frame.timestamp, ttl) for p in points]]

    def send(self, dispatches: list[list[Message]]) -> None:
        self.client.send(dispatches[-1])

    def close(self) -> None:
        self.client.close()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The client's TLS context for --mtls; None for plain TCP."""
    if not settings.mtls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.ca)
    except (OSError, ssl.SSLError) as error:
        raise WattprobeError(
            f"cannot load the CA certificate {settings.ca}: {_why(error)}; check --ca"
        ) from None
    try:
        context.load_cert_chain(settings.cert or "", settings.key)
    except (OSError, ssl.SSLError) as error:
        raise WattprobeError(
            f"cannot load the client certificate {settings.cert} with key {settings.key}: {_why(error)}; "
            "check --cert and --key (PEM files, the key matching the certificate)"
        ) from None
    return context


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)


def event(point: Point, host: str, timestamp: float, ttl: float) -> Message:
    """One Riemann Event; a process's service carries its pid and exe, as Scaphandre names them."""
    from wattprobe.sinks.riemann.proto import Attribute, Event

    labels = dict(point.labels)
    service = point.name
    if "pid" in labels:
        service = f"{point.name}_{labels['pid']}_{labels['exe']}"
    out = Event(
        time=int(timestamp),
        time_micros=int(timestamp * 1e6),
        state="ok",
        service=service,
        host=host,
        description=point.description,
        tags=TAGS,
        ttl=ttl,
        attributes=[Attribute(key=k, value=v) for k, v in point.labels],
    )
    if isinstance(point.value, int):
        out.metric_sint64 = point.value
    else:
        out.metric_d = point.value
    return out


class RiemannClient:
    """One connection to a Riemann server, opened when needed and closed after a failure."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.where = netloc(host, port)
        self._sock: socket.socket | None = None

    def send(self, events: list[Message]) -> None:
        """Send one Msg with all events and check the server's answer: Retry when it could not be
        sent, Rejected when the server refused it. A connection that broke since the last send (the
        server restarted) is reopened at once, once."""
        from google.protobuf.message import DecodeError

        from wattprobe.sinks.riemann.proto import Msg

        payload = Msg(events=events).SerializeToString()
        while True:
            fresh = self._sock is None
            try:
                if self._sock is None:
                    self._sock = self._connect()
                _write_frame(self._sock, payload)
                reply = Msg.FromString(_read_frame(self._sock))
                break
            except (OSError, ValueError, DecodeError) as error:  # ssl.SSLError is an OSError
                self.close()
                if fresh:
                    raise Retry(
                        _why(error) if isinstance(error, OSError) else f"bad reply ({error})"
                    ) from None
        if not reply.ok:
            raise Rejected(f"the server refused {len(events)} events: {reply.error or 'no reason given'}")

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=IO_TIMEOUT_S)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _write_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def _read_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">I", _read_exactly(sock, 4))
    if size > MAX_REPLY:
        raise ValueError(f"a {size}-byte reply")
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return data
