"""wattprobe: how much power a machine draws, and how it splits among its processes.

`wattprobe.measure()` (see `wattprobe.api`) measures a block of Python or a function; it is imported
on first use, so that `import wattprobe` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Measurement", "__version__", "measure"]

if TYPE_CHECKING:
    from wattprobe.api import Measurement, measure


def __getattr__(name: str) -> Any:
    if name in ("measure", "Measurement"):
        from wattprobe import api

        return getattr(api, name)
    raise AttributeError(f"module 'wattprobe' has no attribute {name!r}")
