"""Pod names from the Kubernetes API: the pods of this node, listed then watched, off the tick.

Two endpoints are used, `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE` (paged with `limit` and
`continue`) and the same with `watch=1&resourceVersion=RV` (one JSON event a line), so they are
spoken with the standard library's HTTPS and TLS verification rather than the `kubernetes` client
(some 30 MB of dependencies for two GETs). A pod is found by its uid (the cgroup path's pod<uid>;
a static pod's cgroup carries its config hash, which its mirror pod's `kubernetes.io/config.mirror`
annotation gives) and each of its containers by the id in `status.containerStatuses[].containerID`.

The token is read from its file at each request (service account tokens are rotated), sent only to
the API server over verified TLS, and never logged.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wattprobe.errors import UsageError
from wattprobe.sources.identity.webapi import ApiError, outage, read_bounded

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_FILE = f"{SERVICE_ACCOUNT}/token"
CA_FILE = f"{SERVICE_ACCOUNT}/ca.crt"
MIRROR = "kubernetes.io/config.mirror"
TIMEOUT_S = 10.0  # a list request, whole
WATCH_S = 300  # the server ends a watch after this; the client gives it 30 s more
MAX_BYTES = 64 << 20  # a whole PodList, every page
PAGE = 100  # pods a page: a page is parsed at once (holding the GIL), so pages are kept small
MAX_LINE = 4 << 20  # one watch event
RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # between attempts while the API does not answer
DELETED_KEEP_S = 300.0  # a deleted pod is still named this long: its last windows are named too
LATER = "pods are shown by their uids until it answers"


class Gone(ApiError):
    """The resourceVersion a watch started from is too old (HTTP 410): list again."""


@dataclass(frozen=True, slots=True)
class Pod:
    uid: str
    name: str
    namespace: str
    containers: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> name, image
    mirror_of: str | None = None  # a mirror pod: the static pod's uid, as its cgroup names it
    resource_version: str = ""


def api_url(given: str | None, environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The API server to ask: `given`, else the in-cluster service from the environment, else None."""
    if given:
        parsed = urllib.parse.urlsplit(given)
        if parsed.scheme != "https" or not parsed.hostname:
            raise UsageError(f"--kubernetes-api {given!r}: expected https://HOST[:PORT] (TLS is verified)")
        return given.rstrip("/")
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port or 443}"


def read_token(path: str) -> str | None:
    """The bearer token in `path` (None when unreadable or empty)."""
    try:
        with open(path) as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class KubeApi:
    """The pods of `node` from the API server at `url`, with the token in `token_file`, TLS verified
    against `ca_file` (else the system's CAs)."""

    def __init__(
        self,
        url: str,
        node: str,
        token_file: str = TOKEN_FILE,
        ca_file: str | None = None,
        *,
        timeout_s: float = TIMEOUT_S,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self.node = node
        self.host = parsed.hostname or ""
        self.port = parsed.port or 443
        self.prefix = parsed.path.rstrip("/")
        self.token_file = token_file
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._watching: http.client.HTTPSConnection | None = None

    @property
    def source(self) -> str:
        return f"the Kubernetes API at {self.url}"

    def list(self) -> tuple[str, list[Pod]]:
        """The pods of the node and the resourceVersion to watch from; ApiError saying why."""
        pods: list[Pod] = []
        deadline = time.monotonic() + self.timeout_s
        budget = self.max_bytes
        query: dict[str, str] = {"fieldSelector": f"spec.nodeName={self.node}", "limit": str(PAGE)}
        while True:
            connection, response = self._get(self._path(query), self.timeout_s)
            try:
                body = read_bounded(response, budget, deadline, "its PodList")
            finally:
                connection.close()
            budget -= len(body)
            page = _json(body, "a PodList")
            if (
                not isinstance(page, dict)
                or page.get("kind") != "PodList"
                or not isinstance(page.get("items"), list)
            ):
                raise ApiError("answered something that is not a PodList")
            pods.extend(p for p in map(parse_pod, page["items"]) if p is not None)
            meta: dict[str, Any] = page["metadata"] if isinstance(page.get("metadata"), dict) else {}
            more = meta.get("continue")
            if not isinstance(more, str) or not more:
                version = meta.get("resourceVersion")
                return (version if isinstance(version, str) else ""), pods
            query["continue"] = more

    def watch(self, version: str) -> Iterator[tuple[str, Pod | str]]:
        """The events since `version`: ("ADDED" | "MODIFIED" | "DELETED", pod) and ("BOOKMARK",
        version), until the server ends the watch. Gone when `version` is too old; ApiError why."""
        query = {
            "fieldSelector": f"spec.nodeName={self.node}",
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_S),
        }
        connection, response = self._get(self._path(query), WATCH_S + 30)
        self._watching = connection
        try:
            while True:
                line = response.readline(MAX_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_LINE:
                    raise ApiError(f"sent a watch event longer than {MAX_LINE >> 20} MB")
                if line.strip():
                    yield _event(_json(line, "a watch event"))
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise ApiError(f"ended its watch: {error.__class__.__name__}: {error}") from None
        finally:
            self._watching = None
            connection.close()

    def interrupt(self) -> None:
        """End a watch waiting in another thread (at close)."""
        connection = self._watching
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # the plain socket's shutdown, not TLS's close_notify
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)

    def _path(self, query: dict[str, str]) -> str:
        return f"{self.prefix}/api/v1/pods?{urllib.parse.urlencode(query)}"

    def _get(
        self, path: str, timeout_s: float
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        token = read_token(self.token_file)
        if token is None:
            raise ApiError(f"no token in {self.token_file}: give --kubernetes-token-file")
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ApiError(f"cannot read the CA file {self.ca_file}: {_reason(error)}") from None
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout_s, context=context)
        try:
            connection.request(
                "GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
            )
            response = connection.getresponse()
        except ssl.SSLCertVerificationError as error:
            connection.close()
            raise ApiError(
                f"its certificate is not trusted ({error.verify_message}): give its CA with --kubernetes-ca-file"
            ) from None
        except ConnectionRefusedError:
            connection.close()
            raise ApiError("refused the connection") from None
        except TimeoutError:
            connection.close()
            raise ApiError(f"did not answer within {timeout_s:g} s") from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise ApiError(f"cannot be asked: {_reason(error)}") from None
        if response.status == 200:
            return connection, response
        connection.close()
        if response.status == 401:
            raise ApiError("refused the token (HTTP 401): check --kubernetes-token-file")
        if response.status == 403:
            raise ApiError(
                "forbids listing pods (HTTP 403): give the agent's service account get, list and watch on pods"
            )
        if response.status == 410:
            raise Gone("HTTP 410")
        raise ApiError(f"answered HTTP {response.status} {response.reason}")


