"""The container and pod a process runs in, from the cgroup path /proc/PID/cgroup gives."""

from __future__ import annotations

import re

from wattprobe.core.model import Container
from wattprobe.sources.cgroupfs import cgroup_paths

# Controllers whose path names the process's cgroup, in order of preference (v2 unified first).
_CGROUP_PREFERENCE = ("", "cpu", "cpuacct", "name=systemd")
_CONTAINER_ID = re.compile(
    r"(?:^|/)(?:(docker|cri-containerd|crio|libpod|nerdctl)-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)"
)
_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RUNTIME_BY_PREFIX = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
    "nerdctl": "containerd",
}


def parse_cgroup(text: str) -> tuple[str, Container | None]:
    """The cgroup path of a process and the container it runs in, from /proc/<pid>/cgroup.

    Works for cgroup v1 (`N:controllers:/path`), v2 (`0::/path`) and hybrids; recognises docker,
    containerd (CRI and nerdctl), CRI-O and podman ids, with the cgroupfs or the systemd driver,
    under Kubernetes (kubepods, k3s) or not.
    """
    paths = cgroup_paths(text)
    cgroup = next((paths[c] for c in _CGROUP_PREFERENCE if paths.get(c, "/") != "/"), None)
    if cgroup is None:
        cgroup = next((p for p in paths.values() if p != "/"), "/")
    for path in (cgroup, *paths.values()):
        container = _container(path)
        if container is not None:
            return cgroup, container
    return cgroup, None


def _container(path: str) -> Container | None:
    match = _CONTAINER_ID.search(path)
    if match is None:
        return None
    prefix, container_id = match.groups()
    runtime = _RUNTIME_BY_PREFIX.get(prefix or "")
    if runtime is None and ("/docker/" in path or path.startswith("/docker")):
        runtime = "docker"
    elif runtime is None and "libpod_parent" in path:
        runtime = "podman"
    pod = _POD_UID.search(path)
    if "kubepods" in path:
        scheduler = "kubernetes"
    else:
        scheduler = {"podman": "podman", "containerd": "containerd", "cri-o": "cri-o"}.get(
            runtime or "", "docker"
        )
    return Container(container_id, runtime, scheduler, pod.group(1).replace("_", "-") if pod else None)
