"""`guided train --resume` continues only the run its checkpoint belongs to: any other setting,
painting, prompt, backbone or photo set is one line naming each difference, unless the user allows
the changes; the card records every resume and what changed at which step."""
from __future__ import annotations

import pytest
from fast_helpers import tiny_models, write_photos, write_style

from guided.errors import GuidedError
from guided.fast import TrainConfig, train
from guided.fast.checkpoint import read_card
from guided.fast.resume import differences, option_name, run_identity


def _config(**changes) -> TrainConfig:
    base = {"iterations": 6, "image_size": 32, "batch_size": 2, "workers": 0, "checkpoint_every": 100,
            "sample_every": 1000, "lr": 5e-3}
    return TrainConfig(**{**base, **changes})


@pytest.fixture
def started(tmp_path):
    """A run stopped after 3 of its 6 steps, with its checkpoint."""
    photos = write_photos(tmp_path / "photos", n=3)
    style = write_style(tmp_path / "style.png")
    out = tmp_path / "net.safetensors"
    train([style], photos, out, _config(), models=tiny_models(), progress=False, max_steps=3)
    return photos, style, out


def _resume(styles, photos, out, config, **kwargs):
    return train(styles, photos, out, config, models=tiny_models(), progress=False, resume=True, **kwargs)


@pytest.mark.parametrize("change, named", [
    ({"config": {"gram": 9.0}}, "--gram-weight 6.0 -> 9.0"),
    ({"config": {"image_size": 48}}, "--image-size 32 -> 48"),
    ({"config": {"seed": 3}}, "--seed 0 -> 3"),
    ({"config": {"lr": 1e-2}}, "--lr 0.005 -> 0.01"),
    ({"config": {"input_noise": 0.05}}, "--input-noise 0.0 -> 0.05"),
    ({"style": True}, "STYLE_IMAGE"),
    ({"photos": True}, "--data"),
])
def test_a_resume_with_other_settings_is_one_line_naming_each(started, tmp_path, change, named):
    photos, style, out = started
    if change.get("style"):
        style = write_style(tmp_path / "other.png", seed=9)
    if change.get("photos"):
        write_photos(photos, n=4, seed=5)  # one more photo, and the others rewritten
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(GuidedError) as caught:
        _resume([style], photos, out, _config(**change.get("config", {})))
    message = str(caught.value)
    assert "\n" not in message and named in message and "--resume-with-changes" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not out.exists()  # nothing written


def test_several_changes_are_all_named(started):
    photos, style, out = started
    with pytest.raises(GuidedError) as caught:
        _resume([style], photos, out, _config(gram=9.0, seed=2, image_size=48))
    assert all(name in str(caught.value) for name in ("--gram-weight", "--seed", "--image-size"))


def test_more_iterations_and_other_operational_settings_continue_and_are_recorded(started):
    photos, style, out = started
    result = _resume([style], photos, out, _config(iterations=8, workers=1, sample_every=500))
    assert [h["step"] for h in result.history] == list(range(8))
    (resume,) = read_card(out)["resumes"]
    assert resume["step"] == 3 and resume["changes"] == {"--iterations": [6, 8]}


def test_with_changes_allowed_the_card_says_what_changed_and_when(started):
    photos, style, out = started
    _resume([style], photos, out, _config(gram=9.0), allow_changes=True)
    card = read_card(out)
    (resume,) = card["resumes"]
    assert resume["step"] == 3 and resume["changes"] == {"--gram-weight": [6.0, 9.0]}
    assert resume["checkpoint"].endswith("net.ckpt.safetensors")
    assert card["weights"]["gram"] == 9.0  # the settings it finished with, next to the record of the change


def test_an_unchanged_resume_is_recorded_too_and_a_fresh_run_has_none(started, tmp_path):
    photos, style, out = started
    _resume([style], photos, out, _config())
    assert read_card(out)["resumes"] == [{"step": 3, "checkpoint": str(out.with_name("net.ckpt.safetensors")),
                                          "changes": {}}]
    fresh = tmp_path / "fresh.safetensors"
    train([style], photos, fresh, _config(iterations=2), models=tiny_models(), progress=False)
    assert read_card(fresh)["resumes"] == []


def test_allowing_changes_without_resume_is_refused(started):
    photos, style, out = started
    with pytest.raises(GuidedError, match="--resume-with-changes.*--resume"):
        train([style], photos, out, _config(), models=tiny_models(), progress=False, allow_changes=True)


def test_the_backbone_and_parts_an_old_checkpoint_lacks(tmp_path, caplog):
    photos = write_photos(tmp_path / "p", n=2)
    files = sorted(photos.iterdir())
    a = run_identity(_config(), [{"sha256": "s1"}], None, {"vgg": {"source": "vgg16.safetensors", "sha256": "v1"}},
                     photos, files)
    b = run_identity(_config(), [{"sha256": "s1"}], None, {"vgg": {"source": "vgg19", "sha256": "v2"}}, photos, files)
    assert differences(a, b) == {"--backbone": ["v1", "v2"]}
    inked = run_identity(_config(prompt="ink"), [{"sha256": "s1"}], "ink", {"vgg": {"sha256": "v2"}}, photos, files)
    assert differences(b, inked) == {"--prompt": [None, "ink"]}
    old = {"settings": a["settings"]}  # a checkpoint written before identities were recorded
    assert differences(old, b) == {} and "not checked" in caplog.text
    assert option_name("clip_text") == "--clip-text-weight" and option_name("image_size") == "--image-size"


def test_the_cli_flag(started, capsys, monkeypatch):
    import guided.fast.training as training
    from guided.cli import main

    photos, style, out = started
    monkeypatch.setattr(training, "_models", lambda config, need_clip, models: (tiny_models(), {}))
    base = ["train", str(style), "--data", str(photos), "-o", str(out), "--image-size", "32", "--batch-size", "2",
            "--workers", "0", "--lr", "0.005", "--iterations", "6", "--gram-weight", "9", "-q"]
    assert main([*base, "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--gram-weight 6.0 -> 9.0" in err
    assert main([*base, "--resume", "--resume-with-changes"]) == 0
    assert read_card(out)["resumes"][0]["changes"] == {"--gram-weight": [6.0, 9.0]}


def test_a_network_written_into_its_photo_folder_does_not_train_on_its_side_files(tmp_path):
    """`--data D -o D/net.safetensors`: the loss curves and sample grid land in D; the next run skips them."""
    from guided.fast.data import PhotoFolder

    photos = write_photos(tmp_path / "photos", n=3)
    style = write_style(tmp_path / "style.png")
    out = photos / "net.safetensors"
    train([style], photos, out, _config(iterations=2, sample_every=1), models=tiny_models(), progress=False)
    assert (photos / "net.curves.png").is_file() and (photos / "net.samples.png").is_file()
    assert sorted(p.name for p in PhotoFolder.scan(photos).files) == ["photo0.png", "photo1.png", "photo2.png"]
    assert read_card(out)["data"]["photos"] == 3
