"""`compare`: classic neural style transfer, plain img2img and guided img2img on the same inputs,
scored with the same metrics, written as one report folder.

    from guided.compare.run import compare
    report = compare("photo.jpg", styles=["painting.jpg"], prompt="an oil painting", out_dir="report")
    report.rows[2]["metrics"]["clip_text"]

One set of models serves every stage and every metric: the Stylizer's CLIP and VGG score the
outputs, and that same VGG is the classic path's backbone, so nothing is loaded twice.
`tiny=True` runs everything offline on tiny random models, labelled as a smoke run.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import PIL.Image

from guided import validate
from guided.compare.memory import PeakMemory
from guided.config import GuidanceConfig
from guided.constants import GATYS_TERMS, GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.io.images import describe_source
from guided.stylize import DEFAULTS

#: Caption of the unedited photo for `clip_direction` (the edit goes from it to the prompt). Generic
#: on purpose: the user's photo has no caption, and "a photo" is the neutral source of such edits.
SOURCE_PROMPT = "a photo"
#: Classic path with `tiny=True`: few iterations, since its random tiny VGG only smoke-tests.
TINY_GATYS_ITERATIONS = 10
SMOKE_LABEL = ("SMOKE RUN: tiny RANDOM models (--tiny). These images and numbers test the install; "
               "they are not stylizations. Real results need the real weights: run `guided models`.")


@dataclass
class CompareReport:
    """What `compare` wrote: the folder, one row per image scored, and the metrics document."""

    out_dir: Path
    rows: list[dict]
    metrics: dict
    files: dict[str, Path] = field(default_factory=dict)
    smoke: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Stage:
    """One output of a compare run: the image, what made it, and what it cost."""

    name: str  # file stem in the report folder: classic, img2img, guided, guided_<term>-<value>
    label: str  # caption in the grid and tables
    image: PIL.Image.Image
    metadata: dict  # the image's manifest
    seconds: float  # wall time of the stage
    peak_mb: float | None  # peak resident memory during the stage (see PeakMemory.method)
    history: list[dict]  # per-term losses per iteration or denoising step, for the curves
    xlabel: str  # what one history entry is ("iteration", "denoising step")
    notes: list[str] = field(default_factory=list)


@dataclass
class _Run:
    """What every stage of one compare run shares (built by `compare` from its keyword arguments)."""

    stylizer: Any
    photo: PIL.Image.Image
    paintings: list[PIL.Image.Image]
    content: Any  # as the user gave it (path or image), for the manifest
    style_list: list
    style_weights: Sequence[float] | None
    prompt: str | None  # the prompt, or the preset's
    run_kwargs: dict  # Stylizer.run options shared by every diffusion stage
    guidance: dict
    sweep: dict[str, list[float]]
    seed: int
    folder: Path
    smoke: bool
    gatys_preset: str
    gatys_options: dict
    size: int | None
    source_prompt: str
    command: str | None
    fast: list = field(default_factory=list)  # loaded fast networks (guided.fast.apply.FastStylizer), one row each


# ------------------------------------------------------------------------------------ inputs
def parse_sweep(items: Sequence[str] | dict | None) -> dict[str, list[float]]:
    """`["clip_text=0,50,100"]` (or a dict) -> {"clip_text": [0.0, 50.0, 100.0]}, validated."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split_sweep(s) for s in items]
    sweep: dict[str, list[float]] = {}
    for term, values in pairs:
        if term not in GUIDANCE_TERMS:
            raise GuidedError(f"`--sweep` term {term!r} is not a guidance term; terms: {', '.join(GUIDANCE_TERMS)}")
        values = [values] if isinstance(values, (int, float)) else list(values)
        if not values:
            raise GuidedError(f"`--sweep` values of {term!r} are missing")
        for v in values:
            validate.number(v, f"--sweep {term}", low=0.0)
        sweep.setdefault(term, []).extend(float(v) for v in values)
        if len(set(sweep[term])) != len(sweep[term]):
            raise GuidedError(f"`--sweep` repeats a value of {term!r}: {sweep[term]}")
    return sweep


def _split_sweep(text: str) -> tuple[str, list[float]]:
    term, sep, raw = str(text).partition("=")
    if not sep or not raw.strip():
        raise GuidedError(f"`--sweep` must look like TERM=V,V,... (e.g. clip_text=0,50,100), got {text!r}")
    try:
        return term.strip(), [float(v) for v in raw.split(",")]
    except ValueError:
        raise GuidedError(f"`--sweep` values must be numbers, got {text!r}") from None


