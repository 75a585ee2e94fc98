"""`guided compare` on tiny models: every file, every metric key, a self-contained page; bad input
leaves no report behind."""
from __future__ import annotations

import base64
import json
import math
import re

import pytest

from guided.cli import main
from guided.compare.report import METRIC_KEYS
from guided.demo.assets import demo_photo, painted_style
from guided.io.images import read_metadata, save_image

OUTPUTS = ("classic", "fast", "img2img", "guided", "guided_gram-0")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    photo = save_image(demo_photo().resize((80, 96)), folder / "photo.png")
    painting = save_image(painted_style((64, 64)), folder / "painting.png")
    return photo, painting


@pytest.fixture(scope="module")
def report(stylizer, inputs, tmp_path_factory):
    """One CLI run (in-process, on the module's tiny Stylizer) that every test below reads."""
    from fast_helpers import saved_network

    from guided.stylize import Stylizer

    photo, painting = inputs
    out = tmp_path_factory.mktemp("cmp") / "report"
    net = saved_network(out.parent / "net.safetensors")  # --net: a fast network is one more row
    mp = pytest.MonkeyPatch()
    mp.setattr(Stylizer, "load", classmethod(lambda cls, **kw: stylizer))
    try:
        code = main(["compare", str(photo), "--style", str(painting), "--prompt", "an oil painting of autumn oaks",
                     "--tiny", "--steps", "4", "--gatys-iterations", "3", "--sweep", "gram=0",
                     "--net", str(net), "-o", str(out)])
    finally:
        mp.undo()
    assert code == 0
    return out


def test_every_file_is_written(report):
    names = {p.name for p in report.iterdir()}
    for required in ("grid.png", "curves.png", "metrics.json", "metrics.md", "report.html"):
        assert required in names
    for name in OUTPUTS:
        assert f"{name}.png" in names and f"{name}.png.json" in names
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".report")]  # no temp folder left


def test_metrics_json_has_every_key_for_every_output(report):
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["kind"] == "compare" and doc["smoke_run"] is True and "SMOKE RUN" in doc["label"]
    assert doc["metric_keys"] == list(METRIC_KEYS)
    rows = {r["name"]: r for r in doc["outputs"]}
    assert set(OUTPUTS) <= set(rows) and "photo" in rows
    for name in OUTPUTS:
        m = rows[name]["metrics"]
        assert set(METRIC_KEYS) <= set(m), name
        for key in ("clip_text", "clip_style", "clip_direction", "gram", "content", "seconds", "peak_memory_mb"):
            assert isinstance(m[key], float) and math.isfinite(m[key]), (name, key, m[key])
        assert 0 <= m["clip_text"] <= 100 and -1 <= m["clip_style"] <= 1 and -1 <= m["clip_direction"] <= 1
        assert m["seconds"] > 0 and m["peak_memory_mb"] > 50
        # lpips: a number where its weights are cached, else null with a note saying why
        assert m["lpips"] is None or m["lpips"] >= 0
    photo = rows["photo"]["metrics"]
    assert photo["content"] == 0.0 and photo["clip_direction"] == 0.0
    if rows["guided"]["metrics"]["lpips"] is None:
        assert any(n.startswith("lpips:") and "null" in n for n in doc["notes"])
    assert "peak_memory_method" in doc


def test_outputs_carry_their_manifests_and_the_same_seed(report):
    classic = read_metadata(report / "classic.png")
    img2img = read_metadata(report / "img2img.png")
    guided = read_metadata(report / "guided.png")
    swept = read_metadata(report / "guided_gram-0.png")
    assert classic["kind"] == "gatys" and classic["random_backbone"] is True
    assert classic["parameters"]["iterations"] == 3
    assert {classic["seed"], img2img["seed"], guided["seed"], swept["seed"]} == {0}
    assert all(v == 0 for k, v in img2img["parameters"]["guidance"].items() if k in ("clip_text", "clip_style", "gram",
                                                                                    "content", "tv"))
    assert guided["kind"] == "stylize" and guided["parameters"]["guidance"]["gram"] > 0
    assert swept["parameters"]["guidance"]["gram"] == 0
    assert swept["parameters"]["guidance"]["clip_text"] == guided["parameters"]["guidance"]["clip_text"]


def test_markdown_table_has_a_row_per_output(report):
    text = (report / "metrics.md").read_text()
    assert "| output | " + " | ".join(METRIC_KEYS) + " |" in text
    for label in ("photo (input, reference)", "classic (Gatys", "img2img (no guidance)", "| guided |", "guided gram=0"):
        assert label in text


