"""Which consumers a sink lists: the top N, or those matching a pattern."""

from __future__ import annotations

import re

from wattprobe.core.model import Consumer, Frame


def select_consumers(
    frame: Frame,
    top: int,
    pattern: re.Pattern[str] | None = None,
    container_pattern: re.Pattern[str] | None = None,
) -> tuple[Consumer, ...]:
    """The top `top` consumers, or every consumer whose exe or cmdline matches `pattern`."""
    consumers = frame.consumers
    if container_pattern is not None:
        consumers = tuple(
            c
            for c in consumers
            if c.info.container is not None and container_pattern.search(c.info.container.id)
        )
    if pattern is not None:
        return tuple(c for c in consumers if pattern.search(c.info.exe) or pattern.search(c.info.cmdline))
    return consumers[:top]
