"""What a resumed training run must share with the run that wrote its checkpoint.

A checkpoint records its run's identity: every setting that changes what the network learns, the
paintings (by content), the prompt, the VGG backbone and the training photos. `--resume` with
another identity is refused, naming each difference, unless the caller allows the changes; the
card then records what changed and at which step. Every resume is recorded in the card.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.fast.config import TrainConfig

logger = logging.getLogger(__name__)

#: Settings that decide where and how often a run reports, not what the network learns.
OPERATIONAL = frozenset({"device", "workers", "checkpoint_every", "sample_every", "channels_last"})
#: Settings a resume may change without being told: continuing with more steps is what a resume is for.
#: (The learning-rate decay is a function of the total, so the steps after the resume follow the new one.)
EXTENDABLE = frozenset({"iterations", "epochs"})
#: The identity's parts besides the settings, as the command line names them.
PART_NAMES = {"styles": "STYLE_IMAGE (the paintings' content)", "prompt": "--prompt", "backbone": "--backbone",
              "photos": "--data (the photos' names and sizes)"}


def option_name(setting: str) -> str:
    """A `TrainConfig` field as `guided train` spells it (`gram` -> `--gram-weight`)."""
    flag = setting.replace("_", "-")
    return f"--{flag}-weight" if setting in GUIDANCE_TERMS else f"--{flag}"


def photos_digest(root: Path, files: Sequence[Path]) -> str:
    """A fingerprint of the training photos: their paths under `root` and byte sizes."""
    blob = "\n".join(f"{Path(f).relative_to(root).as_posix()}\t{Path(f).stat().st_size}" for f in sorted(files))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def run_identity(config: TrainConfig, styles: list[dict], prompt: str | None, models: dict, root: Path,
                 files: Sequence[Path]) -> dict:
    """Everything besides the weights that decides what training learns (JSON-safe)."""
    from guided.io.manifest import json_safe

    vgg = models.get("vgg") or {}
    settings = {k: v for k, v in asdict(config).items() if k not in OPERATIONAL}
    return json_safe({"settings": settings, "styles": [s.get("sha256") for s in styles], "prompt": prompt,
                      "backbone": vgg.get("sha256") or vgg.get("source"), "photos": photos_digest(root, files)})


def differences(recorded: dict, current: dict) -> dict[str, list]:
    """{name as the CLI spells it: [recorded, current]} for each setting or part that differs.
    Parts an older checkpoint does not record are not compared (a warning says which)."""
    changed: dict[str, list] = {}
    old, new = recorded.get("settings", {}), current["settings"]
    for key in new:
        if key in old and old[key] != new[key]:
            changed[option_name(key)] = [old[key], new[key]]
    unrecorded = [PART_NAMES[part] for part in PART_NAMES if part not in recorded]
    if unrecorded:
        logger.warning("the checkpoint does not record %s (an older format): not checked", ", ".join(unrecorded))
    for part, name in PART_NAMES.items():
        if part in recorded and recorded[part] != current[part]:
            changed[name] = [recorded[part], current[part]]
    return changed


def check_resume(checkpoint: Path, recorded: dict, current: dict, *, allow_changes: bool, step: int) -> dict:
    """The resume record for the card: {step, checkpoint, changes}; a GuidedError naming each change
    that is not allowed."""
    changes = differences(recorded, current)
    extendable = {option_name(k) for k in EXTENDABLE}
    refused = [name for name in changes if name not in extendable]
    if refused and not allow_changes:
        listed = "; ".join(f"{name} {_shown(changes[name][0])} -> {_shown(changes[name][1])}" for name in refused)
        raise GuidedError(f"`--resume`: checkpoint '{checkpoint}' was trained with other settings ({listed}); "
                          "give the checkpoint's settings, or --resume-with-changes to continue with these "
                          "(the card records the change)")
    if changes:
        logger.warning("resuming at step %d with changes: %s", step, ", ".join(changes))
    return {"step": step, "checkpoint": str(checkpoint), "changes": changes}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = ["EXTENDABLE", "OPERATIONAL", "check_resume", "differences", "option_name", "run_identity"]
