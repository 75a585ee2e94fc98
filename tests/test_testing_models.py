"""Models built in code: tiny and benchmark-scale guidance models, and the CLIP tokenizer files."""
from __future__ import annotations

import pytest
import torch

from guided import testing
from guided.models.bundle import GuidanceModels

PROMPTS = [
    "an oil painting of autumn oaks",
    "A Watercolour, by J.M.W. Turner: 'Rain, Steam & Speed' (1844)!!",
    "café au lait, naïve art — 3 cats & 42 dogs, it's they're we'll",
    "  extra   spaces\tand\nnew lines  ",
    "emoji 🎨🖌️ and 中文 and ελληνικά",
]


def test_tiny_guidance_models_are_small_random_and_labelled():
    models = testing.tiny_guidance_models(seed=0)
    assert isinstance(models, GuidanceModels)
    assert models.info["random"] and models.clip.info["random"] and models.info["vgg"]["random"]
    assert models.clip.model.vocab_size == 49408 and models.clip.context_length == 77
    assert sum(p.numel() for p in models.clip.parameters()) < 3_000_000
    assert sum(p.numel() for p in models.vgg.parameters()) < 200_000
    latents = torch.randn(1, 4, 8, 12)
    with torch.no_grad():
        image = models.tiny_decoder.decode(latents).sample
    assert image.shape == (1, 3, 64, 96) and torch.isfinite(image).all()
    again = testing.tiny_guidance_models(seed=0, decoder=False)
    assert again.tiny_decoder is None
    for a, b in zip(models.clip.parameters(), again.clip.parameters()):
        assert torch.equal(a, b)  # seeded


def test_tiny_decoder_matches_a_two_block_vae():
    decoder = testing.tiny_taesd(seed=1, upscale=2)
    with torch.no_grad():
        assert decoder.decode(torch.randn(1, 4, 16, 16)).sample.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="`upscale`"):
        testing.tiny_taesd(upscale=3)


def test_bench_guidance_models_have_the_real_architectures():
    models = testing.bench_guidance_models(seed=0)
    assert models.info["random"] and models.clip.info["random"]
    assert models.clip.input_size == (224, 224)
    assert 140e6 < sum(p.numel() for p in models.clip.parameters()) < 160e6  # ViT-B/32 CLIP: 151M
    assert sum(p.numel() for p in models.vgg.parameters()) == 20_024_384  # torchvision vgg19().features
    assert 2e6 < sum(p.numel() for p in models.tiny_decoder.parameters()) < 3e6  # TAESD: 2.4M
    with torch.no_grad():
        emb = models.clip.encode_image(torch.rand(1, 3, 64, 64))
    assert emb.shape == (1, 512)


def test_sd_components_are_reexported_lazily():
    import inspect

    for name in ("tiny_sd_components", "sd15_random_components"):
        fn = getattr(testing, name)
        assert inspect.signature(fn).parameters["seed"].default == 0 and fn.__doc__


def test_tokenizer_files_reproduce_open_clip_tokenization(tmp_path):
    import open_clip
    from transformers import CLIPTokenizer

    vocab, merges = testing.open_clip_tokenizer_files(tmp_path)
    assert vocab.name == "vocab.json" and merges.name == "merges.txt"
    ours = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert len(ours) == 49408 and ours.bos_token_id == 49406 and ours.eos_token_id == 49407
    reference = open_clip.get_tokenizer("ViT-B-32")
    for prompt in PROMPTS:
        expected = reference([prompt])[0]
        expected = expected[expected != 0].tolist()
        assert ours(prompt).input_ids == expected, prompt
    # As diffusers pipelines call it: padded to 77 with the end token, truncated past 77.
    padded = ours(PROMPTS[0], padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77 and padded[-1] == 49407