def _check_out_dir(out_dir: Path) -> None:
    """A new folder, an empty one, or an earlier compare report (replaced); anything else refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise GuidedError(f"`out_dir` '{out_dir}' exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "metrics.json").is_file():
        raise GuidedError(f"`out_dir` '{out_dir}' exists, is not empty and is not a compare report; "
                          "choose a new folder")


def _publish(tmp: Path, out_dir: Path) -> None:
    """Move the finished report from `tmp` to `out_dir`, replacing an earlier report there."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------ running
def compare(content, *, styles: Sequence = (), style_weights: Sequence[float] | None = None,
            prompt: str | None = None, negative_prompt: str | None = None, preset: str | None = None,
            tiny: bool = False, sweep: dict[str, list[float]] | Sequence[str] | None = None,
            seed: int = DEFAULTS.seed, out_dir: str | Path, size: int | None = None,
            strength: float | None = None, steps: int | None = None, guidance_scale: float | None = None,
            guidance: dict | None = None, preserve_color: bool = False, gatys_preset: str = "default",
            gatys_options: dict | None = None, source_prompt: str = SOURCE_PROMPT, stylizer=None,
            command: str | None = None, nets: Sequence[str | Path] = (), **load_options) -> CompareReport:
    """Run classic NST (`gatys_preset`), plain img2img (every guidance weight 0) and guided img2img
    (plus one guided run per `sweep` value) on `content` with the same seed; write the report.

    Options are those of `Stylizer.run` (None: preset, then API default); `load_options` (model,
    scheduler, device, mixed_precision, clip, ...) go to `Stylizer.load`.
    `nets`: fast networks from `guided train` (.safetensors or .onnx), one more row each, at the guided
    outputs' size.
    `gatys_options`: keyword arguments of `guided.gatys.stylize` (iterations, size, optimizer, ...);
    by default the classic output has the guided outputs' size and precision, and with tiny models
    `TINY_GATYS_ITERATIONS` iterations. `stylizer`: an already loaded `Stylizer` to reuse (its
    `tiny` wins over `tiny`).
    The folder appears complete or not at all: it is written next to `out_dir` and renamed."""
    from guided.io.images import load_image

    if not isinstance(tiny, bool):
        raise GuidedError(f"`tiny` must be true or false, got {tiny!r}")
    validate.diffusion_options(strength=strength, steps=steps, guidance_scale=guidance_scale, size=size)
    from guided.fast.apply import FastStylizer

    fast = [FastStylizer.load(n) for n in nets]  # a bad network file fails before any model loads
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    sweep = parse_sweep(sweep)
    photo = load_image(content, what="content image")
    style_list = [styles] if isinstance(styles, (str, Path, PIL.Image.Image)) else list(styles)
    paintings = [load_image(s, what="style image") for s in style_list]
    text = prompt
    if preset is not None:
        from guided.guidance.presets import load_preset

        text = prompt if prompt is not None else load_preset(preset).prompt
    if not (text or "").strip() and not paintings:
        raise GuidedError("`prompt` is empty and no style painting was given: nothing to compare toward")

    if stylizer is None:
        from guided.stylize import Stylizer

        stylizer = Stylizer.load(tiny=tiny, **load_options)
    smoke = stylizer.tiny
    run_kwargs = dict(prompt=prompt, negative_prompt=negative_prompt, style=style_list, style_weights=style_weights,
                      strength=strength, steps=steps, guidance_scale=guidance_scale, seed=seed, size=size,
                      preserve_color=preserve_color, preset=preset)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = _run_all(_Run(stylizer, photo, paintings, content, style_list, style_weights, text, run_kwargs,
                               dict(guidance or {}), sweep, seed, tmp, smoke, gatys_preset, dict(gatys_options or {}),
                               size, source_prompt, command, fast))
        _publish(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.out_dir = out_dir
    report.files = {k: out_dir / v.name for k, v in report.files.items()}
    return report


def _run_all(run: _Run) -> CompareReport:
    from guided.io.images import save_image

    memory = PeakMemory()
    notes: list[str] = []
    outputs: list[Stage] = []

    # 1. Classic neural style transfer on the Stylizer's own VGG (needs a painting).
    if run.paintings:
        outputs.append(_classic(run, memory))
    else:
        notes.append("classic: skipped, classic neural style transfer needs a style painting (--style)")

    # 1b. Fast networks: one forward pass each, at the size the other stages produce.
    for i, stylizer_net in enumerate(run.fast):
        outputs.append(_fast_stage(stylizer_net, run.photo,
                                   run.size or DEFAULTS.size or run.stylizer.native_size,
                                   f"fast{i + 1}" if len(run.fast) > 1 else "fast", memory))

    # 2. Plain img2img: every guidance weight 0 is exactly diffusers' img2img (tests/test_pipeline.py).
    zero = GuidanceConfig(**{t: 0.0 for t in GUIDANCE_TERMS})
    outputs.append(_stylize_stage(run, zero, "img2img", "img2img (no guidance)", memory))

    # 3. Guided img2img, then one guided run per swept value.
    outputs.append(_stylize_stage(run, dict(run.guidance), "guided", "guided", memory))
    for term, values in run.sweep.items():
        for value in values:
            name = f"guided_{term}-{value:g}"
            outputs.append(_stylize_stage(run, {**run.guidance, term: value}, name, f"guided {term}={value:g}",
                                          memory))
    for out in outputs:
        notes += [f"{out.name}: {n}" for n in out.notes]

    # 4. Score every image with the already loaded CLIP and VGG.
    from guided.compare.metrics import load_lpips

    lpips = load_lpips()
    notes.append(lpips.note)
    scorer = _Scorer(run.stylizer.guidance_models, run.photo, run.paintings, run.style_weights, run.prompt,
                     run.source_prompt, lpips)
    notes += scorer.notes
    rows = [{"name": "photo", "label": "photo (input, reference)", "file": None,
             "metrics": scorer.score(run.photo, None, None)}]
    for out in outputs:
        path = save_image(out.image, run.folder / f"{out.name}.png", metadata=out.metadata)
        rows.append({"name": out.name, "label": out.label, "file": path.name,
                     "metrics": scorer.score(out.image, out.seconds, out.peak_mb)})

    # 5. The report files.
    return _write_report(run, outputs, rows, notes, memory)


def _classic(run: _Run, memory: PeakMemory) -> Stage:
    from torch import nn

    from guided.gatys.transfer import stylize as gatys_stylize

    stylizer, smoke, options = run.stylizer, run.smoke, dict(run.gatys_options)
    vgg = stylizer.guidance_models.vgg
    backbone = nn.Sequential(*vgg.body)  # the same modules: no second VGG in memory
    for key in ("backbone", "seed", "device", "style_weights", "preset"):
        if key in options:
            raise GuidedError(f"`gatys_options` may not set `{key}`: compare sets it for every stage")
    options.setdefault("size", run.size or DEFAULTS.size or stylizer.native_size)
    if smoke:
        options.setdefault("iterations", TINY_GATYS_ITERATIONS)
    options.setdefault("progress", sys.stderr.isatty())
    # The run's precision: a fair comparison, and Accelerate's one process-wide state is not reset
    # under the Stylizer's feet by a classic run at another precision.
    options.setdefault("mixed_precision", stylizer.accelerator.mixed_precision)
    memory.reset()
    result = gatys_stylize(run.content, run.style_list, preset=run.gatys_preset, backbone=backbone, seed=run.seed,
                           device=str(stylizer.accelerator.device), style_weights=run.style_weights, **options)
    peak = memory.peak_mb()
    vgg_info = stylizer.model_info.get("guidance", {}).get("vgg", {})
    metadata = dict(result.metadata)
    # gatys only sees "a user module"; say what that module really is.
    metadata["models"] = {"backbone": {"shared_with": "the guidance VGG of this compare run", "vgg": vgg_info}}
    metadata["random_backbone"] = bool(stylizer.model_info.get("random"))
    label = f"classic (Gatys, {run.gatys_preset} preset)" + (", tiny random VGG" if smoke else "")
    notes = ([f"stopped early: {result.stop_reason}"] if result.stopped_early else []) + list(result.notes)
    # The weighted terms only, not bookkeeping such as evaluations.
    history = [{k: h[k] for k in GATYS_TERMS if k in h} for h in result.history]
    return Stage("classic", label, result.image, metadata, round(result.seconds, 3), peak, history, "iteration", notes)


def _fast_stage(stylizer, photo, size: int, name: str, memory: PeakMemory) -> Stage:
    memory.reset()
    result = stylizer(photo, size=size)
    peak = memory.peak_mb()
    card = stylizer.card
    label = f"fast network ({card.get('width')}, {card.get('iterations')} steps, {stylizer.backend})"
    return Stage(name, label, result.image, result.metadata, round(result.seconds, 4), peak, [], "step", [])


def _stylize_stage(run: _Run, guidance, name: str, label: str, memory: PeakMemory) -> Stage:
    memory.reset()
    result = run.stylizer.run(run.content, guidance=guidance, **run.run_kwargs)
    peak = memory.peak_mb()
    terms = [{k: v for k, v in h.items() if k in GUIDANCE_TERMS or k == "step"} for h in result.loss_history]
    history = terms if any(len(h) > 1 for h in terms) else []
    return Stage(name, label, result.image, result.metadata, round(result.seconds, 3), peak, history,
                 "denoising step", list(result.notes))


class _Scorer:
    """The report's rows: `guided.compare.metrics.Scorer` on PIL images at the loss resolution, plus the
    stage's time and memory, with notes for the metrics that have nothing to compare against."""

    def __init__(self, models, photo, paintings, style_weights, prompt, source_prompt, lpips):
        from guided.compare.metrics import Scorer
        from guided.guidance.objective import loss_view
        from guided.io.images import pil_to_tensor

        size = GuidanceConfig().loss_size
        device = next(models.vgg.parameters()).device
        self._view = lambda im: loss_view(pil_to_tensor(im).to(device), size)
        self.scorer = Scorer(models, self._view(photo), paintings01=[self._view(p) for p in paintings],
                             style_weights=style_weights if paintings else None, prompt=prompt,
                             source_prompt=source_prompt, lpips=lpips)
        self.notes = []
        if not paintings:
            self.notes.append("clip_style, gram: null, no style painting given")
        if self.scorer.prompt is None:
            self.notes.append("clip_text, clip_direction: null, no prompt given")
        else:
            self.notes.append(f"clip_direction: edit from the caption {source_prompt!r} to the prompt")

    def score(self, image: PIL.Image.Image, seconds: float | None, peak: float | None) -> dict[str, Any]:
        return {**self.scorer.score(self._view(image)), "seconds": seconds, "peak_memory_mb": peak}


def _write_report(run: _Run, outputs: list[Stage], rows: list[dict], notes: list[str],
                  memory: PeakMemory) -> CompareReport:
    from guided.compare.report import metrics_markdown, render_html
    from guided.io.manifest import build_manifest, json_safe
    from guided.io.plots import make_grid, plot_curves

    folder, photo, paintings, stylizer, smoke = run.folder, run.photo, run.paintings, run.stylizer, run.smoke
    title = "guided compare" + (" — SMOKE RUN (tiny random models)" if smoke else "")
    cells = [("photo", photo)] + [(f"style {i + 1}" if len(paintings) > 1 else "style", p)
                                  for i, p in enumerate(paintings)]
    cells += [(o.label, o.image) for o in outputs]
    grid = make_grid(cells, title="SMOKE RUN: tiny random models, not stylizations" if smoke else None)
    files = {"grid": folder / "grid.png"}
    grid.save(files["grid"], format="PNG")
    panels = [(o.label, o.history, o.xlabel) for o in outputs if o.history]
    if panels:
        files["curves"] = plot_curves(panels, folder / "curves.png")
    else:
        notes.append("curves: no run recorded a loss history")
    notes.append(f"peak_memory_mb: {memory.method}")
    notes.append("seconds: one timed run per output, not a median; the first diffusion stage (img2img) also pays "
                 "one-time warm-up costs")
    inputs = {"content": describe_source(run.content),
              "style": [describe_source(s) for s in run.style_list] or None,
              "prompt": run.prompt, "seed": run.seed, "sweep": run.sweep or None, "tiny": stylizer.tiny,
              "device": str(stylizer.accelerator.device), "precision": stylizer.accelerator.mixed_precision}
    document = build_manifest(kind="compare", parameters=inputs, seed=run.seed, models=stylizer.model_info,
                              device=str(stylizer.accelerator.device), precision=stylizer.accelerator.mixed_precision,
                              extra={"smoke_run": smoke, "label": SMOKE_LABEL if smoke else None,
                                     "metric_keys": [k for k, _ in _columns()], "metric_definitions": dict(_columns()),
                                     "peak_memory_method": memory.method,
                                     "outputs": rows, "notes": notes})
    files["metrics.json"] = folder / "metrics.json"
    files["metrics.json"].write_text(json.dumps(json_safe(document), indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    files["metrics.md"] = folder / "metrics.md"
    files["metrics.md"].write_text(metrics_markdown(rows, title=title, notes=([SMOKE_LABEL] if smoke else []) + notes),
                                   encoding="utf-8")
    files["report.html"] = folder / "report.html"
    files["report.html"].write_text(
        render_html(title=title, smoke=SMOKE_LABEL if smoke else None, inputs=inputs, grid_png=files["grid"],
                    curves_png=files.get("curves"), rows=rows, notes=notes, command=run.command), encoding="utf-8")
    for row in rows:
        if row["file"]:
            files[row["name"]] = folder / row["file"]
    return CompareReport(out_dir=folder, rows=rows, metrics=document, files=files, smoke=smoke, notes=notes)


def _columns():
    from guided.compare.report import METRIC_COLUMNS

    return METRIC_COLUMNS
