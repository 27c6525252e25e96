"""``python -m ustcp.packetdrill PATH... [-v]``."""

import sys

from .cli import main

sys.exit(main())
