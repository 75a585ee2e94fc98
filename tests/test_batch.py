"""`guided batch`: discovery, naming, the manifest, resuming, failures, signals, the CLI.

The engine tests plug in a cheap deterministic job (colour inversion) so that they test the
batch logic, not stylization; the CLI tests run the real gatys job on a random VGG at 32 px.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from factories import noise as _noise
from PIL import Image, ImageOps

from guided.batch import BatchSummary, param_hash, run_batch
from guided.batch.items import output_name, plan_items
from guided.batch.journal import MANIFEST, JournalWriter, merge_manifests, rank_manifest, read_records
from guided.errors import GuidedError
from guided.io.discovery import find_images, image_extensions
from guided.io.images import ALLOWED_FORMATS, read_metadata

ROOT = Path(__file__).resolve().parents[1]
EXTS = image_extensions(ALLOWED_FORMATS)
GOOD = ["a.png", "b.jpg", "rgba.png", "sub/c.png"]
BAD = ["bomb.png", "empty.png", "truncated.jpg"]


class InvertJob:
    """A cheap, deterministic job: the colour-inverted image. Counts its loads and runs."""

    method = "invert"

    def __init__(self, labels=("invert",), knob: int = 1, on_run=None):
        self.labels = tuple(labels)
        self.knob = knob
        self.on_run = on_run
        self.loads = 0
        self.runs: list[str] = []

    def params(self, label: str) -> dict:
        return {"knob": self.knob}

    def load(self) -> None:
        self.loads += 1

    def run(self, image, label):
        self.runs.append(label)
        if self.on_run is not None:
            self.on_run(len(self.runs))
        return ImageOps.invert(image), {"kind": "test-invert", "label": label}


def write_good(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    _noise(1).save(folder / "a.png")
    _noise(2).save(folder / "b.jpg", quality=95)
    _noise(3).save(folder / "sub" / "c.png")
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[:, :16] = (255, 0, 0, 255)  # left half opaque red, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")


_BOMB: list[bytes] = []


def _bomb() -> bytes:
    """A 12 kB PNG of 10000x10000 px (1e8 px, over Pillow's decompression-bomb limit), made once."""
    if not _BOMB:
        buf = io.BytesIO()
        Image.new("1", (10_000, 10_000)).save(buf, "PNG")
        _BOMB.append(buf.getvalue())
    return _BOMB[0]


def write_bad(folder: Path) -> None:
    buf = io.BytesIO()
    _noise(4, (64, 64)).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "bomb.png").write_bytes(_bomb())
    (folder / "empty.png").write_bytes(b"")


@pytest.fixture
def mixed(tmp_path) -> Path:
    """Good images, three broken files, plus files that are not items at all."""
    folder = tmp_path / "in"
    write_good(folder)
    write_bad(folder)
    (folder / "notes.txt").write_text("not an image")
    _noise(5).save(folder / ".hidden.png")
    return folder


def _batch(job, folder, out, **kw) -> BatchSummary:
    return run_batch(job, folder, out, recursive=True, progress=False, **kw)


def _latest(out: Path) -> dict[str, dict]:
    return {r["output"]: r for r in read_records(out / MANIFEST)}


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]




# --- a whole batch ------------------------------------------------------------------------------

def test_mixed_folder_good_ones_done_three_failures_itemised_exit_1(mixed, tmp_path):
    out = tmp_path / "out"
    job = InvertJob()
    summary = _batch(job, mixed, out)
    assert (summary.total, summary.done, summary.failed, summary.skipped) == (7, 4, 3, 0)
    assert summary.exit_code == 1
    assert job.loads == 1  # models once per process, not per item
    latest = _latest(out)
    assert sorted(latest) == sorted(output_name(p, "invert") for p in GOOD + BAD)
    for rel in GOOD:
        record = latest[output_name(rel, "invert")]
        assert record["status"] == "done" and record["reason"] is None and record["rank"] == 0
        assert record["params"] == param_hash("invert", "invert", {"knob": 1}) and record["seconds"] >= 0
        produced = out / record["output"]
        with Image.open(produced) as im:
            im.load()
            assert im.size == (32, 32)
        assert read_metadata(produced)["batch"]["input"] == rel
    expected = {"bomb.png": "decompression bomb", "empty.png": "empty", "truncated.jpg": "truncated"}
    for rel, words in expected.items():
        record = latest[output_name(rel, "invert")]
        assert record["status"] == "failed"
        assert rel in record["reason"] and words in record["reason"] and "\n" not in record["reason"]
        assert not (out / record["output"]).exists()
    assert sorted(name for name, _ in summary.failures) == sorted(output_name(p, "invert") for p in BAD)
    assert not _leftovers(out)
    # RGBA is a good input: composited on white, so the transparent half inverts to black.
    with Image.open(out / output_name("rgba.png", "invert")) as im:
        assert im.getpixel((0, 0)) == (0, 255, 255) and im.getpixel((31, 0)) == (0, 0, 0)


