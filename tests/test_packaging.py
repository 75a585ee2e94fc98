"""The wheel users install: every module and the built-in presets are inside it, and an installed
copy (no source tree beside it) finds its presets."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources (an in-tree build would leave build/ behind)."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("guided", "pipelines", "prompts"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (found,) = out.glob("guided-*.whl")
    return found


def test_wheel_holds_every_module_and_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("guided", "pipelines"):
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert path.relative_to(ROOT).as_posix() in names, f"{path} is not in the wheel"
    presets = sorted(p.name for p in (ROOT / "prompts").glob("*.json"))
    assert len(presets) >= 12
    for name in presets:
        assert f"guided/prompts/{name}" in names, f"prompts/{name} is not in the wheel"


def test_installed_wheel_finds_its_presets(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    # -S: no site processing, so the editable install of this checkout cannot shadow the wheel;
    # the venv's site-packages goes last, for the dependencies only.
    code = ("import sys; sys.path[:0] = [sys.argv[1]]; sys.path.append(sys.argv[2]); "
            "import guided.guidance.presets as p; print(p.__file__); print(len(p.list_presets()))")
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(target), sysconfig.get_paths()["purelib"]],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    module_file, count = proc.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert int(count) == len(list((ROOT / "prompts").glob("*.json")))
