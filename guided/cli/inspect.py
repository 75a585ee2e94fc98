"""`guided inspect IMAGE`: print the manifest an image was saved with (PNG chunk or sidecar)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="print the parameters and provenance saved with an image",
        description="Print the reproducibility manifest saved with an image by guided: from its "
                    "PNG text chunk, else from its JSON sidecar (IMAGE.json next to it).")
    parser.add_argument("image", metavar="IMAGE", help="an image written by guided (or its .json sidecar), or a "
                                                       "network from `guided train` (NET.safetensors: its model card)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON instead of a summary")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from guided.io.images import read_metadata

    if str(args.image).endswith(".safetensors"):
        from guided.fast.checkpoint import read_card

        manifest = read_card(args.image)
    else:
        manifest = read_metadata(args.image)
    if args.json:
        json.dump(manifest, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(format_manifest(manifest)) + "\n")
    return 0


#: Printed first, in this order, when present; the rest follows alphabetically.
_FIRST = ("kind", "created", "ai_generated", "digital_source_type", "seed", "device", "precision",
          "seconds")


def format_manifest(manifest: dict) -> list[str]:
    """Human-readable lines: scalars as `key: value`, sections indented, loss traces summarised."""
    keys = [k for k in _FIRST if k in manifest]
    keys += sorted(k for k in manifest if k not in _FIRST)
    lines: list[str] = []
    for key in keys:
        value = manifest[key]
        if key == "losses" and value:
            lines.append("losses:")
            lines.extend("  " + line for line in _format_losses(value))
        else:
            lines.extend(_format_item(key, value, indent=0))
    return lines


def _format_item(key: str, value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict) and value:
        lines = [f"{pad}{_printable(key)}:"]
        for sub, item in value.items():
            lines.extend(_format_item(str(sub), item, indent + 1))
        return lines
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        lines = [f"{pad}{_printable(key)}:"]
        for i, item in enumerate(value):
            lines.extend(_format_item(f"[{i}]", item, indent + 1))
        return lines
    return [f"{pad}{_printable(key)}: {_scalar(value)}"]


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if value is None:
        return "-"
    return _printable(str(value))


def _printable(text: str) -> str:
    """Control characters (newlines, escapes, ...) shown as escapes, so each key stays on one line and
    no text in a manifest can drive the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _format_losses(losses: dict | list) -> list[str]:
    """One line per term: number of values, first, last, min. Accepts {term: [values]} or a list
    of per-step dicts (the classic path's history)."""
    traces: dict[str, list] = {}
    if isinstance(losses, dict):
        traces = {str(k): v if isinstance(v, list) else [v] for k, v in losses.items()}
    else:
        for step in losses:
            if not isinstance(step, dict):
                return [_scalar(losses)]
            for term, value in step.items():
                traces.setdefault(str(term), []).append(value)
    lines = []
    for term, values in traces.items():
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers:
            lines.append(f"{_printable(term)}: {_scalar(values)}")
            continue
        lines.append(f"{_printable(term)}: {len(values)} values, first {numbers[0]:.6g}, last {numbers[-1]:.6g}, "
                     f"min {min(numbers):.6g}")
    return lines
