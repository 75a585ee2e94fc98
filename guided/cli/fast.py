"""`guided fast NET PHOTO... -o OUT`: stylize photos with a trained network in one forward pass."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "fast", help="stylize photos in one pass with a network from `guided train` (.safetensors or .onnx)",
        description="Stylize one photo, several, or every image of a folder with a fast network. NET is a "
                    ".safetensors file written by `guided train`, or an .onnx file written by `guided export` "
                    "(run by onnxruntime: no torch model needed). Outputs carry the usual manifest, with the "
                    "network's hash and model card.")
    p.add_argument("net", metavar="NET", help="network file (.safetensors or .onnx)")
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photo(s) or a folder of photos")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output image (one photo) or folder (several photos, or a folder)")
    p.add_argument("--size", type=int, help="long side of the output in px (default: each photo's own size)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours (luminance-only)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None,
                   help="PyTorch networks only: bf16 (CPU or GPU) or fp16 (GPU) (default no)")
    p.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: the best available)")
    p.add_argument("--recursive", "-r", action="store_true", help="with a folder: its subfolders too")
    p.set_defaults(func=run)


def _plan(photos: list[str], output: Path, recursive: bool) -> list[tuple[Path, Path]]:
    """(input, output) pairs; a folder input keeps its relative layout under OUT."""
    from guided.errors import GuidedError
    from guided.io.discovery import find_images, image_extensions
    from guided.io.images import ALLOWED_FORMATS, SAVE_FORMATS

    single = len(photos) == 1 and not Path(photos[0]).is_dir()
    if single:
        if output.is_dir():
            raise GuidedError(f"`--output` '{output}' is a folder; for one photo give a file name such as out.png")
        if output.suffix.lower() not in SAVE_FORMATS:
            raise GuidedError(f"`--output` must end in {', '.join(SAVE_FORMATS)}, got '{output}'")
        if not Path(photos[0]).is_file():
            raise GuidedError(f"photo '{photos[0]}' does not exist")
        from guided.io.outputs import Output, check_outputs

        check_outputs([Output(output, "--output")], inputs=[photos[0]])
        return [(Path(photos[0]), output)]
    if output.exists() and not output.is_dir():
        raise GuidedError(f"`--output` '{output}' is a file; with several photos or a folder give a folder")
    pairs = []
    for item in photos:
        path = Path(item)
        if path.is_dir():
            found = find_images(path, extensions=image_extensions(ALLOWED_FORMATS), recursive=recursive, exclude=output)
            pairs += [(path / rel, output / f"{rel}.fast.png") for rel in found]
        elif path.is_file():
            pairs.append((path, output / f"{path.name}.fast.png"))
        else:
            raise GuidedError(f"photo '{item}' does not exist")
    if not pairs:
        raise GuidedError(f"no images found in {', '.join(photos)}")
    return pairs


def run(args: argparse.Namespace) -> int:
    import sys

    from guided.errors import GuidedError
    from guided.fast.apply import FastStylizer

    pairs = _plan(args.photos, Path(args.output), args.recursive)
    stylizer = FastStylizer.load(args.net, device=args.device, mixed_precision=args.mixed_precision)
    failed = 0
    for photo, out in pairs:
        try:
            result = stylizer(photo, size=args.size, preserve_color=args.preserve_color)
        except GuidedError as exc:
            if len(pairs) == 1:
                raise
            failed += 1
            print(f"guided: skipped: {exc}", file=sys.stderr)
            continue
        result.save(out)
        print(f"wrote {out} ({result.image.width}x{result.image.height}, {result.seconds * 1000:.0f} ms, "
              f"{stylizer.backend})")
    if failed:
        print(f"guided fast: {len(pairs) - failed} written, {failed} failed", file=sys.stderr)
        return 1 if failed < len(pairs) else 2
    return 0
