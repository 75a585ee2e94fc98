"""Weights resolution for Hub-style folders, `guided models`, and `guided` staying diffusers-free."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from guided.errors import GuidedError, WeightsNotFoundError
from guided.models.hub import SD_REQUIRED_FILES, resolve_model_dir
from guided.models.status import model_status

FAKE_REPO = "guided-tests/fake-model"  # not a real repository: only ever looked up in a temporary cache


def _fake_cache(root, repo: str, files: list[str]):
    """A Hugging Face cache layout (refs/main -> snapshots/<commit>/files) holding `files`."""
    cache = root / ("models--" + repo.replace("/", "--"))
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("0123abcd")
    snapshot = cache / "snapshots" / "0123abcd"
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    return snapshot


def test_local_folder_is_used_as_is(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_text("x")
    (tmp_path / "model_index.json").write_text("{}")
    required = ["model_index.json", "unet/diffusion_pytorch_model.safetensors|unet/diffusion_pytorch_model.bin"]
    assert resolve_model_dir(str(tmp_path), what="model", required_files=required) == tmp_path


def test_local_folder_missing_files_are_listed(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_model_dir(tmp_path, what="Stable Diffusion model", required_files=SD_REQUIRED_FILES)
    assert "Stable Diffusion model folder" in str(err.value)
    assert "unet/diffusion_pytorch_model.safetensors or unet/diffusion_pytorch_model.bin" in str(err.value)


def test_missing_paths_and_files_are_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "nope" / "deeper"), what="tiny decoder")
    (tmp_path / "file.bin").write_text("x")
    with pytest.raises(GuidedError, match="is a file"):
        resolve_model_dir(tmp_path / "file.bin", what="tiny decoder")
    with pytest.raises(GuidedError, match="neither an existing folder nor a Hub repository id"):
        resolve_model_dir("bad name with spaces", what="tiny decoder")


def test_missing_repo_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_model_dir(FAKE_REPO, what="Stable Diffusion model", cache_dir=tmp_path)
    text = str(err.value)
    for needle in (FAKE_REPO, str(tmp_path), "HF_HUB_OFFLINE", f"hf download {FAKE_REPO}", "local folder"):
        assert needle in text


def test_no_download_when_not_allowed_even_online(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("GUIDED_OFFLINE", raising=False)
    with pytest.raises(WeightsNotFoundError, match="downloads are not allowed"):
        resolve_model_dir(FAKE_REPO, what="tiny decoder", cache_dir=tmp_path, allow_download=False)


def test_cached_snapshot_is_found_offline_and_checked(tmp_path):
    snapshot = _fake_cache(tmp_path, FAKE_REPO, ["config.json", "diffusion_pytorch_model.safetensors"])
    required = ["config.json", "diffusion_pytorch_model.safetensors|diffusion_pytorch_model.bin"]
    assert resolve_model_dir(FAKE_REPO, what="tiny decoder", required_files=required, cache_dir=tmp_path) == snapshot
    with pytest.raises(WeightsNotFoundError, match="missing: vae/config.json"):
        resolve_model_dir(FAKE_REPO, what="model", required_files=["config.json", "vae/config.json"],
                          cache_dir=tmp_path)


def test_model_status_rows(tmp_path):
    _fake_cache(tmp_path, FAKE_REPO, [f.split("|")[0] for f in SD_REQUIRED_FILES])
    rows = model_status(sd_model=FAKE_REPO, cache_dir=tmp_path)
    assert {r.feature for r in rows} == {"stylize", "gatys", "compare"}
    for row in rows:
        assert set(row.to_dict()) == {"feature", "component", "source", "present", "where", "missing", "how",
                                      "required"}
        assert row.present or (row.missing and row.how)
    sd = next(r for r in rows if r.component == "Stable Diffusion model")
    assert sd.present and sd.where.startswith(str(tmp_path))


def _run(code_or_args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], capture_output=True, text=True, timeout=300)


def test_guided_models_command_lists_each_feature():
    out = _run(["-m", "guided", "models"])
    assert out.returncode == 0, out.stderr
    for needle in ("stylize", "gatys", "compare", "Stable Diffusion model", "CLIP ViT-B-32", "VGG-19", "VGG-16",
                   "tiny decoder", "LPIPS"):
        assert needle in out.stdout


def test_guided_models_json(capsys):
    from guided.cli import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["feature"] for r in rows} == {"stylize", "gatys", "compare"}
    assert all(isinstance(r["present"], bool) for r in rows)


def test_guidance_modules_do_not_import_diffusers():
    code = ("import sys, guided, guided.guidance.objective, guided.models.clip, guided.config, guided.models.hub, "
            "guided.testing; "
            "guided.GuidanceConfig(); print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('diffusers', 'open_clip', 'transformers')))")
    out = _run(["-c", code])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
