"""guided.models.vgg against torchvision's own VGG, and weight resolution from files, caches and names."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from guided.errors import GuidedError, WeightsNotFoundError
from guided.models.vgg import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, layer_names, make_vgg_features, resolve_backbone


def torchvision_features(arch: str, seed: int) -> torch.nn.Sequential:
    """torchvision's own `vgg*(weights=None).features`: its builder and its initialisation, without
    constructing the 100M-parameter classifier (which takes seconds)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(seed)
    features = make_layers(cfgs["E" if arch == "vgg19" else "D"], batch_norm=False)
    for m in features.modules():  # as torchvision.models.VGG.__init__
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.constant_(m.bias, 0)
    return features


@pytest.fixture(scope="module")
def tv_vgg19():
    return torchvision_features("vgg19", 0).eval()


@pytest.fixture(scope="module")
def vgg16_state():
    return {k: v.clone() for k, v in torchvision_features("vgg16", 1).state_dict().items()}


def _torchvision_outputs(features, x):
    """Every module's output of torchvision's features, cloned before the next in-place ReLU."""
    outs = []
    with torch.no_grad():
        for module in features:
            x = module(x)
            outs.append(x.clone())
    return outs


def test_named_layers_equal_torchvision_indexing(tv_vgg19):
    torch.manual_seed(2)
    image = torch.rand(1, 3, 32, 48)
    normalized = (image - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = _torchvision_outputs(tv_vgg19, normalized)
    names = layer_names("vgg19")
    assert len(names) == len(tv_vgg19) == 37
    feats = VGGFeatures(tv_vgg19, "vgg19")
    with torch.no_grad():
        out = feats(image, names)
    for i, name in enumerate(names):
        assert torch.allclose(out[name], expected[i], atol=1e-5, rtol=1e-5), name
    # conv outputs are pre-ReLU (torchvision's in-place ReLU would have overwritten them)
    assert (out["conv4_2"] < 0).any() and not (out["relu4_2"] < 0).any()
    # the same layers by torchvision index
    with torch.no_grad():
        by_index = feats(normalized, [0, 25, 28], normalized=True)
    assert torch.allclose(by_index[25], expected[25], atol=1e-5)


def test_forward_stops_at_the_deepest_requested_layer(tv_vgg19):
    feats = VGGFeatures(tv_vgg19, "vgg19")
    called = []
    handles = [m.register_forward_hook(lambda m, i, o, k=k: called.append(k)) for k, m in enumerate(tv_vgg19)]
    try:
        with torch.no_grad():
            feats(torch.rand(1, 3, 16, 16), ["relu2_1", "relu1_1"])
    finally:
        for h in handles:
            h.remove()
    # ReLUs are applied functionally, so only convolutions and pools fire hooks: conv2_1 (5) ran,
    # conv2_2 (7) did not.
    assert layer_names("vgg19").index("relu2_1") == 6
    assert 5 in called and max(called) < 7


def test_unknown_layer_names_the_layer():
    feats = VGGFeatures(make_vgg_features("vgg16", width=1 / 16), "vgg16")
    with pytest.raises(GuidedError, match="relu4_4"):
        feats(torch.rand(1, 3, 16, 16), ["relu4_4"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_resolve_local_file(tmp_path, vgg16_state, suffix):
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".safetensors":
        save_file(vgg16_state, str(path))
    else:
        torch.save(vgg16_state, path)
    net, info = resolve_backbone(path)
    assert info.arch == "vgg16" and not info.random and info.sha256 and len(info.sha256) == 64
    assert str(path) in info.source
    for k, v in net.state_dict().items():
        assert torch.equal(v, vgg16_state[k]), k


def test_resolve_full_model_state_dict_with_features_prefix(tmp_path, vgg16_state):
    full = {f"features.{k}": v for k, v in vgg16_state.items()}
    full["classifier.0.weight"] = torch.zeros(4, 4)  # the classifier is ignored
    path = tmp_path / "full.pth"
    torch.save(full, path)
    net, info = resolve_backbone(str(path))
    assert info.arch == "vgg16"
    assert torch.equal(net[0].weight, vgg16_state["0.weight"])


def test_resolve_through_environment_variable(tmp_path, vgg16_state, monkeypatch):
    path = tmp_path / "env.safetensors"
    save_file(vgg16_state, str(path))
    monkeypatch.setenv("GUIDED_VGG_WEIGHTS", str(path))
    _, info = resolve_backbone(None)
    assert info.arch == "vgg16" and str(path) in info.source


def test_wrong_shapes_name_the_file(tmp_path):
    path = tmp_path / "narrow.safetensors"
    save_file(make_vgg_features("vgg16", width=0.5).state_dict(), str(path))
    with pytest.raises(GuidedError, match="narrow.safetensors"):
        resolve_backbone(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(GuidedError, match="nothere.safetensors"):
        resolve_backbone(tmp_path / "nothere.safetensors")


def test_pretrained_vgg19_without_cache_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_backbone("vgg19")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in message
    assert "IMAGENET1K_V1" in message and "--backbone" in message


def test_no_backbone_never_falls_back_to_random(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("GUIDED_VGG_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError):
        resolve_backbone(None)


def test_random_backbone_is_seeded_and_announced(caplog):
    a, info = resolve_backbone("vgg19-random", seed=5)
    b, _ = resolve_backbone("vgg19-random", seed=5)
    c, _ = resolve_backbone("vgg19-random", seed=6)
    assert info.random and info.arch == "vgg19"
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)
    # announced as a warning: it reaches stderr by default (logging's last-resort handler, or the CLI's)
    assert any("RANDOM" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
