"""The classic path: the d2l preset against a plain implementation of the chapter, and behaviour."""
from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
import torchvision
from factories import waves as _image
from PIL import Image
from torch import nn

from guided.errors import GuidedError, WeightsNotFoundError
from guided.gatys import GatysObjective, plot_history, stylize
from guided.gatys.images import preprocess
from guided.gatys.presets import D2L, PRESETS, override
from guided.io.images import pil_to_tensor
from guided.losses import gram_matrix
from guided.models.vgg import VGGFeatures, make_vgg_features

TERMS = ("content", "style", "tv", "total")




@pytest.fixture(scope="module")
def content():
    return _image(1, (60, 80))


@pytest.fixture(scope="module")
def style():
    return _image(2, (70, 50))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return make_vgg_features("vgg19", width=1 / 16)


# --- an independent, plain implementation of Dive into Deep Learning §14.12 (PyTorch) ---------
# Intentional copy: bench/bench_gatys.py (`chapter_run`) has the same plain loop. The test's
# reference must not depend on the library or on the bench, so each keeps its own.

def chapter_run(content_img, style_img, vgg19_features, image_shape, lr=0.3, num_epochs=20, lr_decay_epoch=50):
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    transforms = torchvision.transforms.Compose([
        torchvision.transforms.Resize(image_shape), torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize(mean=mean, std=std)])
    style_layers, content_layers = [0, 5, 10, 19, 28], [25]
    net = nn.Sequential(*[vgg19_features[i] for i in range(max(content_layers + style_layers) + 1)])

    def extract_features(X):
        contents, styles = [], []
        for i in range(len(net)):
            X = net[i](X)  # torchvision's in-place ReLUs rewrite the stored conv outputs
            if i in style_layers:
                styles.append(X)
            if i in content_layers:
                contents.append(X)
        return contents, styles

    def gram(X):
        num_channels, n = X.shape[1], X.numel() // X.shape[1]
        X = X.reshape((num_channels, n))
        return torch.matmul(X, X.T) / (num_channels * n)

    content_X = transforms(content_img).unsqueeze(0)
    contents_Y, _ = extract_features(content_X)
    _, styles_Y = extract_features(transforms(style_img).unsqueeze(0))
    styles_Y_gram = [gram(Y) for Y in styles_Y]
    X = nn.Parameter(content_X.clone())
    trainer = torch.optim.Adam([X], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer, lr_decay_epoch, 0.8)
    history = []
    for _ in range(num_epochs):
        trainer.zero_grad()
        contents_Y_hat, styles_Y_hat = extract_features(X)
        contents_l = [torch.square(Y_hat - Y.detach()).mean() * 1 for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
        styles_l = [torch.square(gram(Y_hat) - Y.detach()).mean() * 1e4
                    for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
        tv_l = 0.5 * ((X[:, :, 1:, :] - X[:, :, :-1, :]).abs().mean()
                      + (X[:, :, :, 1:] - X[:, :, :, :-1]).abs().mean()) * 10
        total = sum(styles_l + contents_l + [tv_l])
        history.append({"content": sum(contents_l).item(), "style": sum(styles_l).item(),
                        "tv": tv_l.item(), "total": total.item()})
        total.backward()
        trainer.step()
        scheduler.step()
    return X.detach(), history


def test_d2l_preset_matches_the_chapter_for_20_iterations(shared_images):
    from test_vgg import torchvision_features

    vgg = torchvision_features("vgg19", 0)  # torchvision's vgg19(weights=None).features, seeded
    c = Image.open(shared_images / "rainier.jpg").convert("RGB")
    s = Image.open(shared_images / "autumn-oak.jpg").convert("RGB")
    expected_x, expected = chapter_run(c, s, vgg, (60, 90), num_epochs=20)
    result = stylize(c, s, preset="d2l", backbone=vgg, size=(60, 90), iterations=20, progress=False)
    assert len(result.history) == 20
    for i, (want, got) in enumerate(zip(expected, result.history)):
        for term in TERMS:
            assert got[term] == pytest.approx(want[term], rel=1e-3, abs=1e-9), (i, term)
    assert result.history[-1]["total"] < 0.7 * result.history[0]["total"]  # loss goes down
    assert result.image.size == (90, 60)
    # the chapter's postprocess: de-normalise and clamp
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    # 20 steps later the images agree to the last few grey levels (not bit for bit: float ordering)
    want01 = (expected_x[0] * std + mean).clamp(0, 1)
    got01 = pil_to_tensor(result.image)[0]
    assert (want01 - got01).abs().mean() < 2 / 255


def test_d2l_preset_is_the_chapter_configuration():
    assert D2L.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "conv5_1")
    assert D2L.content_layers == ("relu4_4",)  # vgg19().features[25] = conv4_4, ReLU'd in place
    assert (D2L.content_weight, D2L.style_weight, D2L.tv_weight) == (1.0, 1e4, 10.0)
    assert (D2L.size, D2L.optimizer, D2L.lr, D2L.iterations, D2L.lr_step, D2L.lr_gamma) == (
        (300, 450), "adam", 0.3, 500, 50, 0.8)
    assert D2L.init == "content" and D2L.style_scale is None and D2L.mixed_precision == "no"
    fast = PRESETS["d2l-fast"]
    for name in ("style_layers", "content_layers", "content_weight", "style_weight", "tv_weight", "size"):
        assert getattr(fast, name) == getattr(D2L, name), name


def test_history_is_computed_before_each_step(content, style, tiny):
    r = stylize(content, style, preset="d2l", backbone=tiny, size=32, iterations=3, progress=False)
    assert [h["iteration"] for h in r.history] == [0, 1, 2]
    assert r.history[0]["content"] == 0.0  # content init: the first loss is before any step
    for h in r.history:
        assert h["total"] == pytest.approx(h["content"] + h["style"] + h["tv"], rel=1e-6)


def test_same_seed_same_image_other_seed_other_image(content, style, tiny):
    kw = dict(preset="d2l", backbone=tiny, size=32, iterations=4, init="noise", progress=False)
    a = stylize(content, style, seed=3, **kw).image
    b = stylize(content, style, seed=3, **kw).image
    c = stylize(content, style, seed=4, **kw).image
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "prox"])
def test_loss_goes_down(content, style, tiny, optimizer):
    r = stylize(content, style, preset="d2l", backbone=tiny, size=40, iterations=15, optimizer=optimizer,
                init="noise", progress=False)
    assert r.history[-1]["total"] < 0.5 * r.history[0]["total"]


