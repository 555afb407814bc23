"""wattprobe: how much power a machine draws, and how it splits among its processes."""

__version__ = "0.1.0"
