"""Container names from the container engine: the Docker Engine API on its unix socket (Docker's own,
and Podman's compatible service), asked off the tick for the ids a cgroup path gave.

One request names a batch of new ids: `GET /containers/json?all=1&filters={"id": [...]}` (the list's
`Names`, `Image` and `Labels` are all a Workload needs, and the filter keeps the answer to the ids
asked even on a host with thousands of stopped containers). The API's unversioned paths are used:
every Docker and Podman since the API began serves them.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Collection
from typing import Any

from wattprobe.core.model import Workload
from wattprobe.sources.identity.webapi import ApiError, UnixHTTPConnection, read_bounded

DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
TIMEOUT_S = 5.0
MAX_BYTES = 16 << 20  # a list of the containers asked for: a few KB each
BATCH = 50  # ids per request (a URL of ~4 KB)
MAX_TEXT = 1024  # a name, image, label key or value longer than this is not one (left out)
MAX_LABELS = 256


def default_socket(candidates: Collection[str] = DEFAULT_SOCKETS) -> str | None:
    """The first engine socket that exists, else None (no engine on this host)."""
    return next((path for path in candidates if os.path.exists(path)), None)


class EngineApi:
    """The container engine's API at `socket_path`."""

    def __init__(self, socket_path: str, *, timeout_s: float = TIMEOUT_S, max_bytes: int = MAX_BYTES) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    @property
    def source(self) -> str:
        return f"the container engine at {self.socket_path}"

    def names(self, ids: Collection[str]) -> dict[str, Workload]:
        """The engine's names of the containers `ids`, by id; an id it does not know is left out.
        ApiError, saying why, when it cannot be asked or answers anything else than its list."""
        found: dict[str, Workload] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), BATCH):
            batch = ordered[start : start + BATCH]
            listed = self._get("/containers/json?" + _query(batch))
            wanted = set(batch)
            for container_id, workload in _containers(listed):
                if container_id in wanted:
                    found[container_id] = workload
        return found

    def _get(self, path: str) -> Any:
        deadline = time.monotonic() + self.timeout_s
        connection = UnixHTTPConnection(self.socket_path, self.timeout_s)
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            if response.status in (401, 403):
                raise ApiError(
                    f"refused the request (HTTP {response.status}): give the agent access to its API"
                )
            if response.status != 200:
                raise ApiError(f"answered HTTP {response.status} {response.reason} to {path.split('?')[0]}")
            body = read_bounded(response, self.max_bytes, deadline, "it")
        except FileNotFoundError:
            raise ApiError(
                "no socket there: start the engine's API service, or give --container-socket"
            ) from None
        except PermissionError:
            raise ApiError(
                "no permission to open its socket: run the agent as root or in its group"
            ) from None
        except ConnectionRefusedError:
            raise ApiError("refused the connection: is its API service running?") from None
        except TimeoutError:
            raise ApiError(f"did not answer within {self.timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as error:
            raise ApiError(f"cannot be asked: {error.__class__.__name__}: {error}") from None
        finally:
            connection.close()
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError("answered something that is not JSON") from None


def _query(ids: list[str]) -> str:
    return urllib.parse.urlencode({"all": "1", "filters": json.dumps({"id": ids})})


def _containers(listed: Any) -> list[tuple[str, Workload]]:
    """The (id, names) of each container of a `GET /containers/json` answer; ApiError if it is not one."""
    if not isinstance(listed, list):
        raise ApiError("answered something that is not a list of containers")
    named = []
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("Id"), str):
            raise ApiError("answered a list of containers without their ids")
        names = entry.get("Names")
        name = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
        named.append(
            (
                entry["Id"],
                Workload(
                    name=_text(name.removeprefix("/") if name else None),
                    image=_text(entry.get("Image")),
                    labels=_labels(entry.get("Labels")),
                ),
            )
        )
    return named


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    kept = sorted((k, v) for k, v in value.items() if _text(k) and isinstance(v, str) and len(v) <= MAX_TEXT)
    return tuple(kept[:MAX_LABELS])
