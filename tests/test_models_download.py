"""`guided models --download` and the first run of `guided serve`, with downloads off: a fake hub
(mirror) folder proves the download path is taken, reported and lands where the loaders look."""
from __future__ import annotations

import pytest

from guided.cli import main
from guided.constants import DEFAULT_CLIP_HUB_REPO, DEFAULT_SD_MODEL
from guided.models.hub import SD_REQUIRED_FILES


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches of this test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


@pytest.fixture
def mirror(tmp_path):
    """A fake hub folder holding what `stylize` needs (file contents do not matter to the check)."""
    root = tmp_path / "mirror"
    for entry in SD_REQUIRED_FILES:
        path = root / DEFAULT_SD_MODEL / entry.split("|")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"{}" if path.suffix == ".json" else b"x" * 1000)
    clip = root / DEFAULT_CLIP_HUB_REPO / "open_clip_model.safetensors"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x" * 2_000_000)
    (root / "vgg19-dcbb9e9d.pth").write_bytes(b"x" * 500_000)
    return root


def _stylize_rows():
    from guided.models.status import model_status

    return [r for r in model_status() if r.feature == "stylize" and r.required]


def test_download_says_what_and_how_big_then_fetches_with_progress(caches, mirror, capsys):
    assert not all(r.present for r in _stylize_rows())
    assert main(["models", "--download", "stylize", "--mirror", str(mirror)]) == 0
    out = capsys.readouterr().out
    assert f"fetching from the mirror {mirror}:" in out
    assert DEFAULT_SD_MODEL in out and DEFAULT_CLIP_HUB_REPO in out and "vgg19-dcbb9e9d.pth" in out
    assert "total: 2.5 MB" in out and "[1/3]" in out and "[3/3] " in out and out.count(": done") == 3
    assert out.index("total:") < out.index("[1/3]")  # the size is said before anything is fetched
    assert all(r.present for r in _stylize_rows()), [r.component for r in _stylize_rows() if not r.present]
    assert main(["models", "--download", "stylize", "--mirror", str(mirror)]) == 0
    assert "nothing to download" in capsys.readouterr().out


@pytest.mark.parametrize("flag", [[], ["--offline"]])
def test_download_is_refused_when_downloads_are_off(caches, capsys, monkeypatch, flag):
    if not flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("GUIDED_OFFLINE", raising=False)
    assert main(["models", "--download", "gatys", *flag]) == 2
    captured = capsys.readouterr()
    assert "would fetch from the internet" in captured.out and "VGG-19" in captured.out
    assert "downloads are off" in captured.err and captured.err.count("\n") == 1


def test_a_missing_mirror_file_is_one_line(caches, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["models", "--download", "gatys", "--mirror", str(tmp_path / "empty")]) == 2
    assert "is not in the mirror" in capsys.readouterr().err


def test_serve_falls_back_to_tiny_models_loudly_when_offline(caches, tmp_path, capsys, monkeypatch):
    pytest.importorskip("uvicorn")
    import uvicorn

    from guided.stylize import Stylizer

    loaded = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: loaded.update(kw)))
    assert main(["serve", "--no-ui", "--out", str(tmp_path / "o")]) == 0
    assert loaded["tiny"] is True
    assert "NOTICE: the default models are not on this machine" in capsys.readouterr().err
