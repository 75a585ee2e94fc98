"""Shared test fixtures: no network, offline hubs, real images and weights when present."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED = ROOT.parent / "shared"
SHARED_IMAGES = SHARED / "images"
SHARED_VGG16 = SHARED / "weights" / "vgg16-features-imagenet-ft.safetensors"

sys.path.insert(0, str(TESTS))
from nonet_guard import install, uninstall  # noqa: E402

# Subprocesses (CLI tests) get the same guard through tests/nonet/sitecustomize.py.
os.environ["GUIDED_TEST_NO_NETWORK"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(TESTS / "nonet"), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GUIDED_OFFLINE"] = "1"
os.environ.pop(
    "GUIDED_VGG_WEIGHTS", None)  # a user's setting must not change what the tests load
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests use tiny models: one thread is faster than two there (no sync overhead), and subprocesses
# (CLI tests) inherit it through OMP_NUM_THREADS.
os.environ["OMP_NUM_THREADS"] = "1"
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network():
    """Every test runs with sockets limited to loopback (torch.distributed needs loopback)."""
    install()
    yield
    uninstall()


@pytest.fixture(scope="session")
def stylizer():
    """The tiny-model `Stylizer`, loaded once for the whole run (CLI tests patch `Stylizer.load` to it)."""
    from guided.stylize import Stylizer

    return Stylizer.load(tiny=True)


@pytest.fixture
def shared_images() -> Path:
    if not SHARED_IMAGES.is_dir():
        pytest.skip(f"real test images not present at {SHARED_IMAGES} (they sit beside the project)")
    return SHARED_IMAGES


@pytest.fixture
def vgg16_weights() -> Path:
    if not SHARED_VGG16.is_file():
        pytest.skip(f"real VGG-16 weights not present at {SHARED_VGG16} (they sit beside the project)")
    return SHARED_VGG16
