"""Fast stylization: a feed-forward network per style (Johnson et al. 2016), trained with our objective.

`network` the TransformerNet, `data` the training photos, `config` the torch-free `TrainConfig`,
`training` the training loop, `checkpoint` the safetensors files and model card, `apply` stylizing with
a network (PyTorch or ONNX), `export` ONNX / torch.export / TorchScript files.

    from guided.fast import TrainConfig, train, FastStylizer
    train(["mosaic.jpg"], "photos/", "mosaic.safetensors", TrainConfig(iterations=2000))
    FastStylizer.load("mosaic.safetensors")("photo.jpg").save("out.png")

Names are imported on first use, so that `guided.fast.config` (the CLI's defaults) imports no torch.
"""
from __future__ import annotations

import importlib

_NAMES = {"TrainConfig": "config", "WIDTHS": "config", "TransformerNet": "network", "train": "training",
          "TrainResult": "training", "load_network": "checkpoint", "read_card": "checkpoint",
          "save_network": "checkpoint",
          "FastStylizer": "apply"}

__all__ = [
    "WIDTHS",
    "FastStylizer",
    "TrainConfig",
    "TrainResult",
    "TransformerNet",
    "load_network",
    "read_card",
    "save_network",
    "train",
]


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'guided.fast' has no attribute {name!r}")
    return getattr(importlib.import_module(f"guided.fast.{_NAMES[name]}"), name)
