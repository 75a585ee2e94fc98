"""Training a fast network: our guidance objective on the outputs of a `TransformerNet`.

    from guided.fast import TrainConfig, train
    result = train(["mosaic.jpg"], "photos/", "mosaic.safetensors", TrainConfig(iterations=2000))

The loss is `GuidedObjective.terms`, the same code that guides diffusion (VGG Gram to the
painting(s), VGG content to each input photo, TV, CLIP text and style), each term divided by a
fixed scale so that one set of weights suits any VGG (see `term_scales`). Accelerate places the
models, runs mixed precision (the network under autocast, the frozen VGG in bf16, Gram matrices
and losses in float32) and averages gradients over processes under `accelerate launch`/`torchrun`;
the main process alone writes files.
"""
from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor

from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.fast.checkpoint import SUFFIX, checkpoint_path, load_checkpoint, save_checkpoint, save_network
from guided.fast.config import SIDE_FILE_SUFFIXES, TrainConfig
from guided.fast.network import TransformerNet
from guided.fast.resume import check_resume, run_identity
from guided.interrupts import InterruptGuard

logger = logging.getLogger(__name__)



@dataclass
class TrainResult:
    """What `train` returns: the network, its file and card, the loss history."""

    net: TransformerNet
    path: Path | None
    card: dict
    history: list[dict] = field(default_factory=list)
    interrupted: str | None = None  # "SIGINT"/"SIGTERM" when a signal stopped the run (a checkpoint was written)
    checkpoint: Path | None = None


class TrainingInterrupted(GuidedError):
    """Ctrl-C or SIGTERM: the checkpoint is written; `--resume` continues."""

    def __init__(self, message: str, signal_name: str):
        super().__init__(message)
        self.signal_name = signal_name


def check_output(output: str | Path) -> Path:
    """The network path: ends in .safetensors, is not a folder, its folder can exist."""
    output = Path(output)
    if output.is_dir():
        raise GuidedError(f"`--output` '{output}' is a folder; give a file name ending in {SUFFIX}")
    if output.suffix != SUFFIX:
        raise GuidedError(f"`--output` must end in {SUFFIX}, got '{output}'")
    from guided.io.outputs import Output, check_outputs

    check_outputs([Output(output, "--output", kind="file", suffixes=(SUFFIX,))])
    return output


def term_scales(objective, photos: Tensor, content_layers: Sequence[str]) -> dict[str, float]:
    """Fixed divisors that make the weights mean the same on any VGG (ImageNet or random, whose
    activations differ by orders of magnitude), like the classic path's relative losses: `gram` by the
    mean square of the target Gram matrices, `content` by the mean square of the content features of the
    sample photos, TV and CLIP terms (already O(1)) by 1."""
    scales = {name: 1.0 for name in GUIDANCE_TERMS}
    if objective.gram_targets:
        scales["gram"] = float(torch.stack([t.float().square().mean() for t in objective.gram_targets.values()]).mean())
    if objective.models.vgg is not None:
        from guided.guidance.objective import loss_view

        with torch.no_grad():
            view = loss_view(photos, objective.config.loss_size)
            feats = objective._vgg(view, content_layers)
        scales["content"] = float(torch.stack([f.float().square().mean() for f in feats.values()]).mean())
    return {k: max(v, 1e-12) for k, v in scales.items()}


def _load_styles(styles: Sequence) -> tuple[list[Tensor], list[dict]]:
    from guided.io.files import sha256_file
    from guided.io.images import load_image, pil_to_tensor

    images, described = [], []
    for source in styles:
        path = Path(source)
        images.append(pil_to_tensor(load_image(path, what="style image")))
        described.append({"name": path.name, "sha256": sha256_file(path)})
    return images, described


def _models(config: TrainConfig, need_clip: bool, models):
    from guided.models.bundle import GuidanceModels
    from guided.models.vgg import VGGFeatures, resolve_backbone

    if models is not None:
        return models, dict(models.describe())
    net, info = resolve_backbone(config.backbone, seed=config.seed)
    vgg = VGGFeatures(net, info.arch)
    clip = None
    if need_clip:
        from guided.models.clip import load_clip

        clip = load_clip()
    described = {"vgg": {**asdict(info), "description": info.describe()}}
    if clip is not None:
        described["clip"] = dict(clip.info)
    return GuidanceModels(clip=clip, vgg=vgg), described


