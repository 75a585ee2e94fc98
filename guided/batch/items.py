"""What each output of a batch is called (its inputs are found by guided.io.discovery).

Output names keep the whole input name, extension included, and add a label (the preset, or the
method when no preset is named): `photos/a.jpg` with preset `ink-wash` becomes
`photos/a.jpg.ink-wash.png`. Because the label has no dot, the input path and the label can be read
back from the name, so two different (input, label) pairs can never share an output, `a.png` and
`a.jpg` included. Names that differ only by case are refused up front: they would collide on
case-insensitive file systems (macOS, Windows).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from guided.errors import GuidedError

# A label names outputs and ends up in file names: letters, digits, '-' and '_' only (no dot, so
# that `<input>.<label>.png` stays unambiguous; no '/', so it cannot move the file).
LABEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
OUTPUT_SUFFIX = ".png"


@dataclass(frozen=True)
class BatchItem:
    """One unit of work: an input image (relative to INPUT_DIR) stylized under one label."""

    input: str  # relative POSIX path under INPUT_DIR
    label: str  # preset name, or the method when no preset is named
    output: str  # relative POSIX path under OUTPUT_DIR


def check_label(label: str) -> str:
    """`label` if it can be part of an output name, else a GuidedError naming it."""
    if not LABEL_PATTERN.fullmatch(label):
        raise GuidedError(f"preset name {label!r} cannot name outputs: use letters, digits, '-' and '_'")
    return label


def output_name(input_rel: str, label: str) -> str:
    """The output path (relative to OUTPUT_DIR) of `input_rel` under `label`."""
    return f"{input_rel}.{check_label(label)}{OUTPUT_SUFFIX}"


def plan_items(inputs: list[str], labels: list[str]) -> list[BatchItem]:
    """Every (input, label) pair in input order then label order, with collision-free outputs."""
    if len(set(labels)) != len(labels):
        raise GuidedError(f"`--preset` names a preset twice: {','.join(labels)}")
    items = [BatchItem(rel, label, output_name(rel, label)) for rel in inputs for label in labels]
    seen: dict[str, str] = {}
    for item in items:
        key = item.output.casefold()
        if key in seen:
            raise GuidedError(f"inputs '{seen[key]}' and '{item.input}' differ only by letter case; their "
                              f"outputs would collide on case-insensitive file systems: rename one")
        seen[key] = item.input
    return items