def test_bf16_runs_and_is_finite(content, style, tiny):
    r32 = stylize(content, style, preset="d2l", backbone=tiny, size=40, iterations=8, progress=False)
    r16 = stylize(content, style, preset="d2l", backbone=tiny, size=40, iterations=8, mixed_precision="bf16",
                  progress=False)
    assert r16.metadata["precision"] == "bf16" and not r16.stopped_early
    assert all(math.isfinite(h[t]) for h in r16.history for t in TERMS)
    assert r16.history[-1]["total"] < r16.history[0]["total"]
    assert r16.history[-1]["total"] == pytest.approx(r32.history[-1]["total"], rel=0.1)


def test_fp16_on_cpu_is_a_clear_error(content, style, tiny):
    with pytest.raises(GuidedError, match="fp16"):
        stylize(content, style, preset="d2l", backbone=tiny, size=32, iterations=1, mixed_precision="fp16",
                device="cpu", progress=False)


def test_non_finite_loss_stops_and_keeps_the_last_finite_image(content, style, tiny):
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 2 + 5 else output  # 2 target passes, then 5 steps

    tiny[0].register_forward_hook(poison)
    seen = []
    with pytest.warns(RuntimeWarning, match="non-finite"):
        r = stylize(content, style, preset="d2l", backbone=tiny, size=32, iterations=20, progress=False,
                    callback=lambda i, x, losses: seen.append(x.clone()))
    assert r.stopped_early and "non-finite" in r.stop_reason
    assert len(r.history) == 5 and r.metadata["stopped_early"] is True
    assert torch.isfinite(r.tensor).all()
    # the kept image is the one whose loss was last finite: the state before the 5th step
    kept = pil_to_tensor(r.image)[0]
    assert (kept - seen[3][0]).abs().max() < 1.5 / 255


def test_missing_pretrained_weights_never_fall_back_to_random(content, style, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="vgg19-dcbb9e9d.pth"):
        stylize(content, style, preset="d2l", size=32, iterations=1, progress=False)


def test_blended_style_targets(content, style, tiny):
    torch.manual_seed(0)
    feats = VGGFeatures(tiny, "vgg19")
    obj = GatysObjective(feats, D2L)
    a, b = preprocess(style, (32, 32)), preprocess(content, (32, 32))
    obj.set_targets(b, [a, b], [1.0, 3.0], contextlib.nullcontext)
    for layer in D2L.style_layers:
        with torch.no_grad():
            ga = gram_matrix(feats(a, [layer], normalized=True)[layer])
            gb = gram_matrix(feats(b, [layer], normalized=True)[layer])
        assert torch.allclose(obj.gram_targets[layer], 0.25 * ga + 0.75 * gb, rtol=1e-5, atol=1e-8)
    r = stylize(content, [style, content], style_weights=[1, 3], preset="d2l", backbone=tiny, size=32,
                iterations=2, progress=False)
    assert r.metadata["parameters"]["style_weights"] == [1.0, 3.0]
    with pytest.raises(GuidedError, match="`style_weights` has 1 values for 2"):
        stylize(content, [style, content], style_weights=[1], backbone=tiny, progress=False)


