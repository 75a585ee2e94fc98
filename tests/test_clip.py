"""ClipGuide on a tiny random open_clip model; load_clip offline and from local checkpoints."""
from __future__ import annotations

import warnings

import pytest
import torch

from guided.errors import GuidedError, WeightsNotFoundError
from guided.models.clip import (
    ClipGuide,
    _hub_repo_of_tag,
    cached_clip_weights,
    load_clip,
    random_clip,
    save_clip_folder,
)
from guided.testing import TINY_CLIP_CONFIG, tiny_clip


@pytest.fixture(scope="module")
def clip() -> ClipGuide:
    return tiny_clip(seed=0)


def _model_cfg() -> dict:
    return {k: v for k, v in TINY_CLIP_CONFIG.items() if k != "name"}


def test_encode_text_is_unit_norm_float32(clip):
    with torch.no_grad():
        emb = clip.encode_text(["a red house", "a watercolour of a fox"])
    assert emb.shape == (2, TINY_CLIP_CONFIG["embed_dim"]) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(emb[0], emb[1])
    assert clip.last_truncation == []


def test_long_prompt_is_truncated_with_warning_and_record(clip):
    prompt = " ".join(["painting"] * 100)
    with pytest.warns(UserWarning, match=r"102 tokens; CLIP keeps the first 77"):
        with torch.no_grad():
            long_emb = clip.encode_text([prompt])
    assert clip.last_truncation == [{"prompt": prompt, "tokens": 102, "context_length": 77}]
    with torch.no_grad(), pytest.warns(UserWarning, match="202 tokens"):  # open_clip keeps the first 75 words
        kept = clip.encode_text([" ".join(["painting"] * 200)])
    torch.testing.assert_close(long_emb, kept)


def test_encode_image_any_size_unit_norm_and_differentiable(clip):
    image = torch.rand(2, 3, 40, 60, generator=torch.Generator().manual_seed(1), requires_grad=True)
    emb = clip.encode_image(image)
    assert emb.shape == (2, TINY_CLIP_CONFIG["embed_dim"]) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    emb[:, 0].sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0


def test_cutouts_are_image_major_and_reproducible(clip):
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 48, 64, generator=gen)
    with torch.no_grad():
        both = clip.encode_image(images, cutouts=3, augment=True, generator=torch.Generator().manual_seed(5))
        again = clip.encode_image(images, cutouts=3, augment=True, generator=torch.Generator().manual_seed(5))
        first = clip.encode_image(images[:1], cutouts=3, augment=False, generator=torch.Generator().manual_seed(5))
        first_plain = clip.encode_image(images, cutouts=3, augment=False, generator=torch.Generator().manual_seed(5))
    assert both.shape == (6, TINY_CLIP_CONFIG["embed_dim"])
    torch.testing.assert_close(both, again)
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(first_plain[:3], first)  # rows 0..2 are the crops of image 0
    assert not torch.allclose(first_plain[0], first_plain[1])  # different crops
    with pytest.raises(GuidedError, match="`image01`"):
        clip.encode_image(torch.rand(3, 32, 32))


