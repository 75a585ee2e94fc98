"""`guided export NET --format onnx|pt2|torchscript -o FILE`: a fast network for deployment."""
from __future__ import annotations

import argparse

FORMATS = ("onnx", "pt2", "torchscript")  # guided.fast.export.FORMATS, without importing torch for --help


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a fast network to ONNX, torch.export (pt2) or TorchScript",
        description="Write a network from `guided train` in a format anyone can run without our code. Contract: "
                    "input float32 NCHW RGB in [0, 1], any height and width (>= 8); output the same shape in [0, 1]; "
                    "padding and cropping happen inside the graph; the model card is in the file's metadata. "
                    "Every export is checked against PyTorch at two non-square sizes (one not a multiple of 4) and "
                    "the largest difference is printed. onnx needs `pip install guided[export]`; torchscript is a "
                    "legacy format, deprecated upstream.")
    p.add_argument("net", metavar="NET.safetensors", help="a network written by `guided train`")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (dynamic H/W), pt2 (torch.export), "
                                                                   "torchscript (legacy)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the file to write (.onnx, .pt2, .pt)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from guided.fast.checkpoint import load_network
    from guided.fast.export import check_output, export

    check_output(args.output, args.format)
    from pathlib import Path

    from guided.io.outputs import Output, check_outputs

    check_outputs([Output(Path(args.output), "--output", kind="file")], inputs=[args.net])
    net, card = load_network(args.net)
    result = export(net, card, args.output, args.format)
    diffs = ", ".join(f"{size} {diff:.2g}" for size, diff in result.max_abs_diff.items())
    for note in result.notes:
        print(f"guided: note: {note}", file=sys.stderr)
    print(f"wrote {result.path} ({args.format}; max |difference| from PyTorch: {diffs})")
    return 0