def test_preserve_color_keeps_the_content_chroma(content, style, tiny):
    from guided.color import rgb_to_ycbcr

    r = stylize(content, style, preset="d2l", backbone=tiny, size=(30, 40), iterations=5, preserve_color=True,
                init="noise", progress=False)
    got = rgb_to_ycbcr(pil_to_tensor(r.image))[:, 1:]
    want = rgb_to_ycbcr(pil_to_tensor(content.resize((40, 30), Image.BILINEAR)))[:, 1:]
    assert (got - want).abs().mean() < 0.03


def test_options_multiscale_style_stats_layer_weights_save_every(content, style, tiny, tmp_path):
    r = stylize(content, style, preset="d2l", backbone=tiny, size=48, iterations=6, multiscale=2,
                init="style-stats", style_scale=0.5, layer_weights=[1, 0, 0, 0, 2], save_every=2,
                save_dir=tmp_path / "steps", progress=False)
    assert [h["size"] for h in r.history] == [[18, 24]] * 3 + [[36, 48]] * 3  # even split, half size first
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == [
        "gatys_00002.png", "gatys_00004.png", "gatys_00006.png"]
    assert r.preset.layer_weights == (1, 0, 0, 0, 2)
    with pytest.raises(GuidedError, match="`layer_weights` has 2 entries"):
        stylize(content, style, backbone=tiny, layer_weights=[1, 2], progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"size": 0}, "`size`"), ({"size": (10, "a")}, "`size`"), ({"iterations": -1}, "`iterations`"),
    ({"preset": "nope"}, "`preset`"), ({"optimizer": "sgd"}, "`optimizer`"), ({"init": "zeros"}, "`init`"),
])
def test_bad_options_name_themselves(content, style, tiny, kwargs, match):
    with pytest.raises(GuidedError, match=match):
        stylize(content, style, backbone=tiny, progress=False, **kwargs)


def test_bad_image_is_an_error_naming_the_file(tmp_path, style, tiny):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(GuidedError, match="broken.png"):
        stylize(bad, style, backbone=tiny, size=32, iterations=1, progress=False)


def test_random_backbone_is_in_the_metadata_and_metadata_is_json(content, style, caplog):
    r = stylize(content, style, preset="d2l", backbone="vgg19-random", size=32, iterations=2, progress=False)
    assert r.backbone_info.random and r.metadata["random_backbone"] is True
    assert r.metadata["models"]["backbone"]["random"] is True
    assert len(r.metadata["losses"]) == 2 and r.metadata["kind"] == "gatys"
    json.dumps(r.metadata)
    # announced as a warning: it reaches stderr by default (logging's last-resort handler, or the CLI's)
    assert any("RANDOM" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_plot_history_writes_a_png(tmp_path):
    history = [{"iteration": i, "content": 1 / (i + 1), "style": 2 / (i + 1), "tv": 0.1, "total": 3.1}
               for i in range(5)]
    path = plot_history(history, tmp_path / "curve.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_override_keeps_one_source_of_defaults():
    p = override(PRESETS["d2l"], optimizer="lbfgs")
    assert (p.lr, p.lr_step) == (1.0, 0)  # L-BFGS' own step size, not Adam's 0.3
    assert override(PRESETS["d2l"], iterations=None).iterations == 500


def test_real_vgg16_default_reduces_style_loss(shared_images, vgg16_weights):
    r = stylize(shared_images / "rainier.jpg", shared_images / "autumn-oak.jpg", preset="default",
                backbone=vgg16_weights, size=96, iterations=20, multiscale=1, progress=False)
    assert not r.backbone_info.random
    assert r.history[-1]["style"] < 0.2 * r.history[0]["style"]
    assert r.history[-1]["content"] > 0


def test_relative_losses_do_not_depend_on_the_activation_scale(content, style, tiny):
    """Biases are zero in make_vgg_features, so scaling the first convolution scales every activation:
    absolute losses change by the factor squared (content) or to the fourth (Gram), relative ones not."""
    import copy
    from dataclasses import replace

    louder = copy.deepcopy(tiny)
    with torch.no_grad():
        louder[0].weight.mul_(10.0)
    c, s = preprocess(content, (32, 32)), preprocess(style, (32, 32))
    x = c + 0.3 * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))
    out = {}
    for relative in (False, True):
        p = replace(D2L, relative_losses=relative)
        for name, net in (("tiny", tiny), ("louder", louder)):
            obj = GatysObjective(VGGFeatures(net, "vgg19"), p)
            obj.set_targets(c, [s], [1.0], contextlib.nullcontext)
            with torch.no_grad():
                out[relative, name] = {k: float(v) for k, v in obj(x, contextlib.nullcontext).items()}
    assert out[False, "louder"]["content"] == pytest.approx(100 * out[False, "tiny"]["content"], rel=1e-3)
    assert out[False, "louder"]["style"] == pytest.approx(1e4 * out[False, "tiny"]["style"], rel=1e-3)
    for term in ("content", "style", "tv"):
        assert out[True, "louder"][term] == pytest.approx(out[True, "tiny"][term], rel=1e-3), term
