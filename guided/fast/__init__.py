"""Fast stylization: a feed-forward network per style (Johnson et al. 2016), trained with our objective.

`network` the TransformerNet, `data` the training photos, `train` the training loop and its
`TrainConfig`, `checkpoint` the safetensors files and model card, `apply` stylizing with a network
(PyTorch or ONNX), `export` ONNX / torch.export / TorchScript files.

    from guided.fast import TrainConfig, train, FastStylizer
    train(["mosaic.jpg"], "photos/", "mosaic.safetensors", TrainConfig(iterations=2000))
    FastStylizer.load("mosaic.safetensors")("photo.jpg").image.save("out.png")
"""
from guided.fast.checkpoint import load_network, read_card, save_network
from guided.fast.network import WIDTHS, TransformerNet
from guided.fast.train import TrainConfig, TrainResult, train

__all__ = ["WIDTHS", "TrainConfig", "TrainResult", "TransformerNet", "load_network", "read_card", "save_network",
           "train"]
