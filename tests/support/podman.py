"""A real Podman for tests: a busybox image imported from a rootfs made of Debian's busybox-static,
containers run with runc (this kind of machine's hybrid cgroups refuse crun) and low ulimits, and
the Docker-compatible API served on a socket of the test's (`podman system service`).
`podman_unavailable()` says why containers cannot run here, for a skip."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.waiting import wait_for

IMAGE = "localhost/wattprobe-test-busybox"
BUSYBOX = "/bin/busybox"  # busybox-static's: runs in an image with nothing else
APPLETS = ("sh", "sleep", "cat", "true", "yes")
RUN = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


def _podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@functools.cache
def podman_unavailable() -> str | None:
    """Why no container can run here (None: they can), in a few words."""
    if os.geteuid() != 0:
        return "containers need root here (no rootless Podman set up)"
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test.sh installs podman runc busybox-static)"
    if not os.path.exists(BUSYBOX):
        return f"no {BUSYBOX} (scripts/test.sh installs busybox-static)"
    try:
        import_image()
        ran = _podman("run", "--rm", *RUN, IMAGE, "true", timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        return f"podman cannot run here: {error}"
    if ran.returncode != 0:
        return f"podman cannot run a container here: {(ran.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def import_image() -> None:
    """The busybox image, imported once from a rootfs: /bin/busybox and its applets' links."""
    if _podman("image", "exists", IMAGE).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(BUSYBOX, root / "bin" / "busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["podman", "import", "-", IMAGE], stdin=tar.stdout, capture_output=True, text=True, timeout=120
        )
        tar.wait()
        if imported.returncode != 0:
            raise OSError(f"podman import failed: {imported.stderr.strip()}")


class Podman:
    """Podman's API served on `directory`/podman.sock for the block; `run()` starts containers, which
    are removed at its end."""

    def __init__(self, directory: Path) -> None:
        self.socket = directory / "podman.sock"
        self.names: list[str] = []
        self.service: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Podman:
        import_image()
        self.service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.socket.exists, 30, "podman's API socket", alive=self.service)
        return self

    def run(self, name: str, *command: str, labels: dict[str, str] | None = None) -> str:
        """Start `command` in a new container `name`; its full id."""
        flags = [f"--label={k}={v}" for k, v in (labels or {}).items()]
        started = _podman("run", "-d", "--name", name, *flags, *RUN, IMAGE, *command)
        if started.returncode != 0:
            raise OSError(f"podman run failed: {started.stderr.strip()}")
        self.names.append(name)
        return started.stdout.strip().splitlines()[-1]

    def __exit__(self, *exc: object) -> None:
        if self.names:
            _podman("rm", "-f", "-t", "0", *self.names)
        if self.service is not None:
            self.service.terminate()
            try:
                self.service.wait(10)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait()
