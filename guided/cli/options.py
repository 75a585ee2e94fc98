"""Option helpers shared by the subcommands: verbosity, and old spellings kept for one release."""
from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("guided.cli")


class DeprecatedAlias(argparse.Action):
    """An old option spelling that still works for one release and says what replaces it.

    `translate(value)` maps the old option's value onto the new option's dest (default: unchanged)."""

    def __init__(self, option_strings, dest, *, new: str, translate=None, **kwargs):
        self.new, self.translate = new, translate
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        logger.warning("%s is deprecated and will be removed in the next release; use %s", option_string, self.new)
        setattr(namespace, self.dest, self.translate(values) if self.translate else values)


def add_deprecated(parser, old: str, *, dest: str, new: str, translate=None, nargs=None, choices=None) -> None:
    """Accept `old` (hidden from --help) as a spelling of the option whose dest is `dest`."""
    kwargs = {"nargs": 0} if nargs == 0 else ({"nargs": nargs} if nargs else {})
    if choices:
        kwargs["choices"] = choices
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, translate=translate,
                        default=argparse.SUPPRESS, **kwargs)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` (more detail: -vv for debug) and `-q/--quiet` (errors only, no progress bars)."""
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                       help="more detail on stderr (-vv: debug)")
    group.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="errors and notices only, no progress bars")
