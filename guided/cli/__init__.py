"""The `guided` command. Each subcommand lives in its own module of this package and exposes
`add_parser(subparsers)`; heavy imports happen inside the command, so `--help` is fast.

The CLI is the only place that decides what reaches the console: library modules log through
`logging.getLogger(__name__)`, and `main` attaches one stderr handler to the `guided` logger at the
level `-v`/`-q` ask for (notices about random or tiny models are warnings, so `-q` keeps them).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from guided import __version__
from guided.cli.options import add_verbosity
from guided.errors import GuidedError, one_line

# Subcommand modules, in the order `guided --help` lists them. A missing module is skipped.
COMMANDS = ["gatys", "stylize", "train", "fast", "export", "video", "compare", "batch", "serve", "inspect",
            "presets", "models"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guided", description="Image stylization: guided Stable Diffusion img2img and classic "
                                   "neural style transfer (Gatys et al.).")
    parser.add_argument("--version", action="version", version=f"guided {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"guided.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"guided.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    add_verbosity(parser)
    for subparser in sub.choices.values():
        add_verbosity(subparser)
    return parser


class _ConsoleFormatter(logging.Formatter):
    """`guided: warning: ...` for warnings and errors, the bare message for information; notices
    (which begin with NOTICE) keep their own word."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not message.startswith("NOTICE"):
            message = f"{record.levelname.lower()}: {message}"
        return f"guided: {message}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the message (tests and notebooks replace it)."""

    _guided_console = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # logging assigns it once in __init__; the property ignores it
        pass


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """One stderr handler on the `guided` logger: INFO by default, WARNING with -q, DEBUG with -v."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    log = logging.getLogger("guided")
    for handler in [h for h in log.handlers if getattr(h, "_guided_console", False)]:
        log.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_ConsoleFormatter())
    log.addHandler(handler)
    log.setLevel(level)
    if verbose >= 2:  # -vv: the libraries we build on too
        logging.getLogger().setLevel(logging.DEBUG)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GuidedError as exc:
        print(f"guided: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("guided: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