def test_report_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    assert "SMOKE RUN" in page
    grid = re.search(r'id="grid"[^>]*src="data:image/png;base64,([^"]+)"', page)
    curves = re.search(r'id="curves"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert grid and curves
    assert base64.b64decode(grid.group(1)) == (report / "grid.png").read_bytes()
    assert base64.b64decode(curves.group(1)) == (report / "curves.png").read_bytes()
    table = re.search(r'<table id="metrics">.*?</table>', page, re.S).group(0)
    assert table.count("<tr>") == 1 + 1 + len(OUTPUTS)  # header, photo, outputs
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from anywhere


def test_grid_is_wider_than_one_cell_per_image(report):
    from PIL import Image

    with Image.open(report / "grid.png") as grid:
        assert grid.width > 6 * 100 and grid.height >= 192  # photo, style and four outputs, 192 px high


@pytest.mark.parametrize("argv, needle", [
    (["--sweep", "sharpness=1"], "`--sweep` term 'sharpness'"),
    (["--sweep", "gram=a,b"], "`--sweep` values must be numbers"),
    (["--sweep", "gram=-1"], "`--sweep gram` must be in [0, inf], got -1"),
    (["--sweep", "gram=1,1"], "repeats a value of 'gram'"),
    (["--strength", "0"], "`--strength`"),
    (["--preset", "no-such-style"], "unknown preset 'no-such-style'"),
])
def test_bad_options_fail_before_any_model_loads(monkeypatch, capsys, inputs, tmp_path, argv, needle):
    from guided.stylize import Stylizer

    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: pytest.fail("models loaded")))
    photo, painting = inputs
    out = tmp_path / "report"
    code = main(["compare", str(photo), "--style", str(painting), "--prompt", "x", "--tiny", *argv,
                 "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("guided: error:") and needle in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_backbone_option_reaches_the_model_loader(monkeypatch, capsys, inputs, tmp_path):
    from guided.errors import GuidedError
    from guided.stylize import Stylizer

    seen = {}

    def load(cls, **kw):
        seen.update(kw)
        raise GuidedError("stop before loading")

    monkeypatch.setattr(Stylizer, "load", classmethod(load))
    photo, painting = inputs
    weights = str(tmp_path / "vgg16.safetensors")
    assert main(["compare", str(photo), "--style", str(painting), "--prompt", "x", "--backbone", weights,
                 "-o", str(tmp_path / "r")]) == 2
    assert seen["backbone"] == weights
    assert "stop before loading" in capsys.readouterr().err


def test_missing_inputs_and_foreign_folders(capsys, inputs, tmp_path):
    photo, painting = inputs
    assert main(["compare", str(tmp_path / "nope.jpg"), "--prompt", "x", "-o", str(tmp_path / "r")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert main(["compare", str(photo), "-o", str(tmp_path / "r")]) == 2  # no prompt, no style
    assert "nothing to compare toward" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["compare", str(photo), "--prompt", "x", "-o", str(foreign)]) == 2
    assert "not a compare report" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "r").exists()


def test_a_failure_mid_run_leaves_no_report(monkeypatch, stylizer, inputs, tmp_path):
    import guided.compare.run as compare_module

    def broken(*args, **kwargs):
        raise RuntimeError("stage failed")

    monkeypatch.setattr(compare_module, "_stylize_stage", broken)
    photo, painting = inputs
    with pytest.raises(RuntimeError, match="stage failed"):
        compare_module.compare(photo, styles=[painting], prompt="x", stylizer=stylizer, out_dir=tmp_path / "r",
                               gatys_options={"iterations": 1})
    assert list(tmp_path.iterdir()) == []


def test_peak_memory_falls_back_where_the_reset_is_ignored(monkeypatch):
    """Some sandboxes accept the write to /proc/self/clear_refs and ignore it (CI did): then the
    peak cannot be split per stage, and PeakMemory must say so instead of reporting stale peaks."""
    from guided.compare import memory as compare_module

    if compare_module._memory_status() is None:
        pytest.skip("no /proc/self/status VmHWM on this system")
    monkeypatch.setattr(compare_module, "_clear_refs", lambda: True)  # the write "succeeds", nothing resets
    memory = compare_module.PeakMemory()
    assert not memory.per_stage
    assert "not reset per stage" in memory.method
    assert memory.peak_mb() > 0


def test_peak_memory_is_measured_per_stage():
    from guided.compare import PeakMemory

    memory = PeakMemory()
    if not memory.per_stage:
        pytest.skip(f"no per-stage peak on this system: {memory.method}")
    memory.reset()
    base = memory.peak_mb()
    import mmap

    # 200 MB of fresh pages, every one written (a Python object could reuse freed, resident heap)
    with mmap.mmap(-1, 200 * 2 ** 20) as block:
        chunk = b"x" * 2 ** 20
        for offset in range(0, len(block), len(chunk)):
            block[offset:offset + len(chunk)] = chunk
        high = memory.peak_mb()
    memory.reset()
    after = memory.peak_mb()
    assert high - base > 150  # the stage's allocation shows in its peak ...
    assert after < high - 150  # ... and not in the next stage's, after the reset


def test_curves_of_a_subsampled_history_keep_their_step_numbers(tmp_path):
    from guided.io.plots import curve_points, plot_curves

    history = [{"step": s, "loss": 1.0 / (s + 1), "tv": float("nan")} for s in range(0, 1200)][::2]
    points = curve_points(history, "loss", x_key="step")
    assert [x for x, _ in points][-1] == 1198 and len(points) == 600
    assert [x for x, _ in curve_points(history, "loss")][-1] == 599  # by position, as compare's panels plot
    assert curve_points(history, "tv", x_key="step") == []  # non-finite values are left out
    path = plot_curves([("train", history, "step")], tmp_path / "c.png", x_key="step")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
