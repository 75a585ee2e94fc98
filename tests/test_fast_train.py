"""Training a fast network: the objective goes down, a resumed run equals an uninterrupted one, the
data are the same whatever the workers, the files appear only when complete."""
from __future__ import annotations

import pytest
import torch
from fast_helpers import tiny_models, write_photos, write_style

from guided.errors import GuidedError
from guided.fast import TrainConfig, train
from guided.fast.checkpoint import checkpoint_path, read_card
from guided.fast.data import CropDataset, PhotoFolder, StepSampler


def _config(**changes) -> TrainConfig:
    base = {"iterations": 12, "image_size": 32, "batch_size": 2, "workers": 0, "checkpoint_every": 100,
            "sample_every": 1000, "lr": 5e-3}
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast_train")
    photos = write_photos(root / "photos", n=4)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # skipped and counted
    (photos / ".hidden.png").write_bytes(b"")  # hidden: not even looked at
    return photos, write_style(root / "style.png")


def test_training_lowers_the_objective(inputs, tmp_path):
    photos, style = inputs
    out = tmp_path / "net.safetensors"
    result = train([style], photos, out, _config(iterations=30, sample_every=15), models=tiny_models(), progress=False)
    totals = [h["total"] for h in result.history]
    assert len(totals) == 30
    first, last = sum(totals[:5]) / 5, sum(totals[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    card = read_card(out)
    assert card["iterations"] == 30 and card["data"] == {"folder": str(photos), "photos": 4, "skipped": 1}
    assert card["styles"][0]["name"] == "style.png" and len(card["styles"][0]["sha256"]) == 64
    assert set(card["final_losses"]) == {"total", "gram", "content", "tv"}
    for side in ("net.ckpt.safetensors", "net.curves.png", "net.samples.png"):
        assert (tmp_path / side).is_file(), side
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_network_trained_with_input_noise_carries_it(inputs, tmp_path):
    """`input_noise` reaches the trained network and its card, so every later use adds the same pattern."""
    photos, style = inputs
    out = tmp_path / "net.safetensors"
    result = train([style], photos, out, _config(iterations=4, input_noise=0.03), models=tiny_models(),
                   progress=False)
    assert result.net.input_noise == 0.03
    assert read_card(out)["input_noise"] == 0.03 and read_card(out)["config"]["input_noise"] == 0.03
    with pytest.raises(GuidedError, match="`input_noise` must be in \\[0, 1\\], got 2"):
        _config(input_noise=2).validate()


def test_resumed_run_equals_uninterrupted_run(inputs, tmp_path):
    photos, style = inputs
    whole = train([style], photos, tmp_path / "a" / "net.safetensors", _config(workers=1), models=tiny_models(),
                  progress=False)
    part = train([style], photos, tmp_path / "b" / "net.safetensors", _config(), models=tiny_models(),
                 progress=False, max_steps=5)
    assert part.path is None and checkpoint_path(tmp_path / "b" / "net.safetensors").is_file()
    assert not (tmp_path / "b" / "net.safetensors").exists()  # the network file only when training is complete
    resumed = train([style], photos, tmp_path / "b" / "net.safetensors", _config(), models=tiny_models(),
                    progress=False, resume=True)
    assert [h["step"] for h in resumed.history] == list(range(12))
    for a, b in zip(whole.history, resumed.history):
        assert a["total"] == pytest.approx(b["total"], rel=1e-5, abs=1e-7)
    for (name, p), q in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), name


def test_samples_do_not_depend_on_workers_processes_or_resumption(inputs):
    photos, _ = inputs
    folder = PhotoFolder.scan(photos)
    data = CropDataset(folder.files, 24, seed=7)
    one = list(StepSampler(0, 3, batch_size=4))
    two = [k for rank in range(2) for k in StepSampler(0, 3, batch_size=2, rank=rank, world=2)]
    assert sorted(one) == sorted(two) and list(StepSampler(2, 3, 4)) == one[8:]
    assert torch.equal(data[5], CropDataset(folder.files, 24, seed=7)[5])
    assert not torch.equal(data[5], data[6])
    epoch = {data.photo_index(k) for k in range(4)}
    assert epoch == {0, 1, 2, 3}  # one epoch sees every photo once


def test_bad_training_inputs_name_the_problem_and_write_nothing(inputs, tmp_path):
    photos, style = inputs
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = tmp_path / "text"
    no_images.mkdir()
    (no_images / "notes.txt").write_text("no photos here")
    broken_only = tmp_path / "broken"
    broken_only.mkdir()
    (broken_only / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out" / "net.safetensors"
    cases = [
        ({"styles": [style], "data": empty}, "holds no image files"),
        ({"styles": [style], "data": no_images}, "holds no image files"),
        ({"styles": [style], "data": broken_only}, "none readable"),
        ({"styles": [style], "data": tmp_path / "missing"}, "does not exist"),
        ({"styles": [tmp_path / "nope.jpg"], "data": photos}, "style image"),
        ({"styles": [], "data": photos}, "no style image and no `--prompt`"),
    ]
    for kwargs, message in cases:
        with pytest.raises(GuidedError, match=message) as info:
            train(output=out, config=_config(), models=tiny_models(), progress=False, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(GuidedError, match="is a folder"):
        train([style], photos, tmp_path, _config(), models=tiny_models(), progress=False)
    with pytest.raises(GuidedError, match="must end in .safetensors"):
        train([style], photos, tmp_path / "net.pt", _config(), models=tiny_models(), progress=False)
    with pytest.raises(GuidedError, match="no checkpoint"):
        train([style], photos, out, _config(), models=tiny_models(), progress=False, resume=True)
    with pytest.raises(GuidedError, match="`batch_size`"):
        train([style], photos, out, _config(batch_size=0), models=tiny_models(), progress=False)
    assert not (tmp_path / "out").exists()


def test_a_network_trains_from_a_prompt_alone(inputs, tmp_path):
    """No painting: CLIP text (tiny random CLIP here), content and TV; the card records the prompt."""
    from guided.testing import tiny_guidance_models

    photos, _ = inputs
    out = tmp_path / "prompt.safetensors"
    result = train([], photos, out, _config(iterations=3, prompt="a stained glass window"),
                   models=tiny_guidance_models(0, decoder=False), progress=False)
    assert set(result.history[-1]) == {"step", "total", "clip_text", "content", "tv"}
    card = read_card(out)
    assert card["prompt"] == "a stained glass window" and card["styles"] == []