def test_rerun_does_nothing_for_done_items(mixed, tmp_path):
    out = tmp_path / "out"
    _batch(InvertJob(), mixed, out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    job = InvertJob()
    summary = _batch(job, mixed, out)
    # The broken files are retried (they may have been fixed) and fail again; nothing else runs.
    assert (summary.done, summary.failed, summary.skipped) == (0, 3, 4)
    assert job.runs == [] and summary.exit_code == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps


def test_progress_bar_shows_done_failed_remaining_and_eta(mixed, tmp_path, capsys):
    run_batch(InvertJob(), mixed, tmp_path / "out", recursive=True, progress=True)
    err = capsys.readouterr().err
    assert "7/7" in err and "done=4" in err and "failed=3" in err and "remaining=0" in err
    assert "<00:00" in err  # tqdm's elapsed<remaining time estimate


def test_changed_parameter_redoes_everything(tmp_path):
    write_good(tmp_path / "in")
    out = tmp_path / "out"
    assert _batch(InvertJob(knob=1), tmp_path / "in", out).done == 4
    summary = _batch(InvertJob(knob=2), tmp_path / "in", out)
    assert (summary.done, summary.skipped, summary.exit_code) == (4, 0, 0)
    hashes = {r["params"] for r in _latest(out).values()}
    assert hashes == {param_hash("invert", "invert", {"knob": 2})}


def test_deleted_output_and_changed_input_are_redone(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)
    _batch(InvertJob(), folder, out)
    (out / output_name("a.png", "invert")).unlink()
    _noise(9).save(folder / "b.jpg")  # a new version of an input
    job = InvertJob()
    summary = _batch(job, folder, out)
    assert (summary.done, summary.skipped) == (2, 2)
    assert (out / output_name("a.png", "invert")).is_file()


def test_none_succeeded_exit_2(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_bad(folder)
    summary = _batch(InvertJob(), folder, tmp_path / "out")
    assert (summary.done, summary.failed, summary.exit_code) == (0, 3, 2)


def test_one_failing_item_does_not_stop_the_batch(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)

    def explode(n):
        if n == 2:
            raise RuntimeError("CUDA out of memory\nsecond line of details")

    summary = _batch(InvertJob(on_run=explode), folder, out)
    assert (summary.done, summary.failed) == (3, 1)
    reasons = [r["reason"] for r in _latest(out).values() if r["status"] == "failed"]
    assert reasons == ["RuntimeError: CUDA out of memory"]


def test_several_presets_give_one_output_per_image_and_preset(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)
    job = InvertJob(labels=("ink-wash", "oil"))
    summary = _batch(job, folder, out)
    assert summary.done == 8 and sorted(job.runs) == ["ink-wash"] * 4 + ["oil"] * 4
    assert (out / "sub" / "c.png.ink-wash.png").is_file() and (out / "sub" / "c.png.oil.png").is_file()


def test_name_collisions_get_distinct_outputs(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    _noise(1).save(folder / "a.png")
    Image.new("RGB", (32, 32), (10, 200, 30)).save(folder / "a.jpg", quality=100)
    summary = _batch(InvertJob(), folder, out)
    assert summary.done == 2
    with Image.open(out / "a.png.invert.png") as png, Image.open(out / "a.jpg.invert.png") as jpg:
        assert np.abs(np.asarray(png, dtype=int) - np.asarray(jpg, dtype=int)).mean() > 20


# --- discovery and naming -----------------------------------------------------------------------

def test_discovery_sorted_hidden_skipped_symlinks_stay_in_tree(tmp_path):
    folder, outside = tmp_path / "in", tmp_path / "outside"
    write_good(folder)
    outside.mkdir()
    _noise(7).save(outside / "secret.png")
    (folder / ".cache").mkdir()
    _noise(8).save(folder / ".cache" / "x.png")
    _noise(5).save(folder / ".hidden.png")
    (folder / "notes.txt").write_text("text")
    (folder / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "dir-out").symlink_to(outside, target_is_directory=True)
    (folder / "link-in.png").symlink_to(folder / "a.png")
    (folder / "broken.png").symlink_to(folder / "missing.png")
    (folder / "out").mkdir()
    _noise(6).save(folder / "out" / "a.png.invert.png")  # an earlier output inside the input folder
    found = find_images(folder, extensions=EXTS, recursive=True, exclude=folder / "out")
    assert found == ["a.png", "b.jpg", "link-in.png", "rgba.png", "sub/c.png"]
    assert find_images(folder, extensions=EXTS) == ["a.png", "b.jpg", "link-in.png", "rgba.png"]


def test_usage_errors_before_any_work(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    job = InvertJob()
    with pytest.raises(GuidedError, match="no images found"):
        _batch(job, folder, tmp_path / "out")
    with pytest.raises(GuidedError, match="is not a folder"):
        _batch(job, tmp_path / "nope", tmp_path / "out")
    with pytest.raises(GuidedError, match="is `INPUT_DIR`"):
        _batch(job, folder, folder)
    assert job.loads == 0
    with pytest.raises(GuidedError, match="letter case"):
        plan_items(["A.png", "a.png"], ["x"])
    with pytest.raises(GuidedError, match="preset name 'a.b'"):
        plan_items(["a.png"], ["a.b"])
    with pytest.raises(GuidedError, match="twice"):
        plan_items(["a.png"], ["x", "x"])


# --- the manifest -------------------------------------------------------------------------------

def test_torn_manifest_line_is_skipped_and_appends_start_fresh(tmp_path):
    path = tmp_path / MANIFEST
    with JournalWriter(path) as m:
        m.write({"output": "a", "status": "done"})
    with open(path, "a") as f:
        f.write('{"output": "b", "sta')  # a kill -9 in the middle of a write
    with JournalWriter(path) as m:
        m.write({"output": "c", "status": "done"})
    assert [r["output"] for r in read_records(path)] == ["a", "c"]


def test_merge_folds_rank_files_once(tmp_path):
    with JournalWriter(tmp_path / MANIFEST) as m:
        m.write({"output": "a", "status": "done", "rank": 0})
    for rank, name in ((0, "b"), (1, "c")):
        with JournalWriter(rank_manifest(tmp_path, rank)) as m:
            m.write({"output": name, "status": "done", "rank": rank})
    # A crash after the merged file was written but before the rank files were removed.
    (tmp_path / "manifest.rank2.jsonl").write_text('{"output": "a", "status": "done", "rank": 0}\n')
    assert merge_manifests(tmp_path) == 2
    assert [r["output"] for r in read_records(tmp_path / MANIFEST)] == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]
    assert merge_manifests(tmp_path) == 0


def test_leftovers_of_a_crashed_distributed_run_are_merged_and_skipped(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)
    _batch(InvertJob(), folder, out)
    # As if two ranks had recorded their items and been killed before the final merge.
    records = read_records(out / MANIFEST)
    (out / MANIFEST).unlink()
    for rank in (0, 1):
        with JournalWriter(rank_manifest(out, rank)) as m:
            for record in records[rank::2]:
                m.write({**record, "rank": rank})
    (out / ".a.png.invert.png.0123abcd.tmp").write_bytes(b"\x89PNG half")  # a killed writer's temp
    job = InvertJob()
    summary = _batch(job, folder, out)
    assert (summary.done, summary.skipped) == (0, 4) and job.runs == [] and job.loads == 0
    assert not list(out.glob("manifest.rank*")) and len(read_records(out / MANIFEST)) == 4
    assert not _leftovers(out)


# --- signals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_abandons_the_current_item_cleanly(tmp_path, sig):
    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)
    before = signal.getsignal(sig)  # SIG_IGN for SIGINT when the suite runs as a background job

    def stop(n):
        if n == 2:
            os.kill(os.getpid(), sig)  # arrives while item 2 is being computed

    summary = _batch(InvertJob(on_run=stop), folder, out)
    assert summary.interrupted == sig and summary.exit_code == 128 + sig
    records = read_records(out / MANIFEST)
    assert [(r["input"], r["status"]) for r in records] == [("a.png", "done")]
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png.invert.png"] and not _leftovers(out)
    assert signal.getsignal(sig) == before  # handlers restored
    summary = _batch(InvertJob(), folder, out)
    assert (summary.done, summary.skipped) == (3, 1)


def test_signal_during_save_completes_and_records_that_item(tmp_path):
    from guided.io.images import save_image

    folder, out = tmp_path / "in", tmp_path / "out"
    write_good(folder)

    def save_then_signal(image, path, *, metadata):
        os.kill(os.getpid(), signal.SIGTERM)  # lands inside the save + record section
        return save_image(image, path, metadata=metadata)

    summary = _batch(InvertJob(), folder, out, save_image=save_then_signal)
    assert summary.interrupted == signal.SIGTERM
    assert [r["status"] for r in read_records(out / MANIFEST)] == ["done"]
    assert (out / "a.png.invert.png").is_file() and not _leftovers(out)


# --- the command --------------------------------------------------------------------------------

GATYS_TINY = ["--method", "gatys", "--backbone", "vgg19-random", "--preset", "d2l", "--size", "32"]


def _square_folder(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _noise(10 + i).save(folder / f"img{i:02d}.png")


def _main(argv) -> int:
    from guided.cli import main

    return main([str(a) for a in argv])


def test_cli_gatys_batch_then_rerun(tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    _square_folder(folder, 2)
    write_bad(folder)
    style = tmp_path / "style.png"
    _noise(99).save(style)
    argv = ["batch", folder, "-o", out, "--style", style, "--iterations", "2", "--no-progress", *GATYS_TINY]
    assert _main(argv) == 1
    err = capsys.readouterr().err
    assert "2 done, 3 failed" in err and "truncated.jpg" in err
    meta = read_metadata(out / "img00.png.d2l.png")
    assert meta["kind"] == "gatys" and meta["random_backbone"] is True
    assert meta["batch"]["input"] == "img00.png" and meta["parameters"]["iterations"] == 2
    assert _main(argv) == 1 and "0 done, 3 failed, 2 already done" in capsys.readouterr().err
    argv[argv.index("2")] = "3"  # --iterations 3: a changed parameter
    assert _main(argv) == 1 and "2 done, 3 failed, 0 already done" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--method", "gatys"], "`--style` is required"),
    (["--method", "gatys", "--style", "nope.png"], "style image 'nope.png' does not exist"),
    (["--iterations", "3", "--prompt", "x"], "--iterations only apply to --method gatys"),
    (["--method", "gatys", "--style", "S", "--preset", "d2l,bad.name"], "preset name 'bad.name'"),
    (["--method", "gatys", "--style", "S", "--preset", "nope"], "`preset` must be one of"),
    (["--tiny", "--preset", "ink-wash,nope"], "unknown preset 'nope'"),
    (["--tiny"], "nothing to stylize toward"),
    (["--method", "gatys", "--style", "S", "--prompt", "x", "--strength", "0.5"],
     "--prompt, --strength only apply to --method stylize"),
    # wrong for every image: refused before the first item instead of failing each one
    (["--tiny", "--prompt", "x", "--strength", "1.5"], "`--strength` must be in (0, 1]"),
    (["--tiny", "--prompt", "x", "--steps", "0"], "`--steps` must be in [1, 999]"),
    (["--tiny", "--prompt", "x", "--size", "8"], "`--size` must be in [32, 4096]"),
    (["--tiny", "--prompt", "x", "--gram-weight", "-1"], "`gram` must be in [0, inf], got -1"),
    (["--tiny", "--style", "S", "--style-weights", "1,2"], "`--style-weights` has 2 values for 1"),
])
def test_cli_usage_errors_exit_2(tmp_path, capsys, extra, words):
    _square_folder(tmp_path / "in", 1)
    _noise(1).save(tmp_path / "s.png")
    extra = [str(tmp_path / "s.png") if e == "S" else e for e in extra]
    assert _main(["batch", tmp_path / "in", "-o", tmp_path / "out", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("guided: error:") and words in err and "Traceback" not in err
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_cli_stylize_batch_tiny_models(tmp_path, capsys):
    pytest.importorskip("guided.stylize", reason="the stylize path is not installed")
    folder, out = tmp_path / "in", tmp_path / "out"
    _square_folder(folder, 2)
    argv = ["batch", folder, "-o", out, "--prompt", "ink wash painting", "--tiny", "--steps", "2",
            "--no-progress"]
    assert _main(argv) == 0, capsys.readouterr().err
    meta = read_metadata(out / "img01.png.stylize.png")
    assert meta["kind"] == "stylize" and meta["batch"]["input"] == "img01.png"
    assert _main(argv) == 0 and "0 done, 0 failed, 2 already done" in capsys.readouterr().err


# --- kill -9 ------------------------------------------------------------------------------------

def test_sigkill_mid_batch_then_rerun_completes_without_duplicates(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    _square_folder(folder, 8)
    style = tmp_path / "style.png"
    _noise(99).save(style)
    # Enough iterations that an item takes a noticeable time, so the kill lands mid-batch.
    argv = ["batch", folder, "-o", out, "--style", style, "--iterations", "8", "--no-progress", *GATYS_TINY]
    proc = subprocess.Popen([sys.executable, "-m", "guided", *map(str, argv)], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(read_records(out / MANIFEST)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.kill()
    proc.wait()
    proc.stderr.close()
    killed_with = read_records(out / MANIFEST)
    assert 2 <= len(killed_with) < 8
    for png in out.glob("*.png"):  # whatever is visible is complete
        with Image.open(png) as im:
            im.load()

    assert _main(argv) == 0
    records = read_records(out / MANIFEST)
    expected = sorted(f"img{i:02d}.png.d2l.png" for i in range(8))
    assert sorted(p.name for p in out.glob("*.png")) == expected and not _leftovers(out)
    assert sorted(r["output"] for r in records if r["status"] == "done") == expected  # each once
    assert records[: len(killed_with)] == killed_with
    for png in out.glob("*.png"):
        assert read_metadata(png)["parameters"]["iterations"] == 8
