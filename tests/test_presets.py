"""Style presets: every shipped file loads; malformed files and unknown names give clear errors."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guided.constants import GUIDANCE_TERMS
from guided.errors import GuidedError
from guided.guidance.presets import (
    BUILTIN_PRESET_DIR,
    ENV_PRESETS_DIR,
    Preset,
    list_presets,
    load_preset,
    preset_dirs,
)

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_NAMES = {"ink-wash", "low-poly", "watercolor", "oil-impasto", "ukiyo-e", "pencil-sketch",
                  "van-gogh", "cubism", "pop-art", "art-nouveau", "pixel-art", "stained-glass"}

GOOD = {"description": "My own style", "prompt": "a painting", "negative_prompt": "",
        "strength": 0.5, "weights": {"clip_text": 1.0}}


@pytest.fixture(autouse=True)
def no_user_presets(monkeypatch):
    monkeypatch.delenv(ENV_PRESETS_DIR, raising=False)


def write(folder: Path, name: str, data: dict | str) -> Path:
    path = folder / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ shipped
def test_every_shipped_preset_loads_and_is_complete():
    presets = {p.name: p for p in list_presets()}
    assert REQUIRED_NAMES <= set(presets) and len(presets) >= 12
    for preset in presets.values():
        assert preset.path.parent == BUILTIN_PRESET_DIR
        assert preset.description and "\n" not in preset.description
        assert preset.prompt.isascii(), f"{preset.name}: prompts are written in English"
        assert 0 < preset.strength <= 1
        assert preset.weights and set(preset.weights) <= set(GUIDANCE_TERMS)
        assert preset.weights.get("clip_text", 0) > 0, preset.name  # every preset has a prompt
        assert load_preset(preset.name) == preset
    assert "水墨画" in presets["ink-wash"].description
    assert "post-impressionism" in presets["van-gogh"].description.lower()


def test_weight_keys_are_guidance_config_fields():
    config = pytest.importorskip("guided.config")
    fields = {f.name for f in dataclasses.fields(config.GuidanceConfig)}
    assert set(GUIDANCE_TERMS) <= fields


# ---------------------------------------------------------------------------------- malformed
MALFORMED = [
    ("bad-json", '{"description": "x",', "not valid JSON"),
    ("not-object", "[1, 2]", "JSON object"),
    ("missing", {k: v for k, v in GOOD.items() if k != "strength"}, "`strength`"),
    ("unknown-field", {**GOOD, "colour": "red"}, "`colour`"),
    ("prompt-type", {**GOOD, "prompt": 3}, "`prompt`"),
    ("empty-prompt", {**GOOD, "prompt": "  "}, "`prompt`"),
    ("two-lines", {**GOOD, "description": "a\nb"}, "`description`"),
    ("strength-zero", {**GOOD, "strength": 0}, "`strength`"),
    ("strength-high", {**GOOD, "strength": 1.5}, "`strength`"),
    ("strength-text", {**GOOD, "strength": "0.5"}, "`strength`"),
    ("strength-bool", {**GOOD, "strength": True}, "`strength`"),
    ("weights-list", {**GOOD, "weights": [1.0]}, "`weights`"),
    ("negative-weight", {**GOOD, "weights": {"gram": -1}}, "`weights.gram`"),
    ("unknown-weight", {**GOOD, "weights": {"style": 1}}, "`weights.style`"),
    ("weight-text", {**GOOD, "weights": {"tv": "0.1"}}, "`weights.tv`"),
    ("steps-zero", {**GOOD, "num_inference_steps": 0}, "`num_inference_steps`"),
    ("steps-float", {**GOOD, "num_inference_steps": 2.5}, "`num_inference_steps`"),
    ("cfg-negative", {**GOOD, "guidance_scale": -1}, "`guidance_scale`"),
]


@pytest.mark.parametrize("name,data,field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_preset_names_file_and_field(tmp_path, name, data, field):
    path = write(tmp_path, name, data)
    for load in (lambda: load_preset(name, dirs=[tmp_path]), lambda: load_preset(path),
                 lambda: list_presets([tmp_path])):
        with pytest.raises(GuidedError) as exc:
            load()
        message = str(exc.value)
        assert f"{name}.json" in message and field in message, message
        assert "\n" not in message


def test_optional_fields_may_be_null_or_absent(tmp_path):
    write(tmp_path, "mine", {**GOOD, "guidance_scale": None})
    preset = load_preset("mine", dirs=[tmp_path])
    assert preset == Preset(name="mine", description="My own style", prompt="a painting",
                            negative_prompt="", strength=0.5, weights={"clip_text": 1.0},
                            guidance_scale=None, num_inference_steps=None, path=tmp_path / "mine.json")


# ----------------------------------------------------------------------------- names and dirs
def test_unknown_preset_lists_the_available_names():
    with pytest.raises(GuidedError) as exc:
        load_preset("ink-wsh")
    message = str(exc.value)
    assert "ink-wsh" in message and "did you mean 'ink-wash'" in message
    for name in REQUIRED_NAMES:
        assert name in message


def test_user_presets_override_builtins_by_stem(tmp_path, monkeypatch):
    write(tmp_path, "watercolor", {**GOOD, "description": "my watercolour"})
    write(tmp_path, "mine", GOOD)
    assert load_preset("watercolor", dirs=[tmp_path]).description == "my watercolour"
    names = [p.name for p in list_presets([tmp_path])]
    assert names == sorted(names) and "mine" in names and names.count("watercolor") == 1
    assert load_preset("watercolor").description != "my watercolour"  # built-in without the folder
    monkeypatch.setenv(ENV_PRESETS_DIR, os.pathsep.join([str(tmp_path / "nothing-here-first"), ""]))
    with pytest.raises(GuidedError, match="nothing-here-first"):
        load_preset("watercolor")
    monkeypatch.setenv(ENV_PRESETS_DIR, str(tmp_path))
    assert load_preset("watercolor").description == "my watercolour"
    assert preset_dirs()[-1] == tmp_path


def test_explicit_dir_beats_environment(tmp_path, monkeypatch):
    env_dir, cli_dir = tmp_path / "env", tmp_path / "cli"
    env_dir.mkdir(), cli_dir.mkdir()
    write(env_dir, "mine", {**GOOD, "description": "from env"})
    write(cli_dir, "mine", {**GOOD, "description": "from --dir"})
    monkeypatch.setenv(ENV_PRESETS_DIR, str(env_dir))
    assert load_preset("mine").description == "from env"
    assert load_preset("mine", dirs=[cli_dir]).description == "from --dir"


def test_missing_folder_and_file_are_named(tmp_path):
    with pytest.raises(GuidedError, match="nope"):
        list_presets([tmp_path / "nope"])
    with pytest.raises(GuidedError, match="gone.json"):
        load_preset(tmp_path / "gone.json")


def test_a_broken_unrelated_user_file_does_not_block_loading_another(tmp_path):
    write(tmp_path, "broken", "{")
    write(tmp_path, "mine", GOOD)
    assert load_preset("mine", dirs=[tmp_path]).prompt == "a painting"


# ------------------------------------------------------------------------------------- CLI
def guided_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_PRESETS_DIR}
    return subprocess.run([sys.executable, "-m", "guided", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_cli_lists_presets_with_user_folder(tmp_path):
    write(tmp_path, "zz-mine", {**GOOD, "description": "my very own style"})
    out = guided_cli("presets", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 13
    assert lines[-1].split()[0] == "zz-mine" and lines[-1].endswith("my very own style")
    for name in REQUIRED_NAMES:
        assert any(line.startswith(name + " ") for line in lines), name


def test_cli_malformed_preset_is_one_line_exit_2(tmp_path):
    write(tmp_path, "bad", {**GOOD, "strength": 2})
    out = guided_cli("presets", "--dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.json" in lines[0] and "`strength`" in lines[0]


def test_cli_json_lists_every_field(capsys):
    from guided.cli import main

    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["name"] for d in data} >= REQUIRED_NAMES
    ink = next(d for d in data if d["name"] == "ink-wash")
    assert ink == load_preset("ink-wash").to_dict()
