"""`wattprobe riemann`: send host, socket, domain and process power to a Riemann server.

Riemann's protocol over TCP (optionally mutual TLS): one protobuf Msg per dispatch holding every
event, framed by a 4-byte big-endian length; the server's answer is read and its `ok` checked.
A server that goes away is reconnected with a growing delay (1 s doubling to 60 s) while the agent
keeps measuring; events of a dispatch that could not be sent are dropped (Riemann is a live stream
and every event carries a TTL).
"""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
import struct
import time
from typing import TYPE_CHECKING

from wattprobe.errors import UsageError, WattprobeError
from wattprobe.options import port, positive
from wattprobe.sinks.points import Point, frame_points

if TYPE_CHECKING:
    from google.protobuf.message import Message

NAME = "riemann"
HELP = "send power to a Riemann server"

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 10.0
BACKOFF_S = (1.0, 60.0)  # first and longest wait before reconnecting
MAX_REPLY = 64 << 20
TAGS = ("scaphandre", "wattprobe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-a",
        "--address",
        default="localhost",
        help="Riemann server's name or IP address; with --mtls, the name its certificate carries "
        "(default localhost)",
    )
    parser.add_argument("-p", "--port", type=port, default=5555, help="Riemann TCP port (default 5555)")
    parser.add_argument(
        "-d",
        "--dispatch",
        "--dispatch-interval",
        dest="dispatch",
        type=positive,
        default=5,
        help="seconds between dispatches (default 5)",
    )
    parser.add_argument(
        "-q", "--qemu", action="store_true", help="add a vmname attribute to QEMU/KVM guest processes"
    )
    parser.add_argument(
        "--mtls", action="store_true", help="connect with mutual TLS (needs --ca --cert --key)"
    )
    parser.add_argument("--ca", metavar="FILE", help="CA certificate (PEM) that signed the server's")
    parser.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="client private key (PEM)")


def run(args: argparse.Namespace) -> int:
    from wattprobe.core.sampler import open_sampler

    tls = tls_context(args)
    client = RiemannClient(args.address, args.port, tls)
    hostname = socket.gethostname()
    ttl = max(60.0, 3 * args.dispatch)
    sampler = open_sampler(args)
    try:
        for frame in sampler.frames(args.dispatch):
            events = [event(p, hostname, frame.timestamp, ttl) for p in frame_points(frame, qemu=args.qemu)]
            client.send(events)
    finally:
        client.close()
        sampler.close()
    return 0


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client's TLS context for --mtls; None for plain TCP."""
    given = [f"--{name}" for name in ("ca", "cert", "key") if getattr(args, name)]
    if not args.mtls:
        if given:
            raise UsageError(f"{' '.join(given)} only make sense with --mtls")
        return None
    missing = [f"--{name}" for name in ("ca", "cert", "key") if not getattr(args, name)]
    if missing:
        raise UsageError(f"--mtls needs {' '.join(missing)}")
    try:
        context = ssl.create_default_context(cafile=args.ca)
    except (OSError, ssl.SSLError) as error:
        raise WattprobeError(f"cannot load the CA certificate {args.ca}: {_why(error)}; check --ca") from None
    try:
        context.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as error:
        raise WattprobeError(
            f"cannot load the client certificate {args.cert} with key {args.key}: {_why(error)}; "
            "check --cert and --key (PEM files, the key matching the certificate)"
        ) from None
    return context


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)


def event(point: Point, host: str, timestamp: float, ttl: float) -> Message:
    """One Riemann Event; a process's service carries its pid and exe, as Scaphandre names them."""
    from wattprobe.sinks.riemann_proto import Attribute, Event

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
    """One connection to a Riemann server, reopened after a failure once the backoff delay passed."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.tls = host, port, tls
        self._sock: socket.socket | None = None
        self._delay = 0.0  # wait before the next connection attempt; 0 while healthy
        self._retry_at = 0.0

    def send(self, events: list[Message]) -> bool:
        """Send one Msg with all events and check the server's answer; False when it did not take them.

        A connection that was healthy but broke since (the server restarted) is reopened at once, once.
        """
        from google.protobuf.message import DecodeError

        from wattprobe.sinks.riemann_proto import Msg

        if self._sock is None and time.monotonic() < self._retry_at:
            return False
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
                    self._failed(error)
                    return False
        if self._delay:
            log.warning("riemann: connected to %s:%d again", self.host, self.port)
        self._delay = 0.0
        if not reply.ok:
            log.warning(
                "riemann: the server refused %d events: %s", len(events), reply.error or "no reason given"
            )
            return False
        return True

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=IO_TIMEOUT_S)
        if self.tls is None:
            return sock
        try:
            return self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def _failed(self, error: Exception) -> None:
        self.close()
        self._delay = min(max(self._delay * 2, BACKOFF_S[0]), BACKOFF_S[1])
        self._retry_at = time.monotonic() + self._delay
        log.warning(
            "riemann: cannot send to %s:%d: %s; retrying in %.0f s",
            self.host,
            self.port,
            _why(error) if isinstance(error, OSError) else f"bad reply ({error})",
            self._delay,
        )

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
