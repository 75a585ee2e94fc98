"""The README's Python examples run as written, on tiny models, so the README cannot drift from the code.

Only what needs real weights is swapped, and nothing else: `Stylizer.load` returns the tiny
Stylizer, `from_pretrained` returns a tiny pipeline (after checking it got a model id or folder),
and the classic path runs on a tiny VGG at a small size with few iterations.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from factories import painting, photo

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    blocks = _python_blocks()
    assert len(blocks) >= 2 and any("GuidedStableDiffusionImg2ImgPipeline" in b for b in blocks)


@pytest.fixture
def tiny_world(tmp_path, monkeypatch, stylizer):
    import guided.gatys.transfer as transfer
    from guided.stylize import Stylizer
    from guided.testing import tiny_guidance_models, tiny_sd_components, tiny_sdxl_components, tiny_vgg
    from pipelines import GuidedStableDiffusionImg2ImgPipeline, GuidedStableDiffusionXLImg2ImgPipeline

    monkeypatch.chdir(tmp_path)
    photo(96, 128).save("photo.jpg")
    painting().save("painting.jpg")

    real_stylize, vgg = transfer.stylize, torch.nn.Sequential(*tiny_vgg(0).body)

    def small_stylize(*args, **kwargs):
        return real_stylize(*args, **{**kwargs, "backbone": vgg, "size": 48, "iterations": 3, "progress": False})

    def tiny_pipeline(cls, name, **kwargs):
        assert isinstance(name, str) and name, "from_pretrained takes a Hub id or a folder"
        xl = issubclass(cls, GuidedStableDiffusionXLImg2ImgPipeline)
        pipe = cls(**(tiny_sdxl_components(0) if xl else tiny_sd_components(0)))
        pipe.set_guidance_models(tiny_guidance_models(0, decoder=False))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    monkeypatch.setattr(transfer, "stylize", small_stylize)
    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    monkeypatch.setattr(GuidedStableDiffusionImg2ImgPipeline, "from_pretrained", classmethod(tiny_pipeline))
    monkeypatch.setattr(GuidedStableDiffusionXLImg2ImgPipeline, "from_pretrained", classmethod(tiny_pipeline))
    return tmp_path


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_example_runs(tiny_world, index):
    code = _python_blocks()[index]
    namespace: dict = {"__name__": f"readme_example_{index}"}
    exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)
    written = {p.name for p in tiny_world.rglob("*") if p.is_file()} - {"photo.jpg", "painting.jpg"}
    for name in re.findall(r'\.save\("([^"]+)"\)', code):  # every file the example saves exists
        assert name in written, f"README block {index + 1} should have written {name}"
    if "out_dir=" in code:
        folder = re.search(r'out_dir="([^"]+)"', code).group(1)
        assert (tiny_world / folder / "report.html").is_file()
