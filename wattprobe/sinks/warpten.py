"""`wattprobe warpten`: Scaphandre 1.0's name for the Warp 10 exporter; the same as `wattprobe warp10`."""

from wattprobe.sinks.warp10 import add_arguments, run

NAME = "warpten"
HELP = "the same as warp10 (Scaphandre 1.0's name for it)"

__all__ = ["HELP", "NAME", "add_arguments", "run"]