def train(styles: Sequence[str | Path], data: str | Path, output: str | Path | None,
          config: TrainConfig | None = None, *, resume: bool | str | Path = False, allow_changes: bool = False,
          progress: bool = True, models=None, max_steps: int | None = None) -> TrainResult:
    """Train a `TransformerNet` toward `styles` (and/or `config.prompt`) on the photos under `data`.

    `output`: the network file (.safetensors, with its card); its checkpoint `NET.ckpt.safetensors`,
    loss curves `NET.curves.png` and sample grid `NET.samples.png` go next to it (None: nothing is
    written, for tests). `resume`: True continues from that checkpoint, a path from another; a checkpoint
    of other settings, paintings, prompt, backbone or photos is refused unless `allow_changes`
    (guided.fast.resume), and the card records every resume.
    `models`: a `GuidanceModels` to use instead of loading VGG (and CLIP). `max_steps`: stop (with a
    checkpoint) after this many steps of this call, as an interruption would (tests, benches).
    """
    from guided.accel import make_accelerator
    from guided.config import GuidanceConfig
    from guided.fast.data import CropDataset, PhotoFolder, StepSampler, sample_photos
    from guided.guidance.objective import GuidedObjective

    # 1. Check inputs: every user mistake before any model loads or any file is written.
    config = (config or TrainConfig()).validate()
    out = check_output(output) if output is not None else None
    prompt = config.prompt.strip() if isinstance(config.prompt, str) and config.prompt.strip() else None
    if not styles and prompt is None:
        raise GuidedError("no style image and no `--prompt`: give a painting, a prompt, or both")
    for source in styles:
        if not Path(source).is_file():
            raise GuidedError(f"style image '{source}' does not exist")
    style_images, style_cards = _load_styles(styles)
    folder = PhotoFolder.scan(data, exclude=out.parent if out is not None else None)
    ckpt_in = None
    if resume:
        ckpt_in = Path(resume) if not isinstance(resume, bool) else (checkpoint_path(out) if out else None)
        if ckpt_in is None or not ckpt_in.is_file():
            raise GuidedError(f"`--resume`: no checkpoint at '{ckpt_in}'")
    elif allow_changes:
        raise GuidedError("`--resume-with-changes` continues a checkpoint: give it with --resume")
    total = config.total_steps(len(folder.files))

    # 2. Placement, precision, models; the objective of guidance with per-photo content targets.
    import os

    device = config.device
    if device is None and not torch.cuda.is_available():
        device = "cpu"  # Accelerate sets up a CPU (gloo) process group only when told cpu=True
    accelerator = make_accelerator(device, config.mixed_precision)
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if launched != accelerator.num_processes:  # never let several processes each train alone
        raise GuidedError(f"launched as {launched} processes (WORLD_SIZE) but Accelerate sees "
                          f"{accelerator.num_processes}; check the launcher's configuration")
    need_clip = (prompt is not None and config.clip_text > 0) or (bool(styles) and config.clip_style > 0)
    guidance_models, models_card = _models(config, need_clip, models)
    guidance_models.to(accelerator.device)
    if config.mixed_precision == "bf16" and guidance_models.vgg is not None:
        guidance_models.vgg.to(torch.bfloat16)  # frozen: no float32 master copy needed; losses stay float32
    guidance = GuidanceConfig(**{n: float(getattr(config, n)) for n in GUIDANCE_TERMS}, loss_size=config.image_size,
                              cutouts=config.cutouts, normalize_gradients=False, seed=config.seed)
    objective = GuidedObjective(guidance, guidance_models, prompt=prompt, style_images=style_images,
                                style_weights=config.style_weights, style_size=config.style_size)
    names = [n for n in objective.available_terms if guidance.weight(n) > 0 and n != "content"]
    if config.content > 0:
        names.append("content")
    previews = sample_photos(folder.files, config.image_size).to(accelerator.device)
    scales = term_scales(objective, previews, guidance.content_layers)
    identity = run_identity(config, style_cards, prompt, models_card, folder.root, folder.files)

    # 3. The network (seeded init), Adam; or everything from the checkpoint.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = TransformerNet(config.width, input_noise=config.input_noise)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    step, history, elapsed, resumes = 0, [], 0.0, []
    if ckpt_in is not None:
        model_state, opt_state, state, rng, width = load_checkpoint(ckpt_in)
        if width != config.width:
            raise GuidedError(f"`--resume`: checkpoint '{ckpt_in}' is a {width} network, but --width is {config.width}")
        recorded = state.get("run") or {"settings": state.get("config", {})}
        resumes = [*state.get("resumes", []), check_resume(ckpt_in, recorded, identity, allow_changes=allow_changes,
                                                           step=int(state["step"]))]
        net.load_state_dict(model_state)
        optimizer.load_state_dict(opt_state)
        step, history, elapsed = int(state["step"]), list(state["history"]), float(state["elapsed"])
        if not resumes[-1]["changes"]:  # the same run: its scales (a changed run measures its own, above)
            scales = state.get("scales", scales)
        if "objective" in rng:
            objective._generator.set_state(rng["objective"])
        logger.info("resumed from %s at step %d of %d", ckpt_in, step, total)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model, optimizer = accelerator.prepare(net, optimizer)
    unwrapped: TransformerNet = accelerator.unwrap_model(model)
    world, rank = accelerator.num_processes, accelerator.process_index
    main = accelerator.is_main_process
    end = total if max_steps is None else min(total, step + max_steps)

    sampler = StepSampler(step, end, config.batch_size, rank, world)
    loader = torch.utils.data.DataLoader(CropDataset(folder.files, config.image_size, config.seed), sampler=sampler,
                                         batch_size=config.batch_size, num_workers=config.workers,
                                         worker_init_fn=_quiet_worker)
    weights = {n: guidance.weight(n) / scales[n] for n in names}
    if config.temporal_weight > 0:  # ReReVST's loss on synthetic flow (guided.fast.temporal); already O(1e-3)
        names.append("temporal")
        weights["temporal"] = config.temporal_weight
    files = _side_files(out) if out is not None and main else None

    def checkpoint() -> Path | None:
        if out is None:
            return None
        accelerator.wait_for_everyone()
        path = checkpoint_path(out)
        if main:
            save_checkpoint(path, unwrapped, optimizer, {"step": step, "history": history, "elapsed": elapsed,
                                                         "total": total, "config": asdict(config), "scales": scales,
                                                         "run": identity, "resumes": resumes},
                            {"objective": objective._generator.get_state()})
        accelerator.wait_for_everyone()
        return path

    # 4. The loop: one global batch per step; gradients averaged over processes by DDP.
    from tqdm.auto import tqdm

    interrupted = None
    bar = tqdm(total=total, initial=step, desc="train", unit="it", disable=not (progress and main), dynamic_ncols=True)
    model.train()
    start = time.perf_counter()
    with InterruptGuard(hold=True) as signals, bar:
        for batch in loader:
            batch = batch.to(accelerator.device, non_blocking=True)
            if config.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(step, total)
            with accelerator.autocast():
                styled = model(batch)
            terms = objective.terms(styled, [n for n in names if n != "temporal"], content=batch)
            if config.temporal_weight > 0:
                from guided.fast.temporal import temporal_loss

                flows = torch.Generator().manual_seed(config.seed * 1_000_003 + step)  # a function of the step
                with accelerator.autocast():
                    terms["temporal"] = temporal_loss(model, batch, styled, generator=flows)
            loss = sum(weights[n] * terms[n] for n in names)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            values = torch.stack([loss.detach()] + [terms[n].detach() for n in names])
            if world > 1:
                values = accelerator.reduce(values, reduction="mean")
            record = {"step": step, "total": float(values[0]), **{n: float(v) for n, v in zip(names, values[1:])}}
            if not math.isfinite(record["total"]):
                raise GuidedError(f"training diverged at step {step} (loss {record['total']}); lower --lr "
                                  f"(now {config.lr:g}) or use --mixed-precision no")
            history.append(record)
            step += 1
            elapsed += time.perf_counter() - start
            start = time.perf_counter()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k != "step"}, refresh=False)
            stop = _agree(accelerator, signals.received is not None)
            if step % config.checkpoint_every == 0 or stop:
                checkpoint()
            if files is not None and (step % config.sample_every == 0 or step == end):
                _write_previews(files, unwrapped, previews, history, accelerator)
                model.train()
            if stop:
                interrupted = signals.received or "SIGTERM"
                break
    ckpt_out = checkpoint_path(out) if out is not None else None
    if interrupted is not None or step < total:
        if step < total and interrupted is None:
            checkpoint()
        card = {}
        if interrupted is not None:
            raise TrainingInterrupted(f"training interrupted ({interrupted}) at step {step} of {total}; checkpoint "
                                      f"written to '{ckpt_out}'; rerun with --resume to continue", interrupted)
        return TrainResult(unwrapped.eval(), None, card, history, None, ckpt_out)

    # 5. The network file with its card; the checkpoint stays for a later --resume with more steps.
    card = make_card(config, total, history, elapsed, style_cards, prompt, models_card, folder, scales, world)
    card["resumes"] = resumes  # empty for a run that was never resumed
    path = None
    if out is not None:
        checkpoint()
        if main:
            path = save_network(unwrapped, out, card)
        accelerator.wait_for_everyone()
    return TrainResult(unwrapped.eval(), path, card, history, None, ckpt_out)


