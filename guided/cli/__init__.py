"""The `guided` command. Each subcommand lives in its own module of this package and exposes
`add_parser(subparsers)`; heavy imports happen inside the command, so `--help` is fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from guided import __version__
from guided.errors import GuidedError

# Subcommand modules, in the order `guided --help` lists them. A missing module is skipped.
COMMANDS = ["gatys", "stylize", "train", "fast", "export", "compare", "batch", "inspect", "presets", "models"]


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GuidedError as exc:
        print(f"guided: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("guided: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
