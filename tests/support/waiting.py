"""Waiting for a condition instead of sleeping for a guessed time: fast when things are fast, patient on a
loaded machine, and a clear failure (what was awaited, for how long) when the condition never comes."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float = 10.0,
    what: str | Callable[[], str] = "a condition",
    *,
    every_s: float = 0.05,
    alive: subprocess.Popen | None = None,
) -> T:
    """Poll `check` until it returns something truthy, and return that.

    An OSError from `check` counts as not yet (a file not written yet, a server not listening yet).
    Fails (AssertionError, saying `what`) after `timeout_s`, or as soon as the process `alive`, on
    which the condition depends, has exited (with the end of its stderr, where it is piped).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result: T | None
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if alive is not None and alive.poll() is not None:
            raise AssertionError(
                f"{_text(what)}: the process exited ({alive.returncode}) first{_said(alive)}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {_text(what)}")
        time.sleep(every_s)


def holds_within(check: Callable[[], object], timeout_s: float, *, every_s: float = 0.05) -> bool:
    """Whether `check` became truthy within `timeout_s` (no failure: for best-effort waits)."""
    try:
        wait_for(check, timeout_s, every_s=every_s)
    except AssertionError:
        return False
    return True


def _text(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def _said(process: subprocess.Popen) -> str:
    """The end of what an exited process wrote to its piped stderr, for a failure to say why (kept by
    Popen: a later communicate() gives it again)."""
    if process.stderr is None:
        return ""
    try:
        _, err = process.communicate(timeout=1)
    except subprocess.TimeoutExpired:  # a child of its still holds the pipe open
        return ""
    text = err.decode(errors="replace") if isinstance(err, bytes) else err or ""
    return f"; its stderr ends: {text[-2000:]}" if text.strip() else ""
