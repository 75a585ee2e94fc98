"""Helpers of the `guided serve` tests: an in-process client on tiny models, uploads, polling."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="guided serve needs the serve extra: pip install 'guided[serve]'")
pytest.importorskip("httpx", reason="the in-process client needs httpx")

from factories import painting, photo  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from guided.serve.app import create_app  # noqa: E402
from guided.serve.config import ServeConfig  # noqa: E402

#: Options that make a tiny stylize job take a fraction of a second: 4 steps x 0.5 = 2 guided steps.
QUICK = {"prompt": "an oil painting", "steps": 4, "strength": 0.5, "size": 32}
#: The classic path on the tiny random VGG: 2 iterations at 32 px.
QUICK_GATYS = {"iterations": 2, "size": 32, "preset": "d2l-fast"}


def png_bytes(image=None, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    (image if image is not None else photo(48, 64)).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def painting_bytes() -> bytes:
    return png_bytes(painting(3))


def client_for(tmp_path: Path, stylizer, *, ui: bool = False, **config) -> TestClient:
    """A TestClient on a fresh server (use it as a context manager: that starts the worker)."""
    config.setdefault("tiny", True)
    config.setdefault("out", tmp_path / "serve")
    # Addressed as a browser on this machine addresses it (the default `testserver` is not a name of ours).
    return TestClient(create_app(ServeConfig(**config), stylizer=stylizer, ui=ui), base_url="http://127.0.0.1:7860")


def submit(client, *, method: str = "stylize", options: dict | None = None, image: bytes | None = None,
           styles: list[bytes] = (), **kwargs):
    files = [("image", ("photo.png", image if image is not None else png_bytes(), "image/png"))]
    files += [("style", (f"style{i}.png", data, "image/png")) for i, data in enumerate(styles)]
    data = {"method": method, "options": json.dumps(QUICK if options is None else options)}
    return client.post("/api/v1/jobs", files=files, data=data, **kwargs)


def wait(client, job_id: str, *, statuses=("done", "failed", "cancelled"), timeout: float = 120.0) -> dict:
    """Poll the job until it reaches one of `statuses` (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = client.get(f"/api/v1/jobs/{job_id}").json()
        if record["status"] in statuses:
            return record
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {record['status']} after {timeout} s")
