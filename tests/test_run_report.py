"""`wattprobe run --report`: one self-contained HTML file, rendered in a real headless browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.run import REPO, WATTS, vm_tree, wattprobe_run
from wattprobe.commandenergy.report import COMMAND_COLOR, HOST_COLOR

BURN = "import time\nend = time.process_time() + 1.0\nwhile time.process_time() < end: pass"
# Flags that let Debian's chromium run headless as root in a sandbox, with no network of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def browse(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [chromium() or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def report(tmp_path) -> Path:
    page = tmp_path / "report.html"
    with vm_tree(tmp_path / "vm-tree") as tree:
        result = wattprobe_run(
            tree.root, "-s", "0.25", "--report", str(page), "--", sys.executable, "-c", BURN
        )
    assert result.returncode == 0, result.stderr
    return page


def test_the_report_is_one_file_that_fetches_nothing(report):
    text = report.read_text()
    assert "<svg" in text and "Content-Security-Policy" in text and "default-src 'none'" in text
    # Nothing to load at view time: no script, stylesheet, image or font from elsewhere.
    assert not re.search(r"<script|<link|<img|<iframe|\bsrc=|url\((?!#)|@import", text)
    assert len(text) < 200_000
    for needle in ("energy", "duration", "carbon", "481 g/kWh", "powercap_rapl", "Top processes"):
        assert needle in text
    assert "estimated" not in text  # a measuring sensor: nothing is marked


def test_an_estimated_run_is_marked_in_the_report(tmp_path):
    page = tmp_path / "estimated.html"
    result = subprocess.run(
        [sys.executable, "-m", "wattprobe", "-s", "estimate", "run", "--report", str(page), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    assert "Every figure here is <strong>estimated</strong>" in text
    assert "(estimated)" in text.split('<table id="summary">')[1].split("</tr>")[0]  # the energy row
    assert "command (estimated)" in text and "host (estimated)" in text  # the chart's legend
    assert "(estimated)" in result.stderr  # and the summary


@pytest.mark.skipif(
    chromium() is None, reason="Debian's chromium is not installed (scripts/test.sh installs it)"
)
def test_the_chart_renders_in_a_real_browser(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    result = browse(report, tmp_path, "--window-size=1200,1400", f"--screenshot={shot}")
    assert shot.exists(), result.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1400)

    def pixels(picture: Image.Image) -> list[tuple[int, ...]]:
        data = picture.tobytes()
        return [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]

    def near(color: str) -> int:
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        return sum(
            1 for pr, pg, pb in pixels(image) if abs(pr - r) <= 12 and abs(pg - g) <= 12 and abs(pb - b) <= 12
        )

    # Both series are drawn: the command's line (and its legend), and the host's above it.
    assert near(COMMAND_COLOR) > 500, near(COMMAND_COLOR)
    assert near(HOST_COLOR) > 500, near(HOST_COLOR)
    # The chart sits below the summary and fills its width: its pixels are not background.
    box = image.crop((100, 350, 1100, 800))
    assert len(set(pixels(box))) > 20  # lines, fill, grid, text: many colours

    dom = browse(report, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    svg = dom.stdout.split('<figure id="chart">')[1].split("</figure>")[0]
    assert svg.count("<path") >= 10 and "<text" in svg


def test_the_host_line_sits_at_the_tree_power(report):
    """The chart's data are the figures: the host's 40 W, drawn as a step per window."""
    text = report.read_text()
    assert f"{WATTS:.1f} W average" in text
    assert os.path.getsize(report) > 5_000