def _ops(fn) -> set[str]:
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def test_packed_attention_computes_the_same_through_plain_matrix_products():
    """A batch-first nn.MultiheadAttention under bf16 autocast on a CPU runs its in-projection as a
    broadcast bmm that copies the weight per token (the cost behind CLIP's slow bf16 pass); packed,
    the same values come from addmm, with the same state dict and the same float32 results."""
    import copy

    from guided.models.attention import pack_attention_inputs

    torch.manual_seed(0)
    plain = torch.nn.MultiheadAttention(32, 4, batch_first=True).requires_grad_(False)
    packed = copy.deepcopy(plain)
    assert pack_attention_inputs(packed) == 1 and pack_attention_inputs(packed) == 0  # idempotent
    assert list(packed.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 10, 32, requires_grad=True)

    def step(module):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x, x, x, need_weights=False)[0]
        (g,) = torch.autograd.grad(y.float().square().sum(), x)
        return y, g

    assert "aten::bmm" in _ops(lambda: step(plain))
    assert "aten::bmm" not in _ops(lambda: step(packed))
    (y0, g0), (y1, g1) = step(plain), step(packed)
    torch.testing.assert_close(y1.float(), y0.float(), atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(g1, g0, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(packed(x, x, x)[0], plain(x, x, x)[0], atol=1e-6, rtol=1e-5)


def test_bf16_image_embeddings_follow_the_float32_ones(clip):
    """`mixed_precision='bf16'` autocasts the vision tower (its linear layers compute in bf16);
    the embeddings come back unit-norm float32, close to the float32 ones, with a close gradient."""
    seen = []
    hook = clip.model.visual.transformer.resblocks[0].mlp.c_fc.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    out = {}
    try:
        for mp in ("no", "bf16"):
            x = image.clone().requires_grad_(True)
            emb = clip.encode_image(x, cutouts=2, generator=torch.Generator().manual_seed(0), mixed_precision=mp)
            (g,) = torch.autograd.grad(emb[:, 0].sum(), x)
            out[mp] = emb, g
    finally:
        hook.remove()
    assert seen == [torch.float32, torch.bfloat16]
    assert out["bf16"][0].dtype == torch.float32
    torch.testing.assert_close(out["bf16"][0].norm(dim=-1), torch.ones(2))
    assert torch.nn.functional.cosine_similarity(out["bf16"][0], out["no"][0]).min() > 0.99
    assert torch.nn.functional.cosine_similarity(out["bf16"][1].flatten(), out["no"][1].flatten(), dim=0) > 0.98


def test_random_clip_is_labelled_and_seeded():
    a, b = random_clip(dict(TINY_CLIP_CONFIG), seed=4), random_clip(dict(TINY_CLIP_CONFIG), seed=4)
    assert a.info["random"] is True and "seed 4" in a.info["source"]
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(GuidedError, match="'no-such-arch'"):
        random_clip("no-such-arch")


def test_load_clip_missing_tag_offline_says_how_to_get_it(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as err:
        load_clip("ViT-B-32", "laion2b_s34b_b79k")
    text = str(err.value)
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", str(tmp_path / "hub"), "HF_HUB_OFFLINE",
                   "create_model_and_transforms", "--clip PATH"):
        assert needle in text


def test_default_tag_location_agrees_with_open_clip():
    import open_clip

    from guided.models.clip import DEFAULT_CLIP_HUB_REPO, DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED

    hub = open_clip.get_pretrained_cfg(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)["hf_hub"]
    assert hub == DEFAULT_CLIP_HUB_REPO + "/"  # default file names: open_clip_model.safetensors, then .bin


def test_cached_weights_found_in_hub_cache_layout(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo, files, _ = _hub_repo_of_tag("ViT-B-32", "laion2b_s34b_b79k")
    assert files[0].endswith(".safetensors")  # safetensors preferred over the pickle
    cache = tmp_path / ("models--" + repo.replace("/", "--"))
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("abc123")
    snapshot = cache / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / files[-1]).write_bytes(b"x")
    assert cached_clip_weights("ViT-B-32", "laion2b_s34b_b79k")[0] == snapshot / files[-1]
    (snapshot / files[0]).write_bytes(b"x")
    assert cached_clip_weights("ViT-B-32", "laion2b_s34b_b79k")[0] == snapshot / files[0]


def test_load_clip_bad_names_and_no_silent_random():
    with pytest.raises(GuidedError, match="'no_such_tag'.*laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "no_such_tag")
    with pytest.raises(GuidedError, match="'ViT-Z-99'"):
        load_clip("ViT-Z-99", "laion2b_s34b_b79k")
    with pytest.raises(GuidedError, match="`pretrained` is required"):
        load_clip("ViT-B-32", None)
    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        load_clip("ViT-B-32", "/nowhere/missing.safetensors")


def test_load_clip_folder_round_trip(clip, tmp_path):
    folder = save_clip_folder(clip, tmp_path / "tiny-clip", _model_cfg())
    loaded = load_clip(str(folder))
    assert loaded.info["random"] is False and loaded.info["pretrained"].endswith(".safetensors")
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(["a fox"]), clip.encode_text(["a fox"]), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode_image(image), clip.encode_image(image), rtol=0, atol=0)


def test_load_clip_folder_with_pickled_weights_uses_weights_only(clip, tmp_path):
    folder = save_clip_folder(clip, tmp_path / "bin", _model_cfg())
    (folder / "open_clip_model.safetensors").unlink()
    torch.save(clip.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    loaded = load_clip(str(folder))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(["a fox"]), clip.encode_text(["a fox"]), rtol=0, atol=0)
    # A pickle that holds more than tensors is refused, not executed.
    torch.save({"state_dict": clip.model.state_dict(), "extra": warnings.catch_warnings},
               folder / "open_clip_pytorch_model.bin")
    with pytest.raises(GuidedError, match="open_clip_pytorch_model.bin"):
        load_clip(str(folder))


def test_load_clip_weights_that_do_not_fit_are_an_error(clip, tmp_path):
    folder = save_clip_folder(clip, tmp_path / "tiny", _model_cfg())
    with pytest.raises(GuidedError, match="does not fit"):
        load_clip("ViT-B-32", str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="no weights file"):
        load_clip(str(folder))


def test_tag_found_in_cache_loads_offline_without_download(clip, tmp_path, monkeypatch):
    """The tag path end to end, on a tiny architecture registered with open_clip for the test."""
    import json

    import open_clip

    import guided.models.clip as clip_module

    folder = save_clip_folder(clip, tmp_path / "cache", _model_cfg())
    (tmp_path / "guided-test-tiny.json").write_text(json.dumps(_model_cfg()))
    open_clip.add_model_config(tmp_path / "guided-test-tiny.json")
    monkeypatch.setattr(clip_module, "_check_tag", lambda name, tag: None)
    monkeypatch.setattr(clip_module, "cached_clip_weights",
                        lambda name, tag: (folder / "open_clip_model.safetensors", ["test cache"]))
    loaded = load_clip("guided-test-tiny", "some_tag")
    assert loaded.info == {"name": "guided-test-tiny", "pretrained": "some_tag",
                           "source": str(folder / "open_clip_model.safetensors"), "random": False}
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(["a fox"]), clip.encode_text(["a fox"]), rtol=0, atol=0)
