"""`python -m wattprobe`."""

import sys

from wattprobe.cli import main

sys.exit(main())
