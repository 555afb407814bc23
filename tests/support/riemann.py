"""A Riemann server on loopback that decodes with protoc's own code, for the tests of every output
that sends to Riemann."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
import struct
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.support.paths import REPO

PROTO = REPO / "wattprobe" / "sinks" / "riemann" / "riemann.proto"


def compile_pb2(out: Path) -> ModuleType:
    """riemann.proto compiled by protoc into `out`: the server's decoder, independent of wattprobe's."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    assert protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}", str(PROTO)]) == 0
    spec = importlib.util.spec_from_file_location("riemann_pb2", out / "riemann_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RiemannServer:
    """A Riemann TCP (or TLS) server: reads length-framed Msgs, keeps their events, answers ok."""

    def __init__(self, pb2: ModuleType, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.pb2, self.tls = pb2, tls
        self.events: list = []
        self.peer_certs: list[Any] = []  # each peer certificate, as getpeercert() gives it
        self.changed = threading.Condition()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.peer_certs.append(conn.getpeercert())
            self.connections.append(conn)
            while True:
                header = self._read(conn, 4)
                msg = self.pb2.Msg.FromString(self._read(conn, struct.unpack(">I", header)[0]))
                with self.changed:
                    self.events += msg.events
                    self.changed.notify_all()
                reply = self.pb2.Msg(ok=True).SerializeToString()
                conn.sendall(struct.pack(">I", len(reply)) + reply)
        except (OSError, EOFError):
            conn.close()

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def wait_for(self, service_prefix: str, count: int = 1, timeout: float = 10.0) -> list:
        def matching() -> list:
            return [e for e in self.events if e.service.startswith(service_prefix)]

        with self.changed:
            self.changed.wait_for(lambda: len(matching()) >= count, timeout)
            return matching()

    def stop(self) -> None:
        """Go away: stop listening and drop every connection (shutdown wakes the blocked threads)."""
        for sock in (self.listener, *self.connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