def _quiet_worker(_: int) -> None:
    """Loader workers ignore Ctrl-C/SIGTERM (a terminal sends them to the whole process group): the main
    process decides when to stop, checkpoints, and then ends its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _agree(accelerator, stop: bool) -> bool:
    """Whether any process received a signal: all stop at the same step."""
    if accelerator.num_processes == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _side_files(out: Path) -> dict[str, Path]:
    stem = out.name.removesuffix(SUFFIX)
    curves, samples = SIDE_FILE_SUFFIXES
    return {"curves": out.with_name(stem + curves), "samples": out.with_name(stem + samples)}


@torch.no_grad()
def _write_previews(files: dict[str, Path], net: TransformerNet, previews: Tensor, history: list[dict],
                    accelerator) -> None:
    """The loss curves and a grid of the fixed sample photos with the network's current outputs."""
    from guided.io.images import tensor_to_pil
    from guided.io.plots import make_grid, plot_curves

    net.eval()
    files["samples"].parent.mkdir(parents=True, exist_ok=True)
    with accelerator.autocast():
        styled = net(previews).float()
    step = history[-1]["step"] + 1 if history else 0
    cells = [(f"photo {i + 1}", tensor_to_pil(p)) for i, p in enumerate(previews)]
    cells += [(f"step {step}", tensor_to_pil(s)) for s in styled]
    grid = make_grid(cells, height=160)
    tmp = files["samples"].with_name(f".{files['samples'].name}.tmp")
    grid.save(tmp, format="PNG")
    tmp.replace(files["samples"])
    every = max(1, len(history) // 500)  # at most ~500 points: the plot stays light
    plot_curves([("training loss (weighted total, raw terms)", history[::every], "step")], files["curves"],
                x_key="step")


def make_card(config: TrainConfig, total: int, history: list[dict], elapsed: float, styles: list[dict],
              prompt: str | None, models: dict, folder, scales: dict, world: int) -> dict:
    """The model card written into the network file's metadata."""
    from guided.io.manifest import library_versions

    last = history[-20:]
    final = {k: sum(h[k] for h in last) / len(last) for k in last[-1] if k != "step"} if last else {}
    options = {f.name: getattr(config, f.name) for f in fields(config)}
    return {"kind": "fast-network", "styles": styles, "prompt": prompt,
            "weights": {n: getattr(config, n) for n in GUIDANCE_TERMS}, "term_scales": scales,
            "vgg": models.get("vgg"), "clip": models.get("clip"), "width": config.width,
            "input_noise": config.input_noise, "iterations": total,
            "image_size": config.image_size, "batch_size": config.batch_size, "processes": world,
            "final_losses": final, "final_losses_note": ("means of the last 20 steps: total is the weighted objective, "
                                                         "the others unweighted terms"),
            "training_seconds": round(elapsed, 1), "data": {"folder": str(folder.root), "photos": len(folder.files),
                                                            "skipped": len(folder.skipped)},
            "config": options, "versions": library_versions()}


__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "check_output", "make_card", "term_scales", "train"]
