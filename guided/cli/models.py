"""`guided models`: what each feature needs and whether it is on this machine (no network)."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="list the model weights each feature needs and which are present",
        description="List the model weights each feature (stylize, gatys, compare) needs, whether "
                    "they are on this machine and how to get the missing ones. Looks only at local "
                    "caches and files: never uses the network.")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--download", nargs="?", const="all", metavar="FEATURE",
                        help="fetch the default weights FEATURE (stylize, gatys, compare, all: the default) is "
                             "missing; says what and how big first, then shows progress")
    parser.add_argument("--offline", action="store_true", help="with --download: refuse to use the network "
                                                               "(as HF_HUB_OFFLINE does)")
    parser.add_argument("--mirror", metavar="DIR", help="with --download: copy from this local mirror folder "
                                                        "(<org>/<repo>/<files>, <torch hub file>) instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from guided.models.status import model_status

    if args.download is not None:
        from guided.models.download import MirrorSource, download

        source = MirrorSource(args.mirror) if args.mirror else None
        download(args.download, source=source, refuse_online=args.offline,
                 say=lambda line: print(line, file=sys.stderr if args.json else sys.stdout, flush=True))
    elif args.mirror or args.offline:
        from guided.errors import GuidedError

        raise GuidedError("`--mirror` and `--offline` go with --download")
    rows = model_status()
    if args.json:
        json.dump([row.to_dict() for row in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(format_rows(rows)) + "\n")
    return 0


def format_rows(rows) -> list[str]:
    """A table (feature, component, status, where) followed by how to get what is missing."""
    table = [("FEATURE", "COMPONENT", "STATUS", "WHERE")]
    for row in rows:
        status = "present" if row.present else ("MISSING" if row.required else "missing (optional)")
        table.append((row.feature, row.component, status, row.where))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(r)) for r in table]
    missing = [row for row in rows if not row.present]
    if missing:
        lines += ["", "How to get what is missing:"]
        seen = set()
        for row in missing:
            if row.how in seen:
                continue
            seen.add(row.how)
            lines.append(f"- {row.component}: {row.how}")
    return lines
