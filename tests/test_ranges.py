"""Every diffusion number at both ends of its documented range runs, alone and as steps x strength;
just outside is one line naming it, from the CLI and the REST API alike."""
from __future__ import annotations

import pytest
import torch
from factories import waves

from guided.cli import main
from guided.constants import SCHEDULER_NAMES
from guided.validate import DIFFUSION_RANGES

LOW_STEPS, HIGH_STEPS = DIFFUSION_RANGES["steps"]


@pytest.fixture
def cli(tmp_path, monkeypatch, stylizer, capsys):
    """Run `guided stylize` on a small photo with the session's tiny models: (exit code, stderr, output)."""
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    photo = tmp_path / "photo.png"
    waves(0, (40, 48)).save(photo)

    def run(*extra: str):
        out = tmp_path / "out" / "o.png"
        out.parent.mkdir(exist_ok=True)
        code = main(["stylize", str(photo), "--prompt", "ink", "--tiny", "--size", "32", "-q", "-o", str(out),
                     *extra])
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        written = out.exists()
        out.unlink(missing_ok=True)
        return code, err.strip(), written

    return run


@pytest.mark.parametrize("extra", [
    ["--steps", str(LOW_STEPS), "--strength", "1.0"],  # the fewest steps
    ["--steps", str(HIGH_STEPS), "--strength", "0.002"],  # the most steps (one of them denoised: quick)
    ["--steps", "2", "--strength", "0.5"],  # exactly one denoising step
    ["--steps", "3", "--guidance-scale", "0"], ["--steps", "3", "--guidance-scale", "100"],
])
def test_the_ends_of_each_range_run(cli, extra):
    code, err, written = cli(*extra)
    assert code == 0 and written, err


@pytest.mark.parametrize("extra, words", [
    (["--steps", str(HIGH_STEPS + 1)], f"`--steps` must be in [1, {HIGH_STEPS}], got {HIGH_STEPS + 1}"),
    (["--steps", "0"], "`--steps` must be in [1, 999], got 0"),
    (["--steps", "1", "--strength", "0.5"], "`--strength` 0.5 of `--steps` 1 is no denoising step"),
    (["--steps", "999", "--strength", "0.001"], "give `--strength` 0.0011 or more"),
    (["--steps", "3", "--strength", "0.3333"], "give `--steps` 4 or more, or `--strength` 0.3334 or more"),
    (["--steps", "1"], "of `--steps` 1 is no denoising step"),  # with the default strength
    (["--strength", "0"], "`--strength` must be in (0, 1]"),
    (["--guidance-scale", "100.5"], "`--guidance-scale` must be in [0, 100]"),
])
def test_just_outside_is_one_line_naming_it(cli, extra, words):
    code, err, written = cli(*extra)
    assert code == 2 and not written and len(err.splitlines()) == 1 and words in err, err


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_noises_the_first_step_of_the_longest_full_strength_run(stylizer, name):
    """The line that failed at 1000 steps: img2img noises the photo's latents to the first timestep."""
    pipe = stylizer.pipe
    original = pipe.scheduler
    try:
        pipe.set_scheduler(name)
        pipe.scheduler.set_timesteps(HIGH_STEPS)
        timesteps, count = pipe.get_timesteps(HIGH_STEPS, 1.0, "cpu")
        assert count == HIGH_STEPS
        latents = torch.zeros(1, 4, 4, 4)
        noised = pipe.scheduler.add_noise(latents, torch.ones_like(latents), timesteps[:1])
        assert torch.isfinite(noised).all() and noised.abs().sum() > 0
    finally:
        pipe.scheduler = original


def test_the_rest_api_refuses_steps_times_strength_below_one_step_at_submission(tmp_path, stylizer):
    pytest.importorskip("fastapi", reason="guided serve needs the serve extra")
    from serve_helpers import client_for, submit

    with client_for(tmp_path, stylizer) as client:
        for options, field in (({"prompt": "x", "steps": 1, "strength": 0.5}, "strength"),
                               ({"prompt": "x", "steps": 1}, "strength"), ({"prompt": "x", "steps": 1000}, "steps")):
            response = submit(client, options=options)
            assert response.status_code == 422, response.text
            assert f"`{field}`" in response.json()["error"]
        assert client.get("/api/v1/jobs").json() == [] or all(
            j["status"] != "failed" for j in client.get("/api/v1/jobs").json())
