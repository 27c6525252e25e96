"""``python -m ustcp.demo [TOPIC]``: the same as ``ustcp demo [TOPIC]``."""

from __future__ import annotations

import argparse
import sys

from ustcp.demo import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m ustcp.demo", description=__doc__)
add_arguments(parser)
sys.exit(main(parser.parse_args()))