def parse_pod(item: Any) -> Pod | None:
    """A pod of a PodList or a watch event (None: not a pod's shape)."""
    if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict):
        return None
    meta = item["metadata"]
    uid, name, namespace = meta.get("uid"), meta.get("name"), meta.get("namespace")
    if not (isinstance(uid, str) and isinstance(name, str) and isinstance(namespace, str)):
        return None
    annotations = meta.get("annotations")
    mirror = annotations.get(MIRROR) if isinstance(annotations, dict) else None
    containers: dict[str, tuple[str, str | None]] = {}
    status = item.get("status")
    if isinstance(status, dict):
        for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
            statuses = status.get(key)
            for entry in statuses if isinstance(statuses, list) else ():
                if not isinstance(entry, dict):
                    continue
                cid, cname, image = entry.get("containerID"), entry.get("name"), entry.get("image")
                if isinstance(cid, str) and cid and isinstance(cname, str):
                    # containerd://ID, cri-o://ID, docker://ID
                    containers[cid.rpartition("://")[2]] = (cname, image if isinstance(image, str) else None)
    version = meta.get("resourceVersion")
    return Pod(
        uid,
        name,
        namespace,
        containers,
        mirror if isinstance(mirror, str) else None,
        version if isinstance(version, str) else "",
    )


def _event(event: Any) -> tuple[str, Pod | str]:
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise ApiError("sent a watch event that is not one")
    kind, obj = event.get("type"), event["object"]
    if kind == "ERROR":  # a Status: 410 when the version is too old
        if obj.get("code") == 410:
            raise Gone("watch expired")
        raise ApiError(f"ended its watch with an error ({obj.get('code')}: {str(obj.get('reason'))[:80]})")
    if kind == "BOOKMARK":
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, dict) else None
        return "BOOKMARK", version if isinstance(version, str) else ""
    pod = parse_pod(obj)
    if kind not in ("ADDED", "MODIFIED", "DELETED") or pod is None:
        raise ApiError("sent a watch event that is not one")
    return kind, pod


