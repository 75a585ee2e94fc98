"""`make demo`: the platform's main jobs on inputs that ship with guided's dependencies.

Content: matplotlib's sample photo of Grace Hopper. Style: a painting guided paints procedurally.
Real weights are used where they are on this machine (torch hub cache, $GUIDED_VGG_WEIGHTS,
the Hugging Face cache); otherwise the demo says loudly that it uses random or tiny models.
Writes images, a compare report and `report.md` to the output folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

LINE = "=" * 78


def _notice(text: str) -> None:
    print(f"\n{LINE}\nNOTICE: {text}\n{LINE}", file=sys.stderr)


def choose_backbone() -> tuple[str, bool]:
    """($GUIDED_VGG_WEIGHTS or 'vgg19' when its weights are present, else 'vgg19-random'; real?)."""
    from guided.constants import ENV_VGG_WEIGHTS
    from guided.models.checkpoints import torch_hub_checkpoint
    from guided.models.vgg import URLS

    if os.environ.get(ENV_VGG_WEIGHTS):
        return os.environ[ENV_VGG_WEIGHTS], True
    if torch_hub_checkpoint(URLS["vgg19"]).is_file():
        return "vgg19", True
    return "vgg19-random", False


def diffusion_models_present() -> bool:
    """Whether every model `guided stylize` needs by default is on this machine."""
    from guided.models.status import model_status

    return all(row.present for row in model_status() if row.feature == "stylize" and row.required)


def run(out: Path, *, quick: bool = False) -> Path:
    from guided import gatys
    from guided.compare.run import compare
    from guided.demo.assets import demo_photo, painted_style
    from guided.io.images import save_image
    from guided.stylize import Stylizer

    out.mkdir(parents=True, exist_ok=True)
    photo, style = demo_photo(), painted_style()
    save_image(photo, out / "content.png", metadata={"kind": "demo input", "source": "matplotlib grace_hopper.jpg"})
    save_image(style, out / "style.png", metadata={"kind": "demo input", "source": "guided.demo.assets.painted_style"})
    lines = ["# guided demo", "",
             "Content: matplotlib's sample photo (grace_hopper.jpg). Style: a procedural painting.", ""]

    # 1. Classic neural style transfer
    backbone, real = choose_backbone()
    if not real:
        _notice("no VGG weights on this machine (torch hub cache or $GUIDED_VGG_WEIGHTS): the classic path runs "
                "on a RANDOM VGG-19 (explicit 'vgg19-random'). The picture is not a real stylization. "
                "`guided models` says how to get the weights.")
    size, iterations = (64, 5) if quick else (256, None)
    start = time.perf_counter()
    result = gatys.stylize(photo, [style], preset="default", backbone=backbone, size=size, iterations=iterations)
    result.save(out / "gatys.png")
    gatys.plot_history(result.history, out / "gatys_losses.png")
    h = result.history[-1]
    lines += ["## Classic neural style transfer (preset `default`)", "",
              f"- backbone: {result.backbone_info.describe()}",
              f"- {len(result.history)} iterations in {time.perf_counter() - start:.1f} s; final content "
              f"{h['content']:.4g}, style {h['style']:.4g}, tv {h['tv']:.4g}",
              "- `gatys.png`, loss curves `gatys_losses.png`", ""]

    # 2. Guided Stable Diffusion img2img
    tiny = not diffusion_models_present()
    if tiny:
        _notice("Stable Diffusion / CLIP / VGG weights are not all on this machine: the diffusion path runs on "
                "TINY RANDOM models (a smoke test). `guided models` lists what is missing and how to get it.")
    stylizer = Stylizer.load(tiny=tiny)
    prompt = "an oil painting with warm autumn colours and thick brush strokes"
    sty = stylizer.run(photo, prompt=prompt, style=[style], steps=4 if quick else None)
    save_image(sty.image, out / "stylize.png", metadata=sty.metadata)
    models = "tiny" if tiny else "default"
    lines += [f"## Guided Stable Diffusion img2img (models: {models})", "", f"- prompt: {prompt!r}",
              f"- {sty.seconds:.1f} s; final losses: " + ", ".join(f"{k} {v:.4g}" for k, v in sty.final_losses.items()),
              "- `stylize.png`", ""]

    # 3. Compare both paradigms, with metrics and an HTML report
    report = compare(photo, styles=[style], prompt=prompt, tiny=tiny, out_dir=out / "compare", stylizer=stylizer,
                     steps=4 if quick else None,
                     gatys_options={"size": size, **({"iterations": iterations} if iterations else {})})
    lines += ["## Compare", "", f"- report: `compare/report.html` ({len(report.rows)} outputs scored)", ""]
    if tiny or not real:
        lines += ["**Smoke run:** random or tiny models were used where real weights are missing; the pictures "
                  "and numbers test the install, they are not results.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"demo written to {out}/ (report.md, gatys.png, stylize.png, compare/report.html)")
    return path


def main(argv: list[str] | None = None) -> int:
    from guided.errors import GuidedError

    ap = argparse.ArgumentParser(prog="python -m guided.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (used by the tests)")
    args = ap.parse_args(argv)
    try:
        run(args.out, quick=args.quick)
    except GuidedError as exc:
        print(f"guided demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
