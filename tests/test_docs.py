"""The documentation: the generated reference matches the options, the site builds strictly, and
README's links and the docs' option tables point at things that exist."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wattprobe import cli, docs_reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
UPDATE = "run `python -m wattprobe.docs_reference` from the repository root to update it"


@pytest.mark.parametrize("page", sorted(docs_reference.pages()))
def test_generated_reference_is_up_to_date(page: str) -> None:
    committed = (DOCS / page).read_text(encoding="utf-8") if (DOCS / page).exists() else ""
    assert committed == docs_reference.pages()[page], f"docs/{page} is not what the options say: {UPDATE}"


def test_cli_reference_lists_every_command_and_flag() -> None:
    page = docs_reference.cli_page()
    for name, command in _commands().items():
        assert f"### `wattprobe {name}`" in page, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in page, f"{name} {flag}"
    # Defaults and help come from the declarations, escaped so that they read as written.
    assert "| `-p`, `--port PORT` | `9091` | Pushgateway port (default 9091) |" in page
    assert "metric names: native (wattprobe\\_\\*, base units)" in page
    assert "answer &lt;Z&gt; to commands" in page


def test_config_reference_lists_every_output_and_key() -> None:
    page = docs_reference.config_page()
    assert "| `step` | number | `2` | seconds between measurements |" in page
    assert '| `output_root` | string | `"/var/lib/libvirt/scaphandre"` |' in page
    assert '| `naming` | one of `"native"`, `"scaphandre"`, `"kepler"` | `"native"` |' in page
    for table in ("[outputs.stdout]", "[outputs.qemu]", "[outputs.prometheus-push]", "[sensor]"):
        assert f"## `{table}`" in page


def test_the_reference_is_the_same_on_every_machine() -> None:
    """The PowerAPI sensor name defaults to the host name: the page says so instead of printing it."""
    page = docs_reference.config_page()
    assert "| `sensor_name` | string | the host name |" in page


def test_generator_writes_the_pages(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    assert docs_reference.main(["--docs", str(tmp_path / "docs")]) == 0
    for page, text in docs_reference.pages().items():
        assert (tmp_path / "docs" / page).read_text(encoding="utf-8") == text
    assert docs_reference.main(["--docs", str(tmp_path / "absent")]) == 2


def test_readme_links_point_to_files_that_exist() -> None:
    links = _relative_links(ROOT / "README.md")
    assert "docs/reference/cli.md" in links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_fits_a_few_screens_and_keeps_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "pip install . && wattprobe stdout -t 10" in readme
    assert "\nscripts/test.sh\n" in readme


def test_option_tables_in_the_docs_name_real_flags() -> None:
    """The task pages explain options in tables of their own; each flag they name must exist, so a
    renamed or removed option cannot stay documented."""
    known = {flag for command in (cli.build_parser(), *_commands().values()) for flag in _flags(command)}
    stale = []
    for page in sorted(DOCS.rglob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("| `-"):
                first_cell = line.split(" | ")[0]
                for flag in re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", first_cell):
                    if flag not in known:
                        stale.append(f"{page.relative_to(ROOT)}: {flag}")
    assert not stale, f"option tables name flags no command has: {stale}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed: pip install '.[docs]'",
)
def test_site_builds_strictly(tmp_path: Path) -> None:
    built = _mkdocs_build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    assert (tmp_path / "site" / "outputs" / "prometheus" / "index.html").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="mkdocs and mkdocs-material are not installed: pip install '.[docs]'",
)
def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The strict build is a real check: a link to an anchor that does not exist fails it."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copytree(DOCS, copy / "docs")
    page = copy / "docs" / "index.md"
    page.write_text(
        page.read_text(encoding="utf-8") + "\n[gone](host.md#no-such-section)\n", encoding="utf-8"
    )
    built = _mkdocs_build(copy, tmp_path / "site")
    assert built.returncode != 0
    assert "no-such-section" in built.stdout + built.stderr


def _mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Not --quiet: it keeps --strict from counting warnings (mkdocs 1.6).
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(root / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def _commands() -> dict[str, argparse.ArgumentParser]:
    for action in cli.build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("wattprobe has no commands")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = {flag for action in parser._actions for flag in action.option_strings}
    counted = (a for a in parser._actions if isinstance(a, argparse._CountAction))
    return flags | {f + f[-1] for action in counted for f in action.option_strings if len(f) == 2}  # -vv


def _relative_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t) and t.split("#")[0]]