def _json(body: bytes, what: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(f"answered something that is not {what}") from None


def _reason(error: BaseException) -> str:
    return (
        getattr(error, "strerror", None)
        or getattr(error, "reason", None)
        or str(error)
        or type(error).__name__
    )


def _newer(version: str, than: str) -> bool:
    """Whether resourceVersion `version` is at least `than` (opaque in principle; numbers in practice)."""
    try:
        return int(version) >= int(than)
    except ValueError:
        return True


class PodIndex:
    """The pods of the node by uid (a mirror pod also by its static pod's uid) and by container id;
    read and written from several threads (its lock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._pods: dict[str, Pod] = {}
        self._deleted: dict[str, float] = {}  # uid -> when it was deleted
        self._by_uid: dict[str, Pod] = {}
        self._by_container: dict[str, Pod] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def pod(self, uid: str | None, container_id: str) -> tuple[Pod | None, str | None, str | None]:
        """The pod of a container (by its id, else by its pod uid), its name and image in the pod."""
        with self._lock:
            pod = self._by_container.get(container_id) or (self._by_uid.get(uid) if uid else None)
        if pod is None:
            return None, None, None
        name, image = pod.containers.get(container_id, (None, None))
        return pod, name, image

    def knows(self, uid: str) -> bool:
        with self._lock:
            return uid in self._by_uid

    def replace(self, pods: Iterable[Pod]) -> None:
        """A whole list: pods not in it are deleted (still named a while)."""
        listed = {p.uid: p for p in pods}
        with self._lock:
            now = self._clock()
            for uid in self._pods.keys() - listed.keys():
                self._deleted.setdefault(uid, now)
            self._pods.update(listed)
            for uid in listed:
                self._deleted.pop(uid, None)
            self._reindex(now)

    def merge(self, pods: Iterable[Pod]) -> None:
        """Pods listed while a watch runs: added or updated, unless the watch gave a newer version."""
        with self._lock:
            for pod in pods:
                known = self._pods.get(pod.uid)
                if known is None or _newer(pod.resource_version, known.resource_version):
                    self._pods[pod.uid] = pod
            self._reindex(self._clock())

    def apply(self, kind: str, pod: Pod) -> None:
        with self._lock:
            now = self._clock()
            self._pods[pod.uid] = pod
            if kind == "DELETED":
                self._deleted.setdefault(pod.uid, now)
            else:
                self._deleted.pop(pod.uid, None)
            self._reindex(now)

    def _reindex(self, now: float) -> None:
        for uid, when in list(self._deleted.items()):
            if now - when > DELETED_KEEP_S:
                del self._deleted[uid]
                self._pods.pop(uid, None)
        by_uid: dict[str, Pod] = {}
        by_container: dict[str, Pod] = {}
        for pod in self._pods.values():
            by_uid[pod.uid] = pod
            if pod.mirror_of:
                by_uid.setdefault(pod.mirror_of, pod)
            for cid in pod.containers:
                by_container[cid] = pod
        self._by_uid, self._by_container = by_uid, by_container


class PodWatcher:
    """Keeps a PodIndex of the node's pods: lists, then watches (a thread), lists again when the
    watch expires or fails (with a backoff); `relist()` lists at once (for a pod uid not yet known).
    `changed` is called after each change, from the thread that made it."""

    def __init__(
        self, api: KubeApi, changed: Callable[[], None], *, retry_s: tuple[float, ...] = RETRY_S
    ) -> None:
        self.api = api
        self.index = PodIndex()
        self.outage = outage(api.source)
        self._changed = changed
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wattprobe-pods", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def relist(self) -> bool:
        """List now and merge what comes (the watch stays the authority on deletions); False if it failed."""
        try:
            _, pods = self.api.list()
        except ApiError as error:
            self.outage.failed(str(error), meanwhile=LATER)
            return False
        self.outage.recovered()
        self.index.merge(pods)
        self._changed()
        return True

    def close(self) -> None:
        self._stop.set()
        self.api.interrupt()
        if self._thread.ident is not None:  # started (with the first container)
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version, pods = self.api.list()
                self.index.replace(pods)
                self.outage.recovered()
                failures = 0
                self._changed()
                if self._watch(version):
                    return  # closed
                failures = 0  # a watch ended without an event: list again, not at full speed
            except Gone:
                continue
            except ApiError as error:
                if self._stop.is_set():
                    return
                self.outage.failed(str(error), meanwhile=LATER)
            except Exception as error:  # a thread that dies would name nothing more
                self.outage.failed(f"{type(error).__name__}: {error}", meanwhile=LATER)
            self._stop.wait(self._retry_s[min(failures, len(self._retry_s) - 1)])
            failures += 1

    def _watch(self, version: str) -> bool:
        """Apply the events of watches from `version` on; False when one ended without an event."""
        while not self._stop.is_set():
            ended = True
            for kind, what in self.api.watch(version):
                ended = False
                if isinstance(what, str):
                    version = what or version
                    continue
                self.index.apply(kind, what)
                version = what.resource_version or version
                self._changed()
            if ended:
                return False
        return True
