"""Option helpers shared by the subcommands: verbosity."""
from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("guided.cli")


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` (more detail: -vv for debug) and `-q/--quiet` (errors only, no progress bars)."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more detail on stderr (-vv: debug)")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="errors and notices only, no progress bars")
