"""Metrics against their formulas: on a fake CLIP whose embeddings are known, on the tiny random
CLIP and VGG, and LPIPS against the `lpips` package with the same backbone weights."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from guided.compare import metrics as metrics
from guided.errors import GuidedError
from guided.losses import gram_matrix
from guided.testing import tiny_guidance_models


class ColourClip:
    """A CLIP stand-in with known embeddings: an image is its mean colour minus grey, a text a fixed vector."""

    TEXTS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "a photo": [0.0, 0.0, 1.0],
             "same": [1.0, 1.0, 0.0]}

    def __init__(self):
        self.mean = torch.zeros(1)

    def encode_image(self, image01):
        return F.normalize(image01.float().mean(dim=(2, 3)) - 0.5, dim=-1)

    def encode_text(self, prompts):
        return F.normalize(torch.tensor([self.TEXTS[p] for p in prompts]), dim=-1)


def solid(r: float, g: float, b: float, size: int = 16) -> torch.Tensor:
    return torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(1, 3, size, size).clone()


@pytest.fixture(scope="module")
def tiny():
    return tiny_guidance_models(0, decoder=False)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 48, 64, generator=g), torch.rand(1, 3, 48, 64, generator=g)


def test_clip_score_is_100_cos_clamped_at_zero():
    clip = ColourClip()
    assert metrics.clip_score(clip, solid(1.0, 0.5, 0.5), "red") == pytest.approx(100.0)
    # (0.5, 0.5+0.3, 0.5+0.4) -> embedding (0, .6, .8): cos with green is 0.6
    assert metrics.clip_score(clip, solid(0.5, 0.8, 0.9), "green") == pytest.approx(60.0, abs=1e-4)
    # opposite direction: cos -1, CLIPScore clamps to 0
    assert metrics.clip_score(clip, solid(0.0, 0.5, 0.5), "red") == 0.0


def test_clip_score_matches_formula_on_tiny_clip(tiny, images):
    a, _ = images
    with torch.no_grad():
        cos = float((tiny.clip.encode_image(a) * tiny.clip.encode_text(["an oil painting"])).sum())
    assert metrics.clip_score(tiny.clip, a, "an oil painting") == pytest.approx(100 * max(cos, 0.0), abs=1e-4)


def test_clip_image_similarity_identical_is_one(tiny, images):
    a, b = images
    assert metrics.clip_image_similarity(tiny.clip, a, a.clone()) == pytest.approx(1.0, abs=1e-5)
    other = metrics.clip_image_similarity(tiny.clip, a, b)
    assert -1.0 <= other < 1.0 - 1e-6


def test_directional_similarity_formula():
    clip = ColourClip()
    src, out = solid(0.5, 0.5, 1.0), solid(1.0, 0.5, 0.5)  # embeddings (0, 0, 1) -> (1, 0, 0)
    # image change (1, 0, -1) and text change red - "a photo" = (1, 0, -1): same direction
    assert metrics.clip_directional_similarity(clip, src, out, "a photo", "red") == pytest.approx(1.0, abs=1e-6)
    # text change green - photo = (0, 1, -1): cos = 1 / 2
    assert metrics.clip_directional_similarity(clip, src, out, "a photo", "green") == pytest.approx(0.5, abs=1e-6)
    # reversed edit: opposite direction
    assert metrics.clip_directional_similarity(clip, out, src, "a photo", "red") == pytest.approx(-1.0, abs=1e-6)


def test_directional_similarity_of_identity_edit_is_zero_not_nan(tiny, images):
    a, _ = images
    value = metrics.clip_directional_similarity(tiny.clip, a, a.clone(), "a photo", "an oil painting")
    assert value == 0.0 and not math.isnan(value)
    same_text = metrics.clip_directional_similarity(ColourClip(), solid(0.5, 0.5, 1.0), solid(1.0, 0.5, 0.5),
                                                    "red", "red")
    assert same_text == 0.0


def test_gram_and_content_distance_zero_for_identical_and_match_formula(tiny, images):
    a, b = images
    layers = ["relu1_1", "relu3_1"]
    assert metrics.gram_distance(tiny.vgg, a, a.clone(), layers) == 0.0
    assert metrics.content_distance(tiny.vgg, a, a.clone(), layers) == 0.0
    with torch.no_grad():
        fa, fb = tiny.vgg(a, layers), tiny.vgg(b, layers)
    gram = sum(float(F.mse_loss(gram_matrix(fa[k]), gram_matrix(fb[k]))) for k in layers) / len(layers)
    content = sum(float(F.mse_loss(fa[k], fb[k])) for k in layers) / len(layers)
    assert metrics.gram_distance(tiny.vgg, a, b, layers) == pytest.approx(gram, rel=1e-5)
    assert metrics.content_distance(tiny.vgg, a, b, layers) == pytest.approx(content, rel=1e-5)
    assert gram > 0 and content > 0


def test_gram_targets_blend_and_content_resize(tiny, images):
    a, b = images
    layers = ["relu2_1"]
    half = metrics.gram_targets(tiny.vgg, [a, b], layers, [1.0, 1.0])
    with torch.no_grad():
        expected = 0.5 * gram_matrix(tiny.vgg(a, layers)["relu2_1"]) + 0.5 * gram_matrix(tiny.vgg(b, layers)["relu2_1"])
    torch.testing.assert_close(half["relu2_1"], expected)
    only_a = metrics.gram_targets(tiny.vgg, [a, b], layers, [1.0, 0.0])
    assert metrics.gram_distance(tiny.vgg, a, only_a, layers) == pytest.approx(0.0, abs=1e-12)
    # b at another size is resized to a's before comparing
    big = F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=False, antialias=True)
    assert metrics.content_distance(tiny.vgg, a, big, layers) < metrics.content_distance(tiny.vgg, a, b, layers)


def test_bad_inputs_name_the_argument(tiny, images):
    a, _ = images
    with pytest.raises(GuidedError, match="`a01`"):
        metrics.gram_distance(tiny.vgg, a[0], a, ["relu1_1"])
    with pytest.raises(GuidedError, match="`prompt`"):
        metrics.clip_score(tiny.clip, a, "  ")
    with pytest.raises(GuidedError, match="`layers`"):
        metrics.content_distance(tiny.vgg, a, a, [])


def test_lpips_absent_weights_is_null_with_a_note(tmp_path, images):
    lp = metrics.load_lpips(tmp_path)
    assert lp.model is None
    assert "alexnet-owt-7be5be79.pth" in lp.note and str(tmp_path) in lp.note
    assert lp(*images) is None


def test_lpips_with_cached_backbone_matches_the_lpips_package(tmp_path, images):
    lpips = pytest.importorskip("lpips")
    import warnings

    from torchvision.models import alexnet

    torch.manual_seed(0)
    features = alexnet(weights=None).features  # stands in for the ImageNet checkpoint in the cache
    (tmp_path / "checkpoints").mkdir()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()},
               tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth")
    lp = metrics.load_lpips(tmp_path)
    assert lp.net == "alex" and lp.model is not None
    a, b = images
    assert lp(a, a.clone()) == pytest.approx(0.0, abs=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    for k, v in reference.net.state_dict().items():
        v.copy_(features.state_dict()[k.split(".", 1)[1]])
    with torch.no_grad():
        expected = float(reference(a * 2 - 1, b * 2 - 1))
    assert lp(a, b) == pytest.approx(expected, rel=1e-5)
    assert expected > 0


def test_the_scorer_equals_the_functions_and_passes_each_model_once(tiny, images, monkeypatch):
    """Scorer's values are the functional metrics'; after its targets, one CLIP and one VGG pass per image."""
    photo, painting = images
    g = torch.Generator().manual_seed(3)
    other = torch.rand(1, 3, 48, 64, generator=g)
    layers = {"gram_layers": ["relu1_1", "relu2_1"], "content_layers": ["relu2_2"]}
    scorer = metrics.Scorer(tiny, photo, paintings01=[painting, other], style_weights=[0.7, 0.3], prompt="ink",
                            source_prompt="a photo", **layers)
    image = torch.rand(1, 3, 40, 56, generator=g)  # another size than the photo: content resizes the photo
    calls = {"clip": 0, "vgg": 0}
    clip_encode, vgg_forward = tiny.clip.encode_image, type(tiny.vgg).forward
    monkeypatch.setattr(tiny.clip, "encode_image", lambda x: calls.__setitem__("clip", calls["clip"] + 1)
                        or clip_encode(x))
    monkeypatch.setattr(type(tiny.vgg), "forward", lambda self, *a, **k: calls.__setitem__("vgg", calls["vgg"] + 1)
                        or vgg_forward(self, *a, **k))
    scorer.score(photo)  # the photo's content features at its own size are cached by the first score
    calls.update(clip=0, vgg=0)
    scores = scorer.score(image)
    scorer.score(image)
    assert calls == {"clip": 2, "vgg": 3}  # the photo's features at the new size once, then one pass a score
    monkeypatch.undo()
    grams = metrics.gram_targets(tiny.vgg, [painting, other], layers["gram_layers"], [0.7, 0.3])
    with torch.no_grad():
        style = tiny.clip.style_target([painting, other], [0.7, 0.3])
        style_cos = float((tiny.clip.encode_image(image) * style).sum(-1).mean())
    expected = {"clip_text": metrics.clip_score(tiny.clip, image, "ink"),
                "clip_direction": metrics.clip_directional_similarity(tiny.clip, photo, image, "a photo", "ink"),
                "clip_style": style_cos,
                "gram": metrics.gram_distance(tiny.vgg, image, grams, layers["gram_layers"]),
                "content": metrics.content_distance(tiny.vgg, image, photo, layers["content_layers"])}
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
    assert scores["lpips"] is None  # no LPIPS given


def test_the_scorer_leaves_out_what_it_has_nothing_to_compare_with(tiny, images):
    from types import SimpleNamespace

    photo, painting = images
    no_prompt = metrics.Scorer(tiny, photo).score(painting)
    assert no_prompt["clip_text"] is no_prompt["clip_direction"] is no_prompt["gram"] is no_prompt["clip_style"] is None
    assert no_prompt["content"] > 0
    vgg_only = metrics.Scorer(SimpleNamespace(clip=None, vgg=tiny.vgg), paintings01=[painting]).score(photo)
    assert vgg_only["gram"] > 0 and vgg_only["content"] is None and vgg_only["clip_style"] is None
