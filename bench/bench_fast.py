"""Benchmark of fast networks (not a test): inference speed, Gatys ratio, training throughput, quality.

    .venv/bin/python bench/bench_fast.py speed --net NET.safetensors      # 512x512 PyTorch + onnxruntime
    .venv/bin/python bench/bench_fast.py gatys --photos a.jpg b.jpg --style mosaic.jpg --out gatys.json
    .venv/bin/python bench/bench_fast.py quality --net NET.safetensors --gatys gatys.json
    .venv/bin/python bench/bench_fast.py train-speed                      # 256 px, batch 4: fp32/bf16, channels_last

Quality uses the real VGG-16 beside the project (`--backbone`, default ../shared/weights/...) and the
compare report's metrics: Gram distance to the painting and content distance to the photo, every
image at 224 px on its long side, GuidanceConfig's layers (`guided.compare.metrics`). Medians of
`--repeats` interleaved runs. torch uses `--threads` threads (the CPU here is shared: say so).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from guided.config import GuidanceConfig  # noqa: E402
from guided.io.images import load_image, pil_to_tensor  # noqa: E402

VGG16 = ROOT.parent / "shared" / "weights" / "vgg16-features-imagenet-ft.safetensors"
SCORE_SIZE = 224  # the compare report's scale (GuidanceConfig.loss_size)


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(args) -> dict:
    """Inference at 512x512: PyTorch (fp32, channels_last) and onnxruntime, per width; with `--with-gatys`,
    the Gatys `default` preset (its own 512 px) on the first photo and the network on that photo's size,
    in the same run, for the speed-up."""
    from guided.fast.checkpoint import load_network
    from guided.fast.network import TransformerNet

    x = torch.rand(1, 3, 512, 512)
    rows = {}
    nets = {}
    if args.net:
        net, card = load_network(args.net)
        nets[f"{card['width']} (trained)"] = (net, card)
    for width in ("full", "half"):
        if not any(card["width"] == width for _, card in nets.values()):
            nets[width] = (TransformerNet(width).eval(), {"width": width})  # speed does not depend on the weights
    for name, (net, card) in nets.items():
        with torch.no_grad():
            rows[f"{name} pytorch"] = _median_time(lambda net=net: net(x), args.repeats)
            cl = net.to(memory_format=torch.channels_last)
            xc = x.contiguous(memory_format=torch.channels_last)
            rows[f"{name} pytorch channels_last"] = _median_time(lambda cl=cl, xc=xc: cl(xc), args.repeats)
            net.to(memory_format=torch.contiguous_format)
        rows[f"{name} onnxruntime"] = _onnx_time(net, card, x, args)
    result = {"inference_512_seconds": rows, "threads": torch.get_num_threads()}
    if args.with_gatys:
        result["gatys_default_vs_network"] = _gatys_ratio(next(iter(nets.values()))[0], args)
    return result


def _onnx_time(net, card: dict, x: torch.Tensor, args) -> float:
    from guided.fast.apply import OnnxRunner
    from guided.fast.export import export

    onnx_path = Path(args.tmp) / f"bench-{card['width']}.onnx"
    export(net, card, onnx_path, "onnx")
    runner = OnnxRunner(onnx_path)
    return _median_time(lambda: runner(x), args.repeats)


def _gatys_ratio(net, args) -> dict:
    """One Gatys `default` run (its own 512 px unless `--size`) on the first photo and the network at that size."""
    from guided.gatys import stylize

    photo = args.photos[0]
    options = {k: v for k, v in (("size", args.size), ("iterations", args.iterations)) if v is not None}
    start = time.perf_counter()
    result = stylize(photo, [args.style], preset="default", backbone=args.backbone, progress=False, **options)
    gatys_seconds = time.perf_counter() - start
    w, h = result.image.size
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        net_seconds = _median_time(lambda: net(x), args.repeats)
    return {"photo": Path(photo).name, "size": [w, h], "options": options, "gatys_seconds": gatys_seconds,
            "network_seconds": net_seconds, "speedup": gatys_seconds / net_seconds}


def _scorer(backbone: str, style: str):
    from guided.compare.metrics import Scorer
    from guided.guidance.objective import loss_view
    from guided.models.bundle import GuidanceModels
    from guided.models.vgg import VGGFeatures, resolve_backbone

    net, info = resolve_backbone(backbone)
    vgg = VGGFeatures(net, info.arch)
    models = GuidanceModels(vgg=vgg)

    def view(im):
        return loss_view(pil_to_tensor(im), SCORE_SIZE)

    painting = view(load_image(style))

    def score(image, photo) -> dict:  # the compare report's Gram and content distances
        scores = Scorer(models, view(photo), paintings01=[painting]).score(view(image))
        return {"gram": scores["gram"], "content": scores["content"]}
    return score, vgg


def gatys(args) -> dict:
    """Gatys `default` preset on each held-out photo: time and scores (the reference of `quality`)."""
    from guided.gatys import stylize

    score, _vgg = _scorer(args.backbone, args.style)
    out = {}
    for photo in args.photos:
        start = time.perf_counter()
        options = {k: v for k, v in (("size", args.size), ("iterations", args.iterations)) if v is not None}
        result = stylize(photo, [args.style], preset="default", backbone=args.backbone, progress=False, **options)
        seconds = time.perf_counter() - start
        result.save(Path(args.tmp) / f"gatys-{Path(photo).stem}.png")
        out[Path(photo).name] = {"seconds": seconds, "size": list(result.image.size), "options": options,
                                 "iterations_run": len(result.history),
                                 **score(result.image, load_image(photo))}
        print(Path(photo).name, out[Path(photo).name], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return {"gatys_default": out}


def quality(args) -> dict:
    """The network on held-out photos, at the size of each Gatys reference, vs that reference."""
    from guided.fast.apply import FastStylizer

    score, _ = _scorer(args.backbone, args.style)
    reference = json.loads(Path(args.gatys).read_text())
    stylizer = FastStylizer.load(args.net)
    rows = {}
    for name, ref in reference.items():
        photo = next(p for p in args.photos if Path(p).name == name)
        image = load_image(photo)
        result = stylizer(image, size=max(ref["size"]))
        result.save(Path(args.tmp) / f"fast-{Path(photo).stem}.png")
        net_scores = score(result.image, image)
        photo_scores = score(image, image)
        rows[name] = {"network": net_scores, "gatys": {k: ref[k] for k in ("gram", "content")}, "photo": photo_scores,
                      "gram_ratio": net_scores["gram"] / ref["gram"],
                      "content_ratio": net_scores["content"] / max(ref["content"], 1e-12),
                      "network_seconds": result.seconds, "gatys_seconds": ref["seconds"],
                      "speedup": ref["seconds"] / result.seconds}
        print(name, rows[name], flush=True)
    return {"quality": rows, "card": {k: stylizer.card.get(k) for k in ("iterations", "image_size", "batch_size",
                                                                        "training_seconds", "width", "weights")}}


def train_speed(args) -> dict:
    """Steps per second at 256 px, batch 4: fp32 vs bf16, contiguous vs channels_last; where the time goes."""
    from guided.fast import TrainConfig, train

    rows = {}
    for mp in ("no", "bf16"):
        for cl in (False, True):
            cfg = TrainConfig(iterations=1000, image_size=256, batch_size=4, workers=1, mixed_precision=mp,
                              channels_last=cl, backbone=args.backbone)
            result = train([args.style], args.data, None, cfg, progress=False, max_steps=args.steps + 1)
            del result
            # Steps after the first (warm-up), from the training history's own clock is not kept per step: time again.
            start = time.perf_counter()
            train([args.style], args.data, None, cfg, progress=False, max_steps=args.steps)
            rows[f"{'bf16' if mp == 'bf16' else 'fp32'}{' channels_last' if cl else ''}"] = \
                args.steps / (time.perf_counter() - start)
            print(rows, flush=True)
    return {"train_it_per_s_256_b4": rows, "note": "includes model/objective setup once per measurement"}


def profile_step(args) -> dict:
    """Seconds of each part of one training step at 256 px, batch 4 (fp32): network, VGG, backward."""
    from guided.fast.network import TransformerNet
    from guided.losses import content_loss, gram_loss, gram_matrix
    from guided.models.vgg import VGGFeatures, resolve_backbone

    net, info = resolve_backbone(args.backbone)
    vgg = VGGFeatures(net, info.arch)
    cfg = GuidanceConfig()
    tn = TransformerNet("half")
    x = torch.rand(4, 3, 256, 256)
    target = {k: gram_matrix(v) for k, v in vgg(x[:1], cfg.gram_layers).items()}
    parts: dict[str, list[float]] = {}

    def tick(name, start):
        parts.setdefault(name, []).append(time.perf_counter() - start)
        return time.perf_counter()

    for _ in range(args.steps + 1):
        t = time.perf_counter()
        y = tn(x)
        t = tick("network forward", t)
        with torch.no_grad():
            c = vgg(x, cfg.content_layers)
        t = tick("VGG forward, content targets", t)
        f = vgg(y, list(cfg.gram_layers) + list(cfg.content_layers))
        t = tick("VGG forward, output (to relu5_1)", t)
        loss = sum(gram_loss(f[k], target[k]) for k in cfg.gram_layers) + content_loss(f["relu4_2"], c["relu4_2"])
        t = tick("Gram + losses", t)
        loss.backward()
        tick("backward (VGG + network)", t)
    return {"step_profile_256_b4_seconds": {k: statistics.median(v[1:]) for k, v in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("speed", "gatys", "quality", "train-speed", "profile"))
    parser.add_argument("--net")
    parser.add_argument("--style", default=str(ROOT.parent / "shared" / "images" / "mosaic.jpg"))
    parser.add_argument("--photos", nargs="*", default=[str(ROOT.parent / "shared" / "images" / "photos" / n)
                                                         for n in ("chelsea.png", "rocket.jpg")])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "images" / "photos"))
    parser.add_argument("--gatys", help="JSON written by the gatys part")
    parser.add_argument("--backbone", default=str(VGG16))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, help="gatys (and speed --with-gatys): the default preset's size changed "
                                                   "to this long side (a check; the speed target is at 512)")
    parser.add_argument("--iterations", type=int, help="gatys (and speed --with-gatys): the default preset's "
                                                        "iterations changed to this")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--with-gatys", action="store_true",
                        help="speed part: also one Gatys default run on the first photo, for the speed-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp", default="out/bench_fast")
    parser.add_argument("--out", help="write the results (JSON) here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.tmp).mkdir(parents=True, exist_ok=True)
    part = {"speed": speed, "gatys": gatys, "quality": quality, "train-speed": train_speed,
            "profile": profile_step}[args.part]
    result = part(args)
    print(json.dumps(result, indent=1))
    if args.out and args.part != "gatys":
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
