"""`guided batch` on two CPU processes with torchrun (gloo over loopback): every item exactly once."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from factories import noise_folder as _images
from PIL import Image

from guided.batch.journal import MANIFEST, read_records

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_do_each_item_exactly_once(tmp_path):
    folder, out, style = tmp_path / "in", tmp_path / "out", tmp_path / "style.png"
    _images(folder, 7)
    Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8)).save(style)
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
           str(_free_port()), "-m", "guided", "batch", str(folder), "-o", str(out), "--recursive",
           "--method", "gatys", "--style", str(style), "--backbone", "vgg19-random", "--preset", "d2l",
           "--size", "32", "--iterations", "2", "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "7 done, 0 failed, 0 already done of 7 items" in done.stderr  # the totals of both ranks

    records = read_records(out / MANIFEST)
    outputs = sorted(r["output"] for r in records)
    expected = sorted(str(p.relative_to(folder).as_posix()) + ".d2l.png" for p in folder.rglob("*.png"))
    assert outputs == expected  # each item exactly once in the merged manifest
    assert {r["status"] for r in records} == {"done"} and {r["rank"] for r in records} == {0, 1}
    assert sorted(str(p.relative_to(out).as_posix()) for p in out.rglob("*.png")) == expected
    assert not list(out.glob("manifest.rank*"))  # folded into manifest.jsonl by rank 0

    # A rerun (here on one process) finds everything done.
    from guided.cli import main

    assert main(["batch", str(folder), "-o", str(out), "--recursive", "--method", "gatys", "--style", str(style),
                 "--backbone", "vgg19-random", "--preset", "d2l", "--size", "32", "--iterations", "2",
                 "--no-progress"]) == 0
    assert len(read_records(out / MANIFEST)) == 7
