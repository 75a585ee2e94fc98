"""`guided presets`: list the style presets (built-in `prompts/` and the user's own folders)."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets", help="list the style presets",
        description="List the style presets: the built-in ones (prompts/), then those in the "
                    "folders of GUIDED_PRESETS_DIR and --dir, which override built-ins of the same "
                    "name. Use one with --preset NAME.")
    parser.add_argument("--dir", action="append", default=None, metavar="DIR", dest="dirs",
                        help="an extra folder of preset .json files (repeatable)")
    parser.add_argument("--json", action="store_true", help="print every field as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from guided.guidance.presets import list_presets

    presets = list_presets(args.dirs)
    if args.json:
        json.dump([p.to_dict() for p in presets], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    if not presets:
        print("no presets found")
        return 0
    width = max(len(p.name) for p in presets)
    for preset in presets:
        print(f"{preset.name:<{width}}  {preset.description}")
    return 0
