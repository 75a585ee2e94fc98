"""The REST API of `guided serve`, in process, on tiny models: every endpoint and status code."""
from __future__ import annotations

import io
import json
import threading

import PIL.Image
import pytest
from serve_helpers import QUICK, QUICK_GATYS, client_for, painting_bytes, png_bytes, submit, wait

from guided.io.images import METADATA_KEY
from guided.serve.runner import JobCancelled, Outcome


def test_a_stylize_job_round_trip(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        response = submit(client)
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
        assert job["status"] in ("queued", "running") and job["method"] == "stylize"
        record = wait(client, job["id"])
        assert record["status"] == "done", record["error"]
        assert record["progress"] == {"step": 2, "total": 2}
        assert [row["step"] for row in record["losses"]] == [1, 2]
        assert {"clip_text", "content", "tv"} <= set(record["losses"][0])
        assert record["seconds"] > 0 and record["peak_memory_mb"] > 0
        image = client.get(f"/api/v1/jobs/{job['id']}/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        png = PIL.Image.open(io.BytesIO(image.content))
        manifest = json.loads(png.text[METADATA_KEY])
        assert manifest["kind"] == "stylize" and manifest["serve"] == {"job": job["id"], "method": "stylize"}
        assert manifest["parameters"]["prompt"] == QUICK["prompt"] and manifest["parameters"]["tiny"] is True
        assert client.get("/api/v1/jobs").json()[0]["id"] == job["id"]


def test_a_classic_job_on_the_tiny_random_vgg(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        job = submit(client, method="gatys", options=QUICK_GATYS, styles=[painting_bytes()]).json()
        record = wait(client, job["id"])
        assert record["status"] == "done", record["error"]
        assert record["progress"] == {"step": 2, "total": 2} and len(record["losses"]) == 2
        manifest = json.loads(PIL.Image.open(io.BytesIO(client.get(f"/api/v1/jobs/{job['id']}/image").content))
                              .text[METADATA_KEY])
        assert manifest["kind"] == "gatys" and manifest["random_backbone"] is True
        # the server keeps its own precision, whatever a preset asks (Accelerate's state is process-wide)
        assert manifest["precision"] == stylizer.accelerator.mixed_precision == "no"


def test_a_jobs_scheduler_does_not_carry_over_to_the_next_job(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        first = wait(client, submit(client, options={**QUICK, "scheduler": "euler"}).json()["id"])
        second = wait(client, submit(client).json()["id"])
        schedulers = [json.loads(PIL.Image.open(io.BytesIO(client.get(f"/api/v1/jobs/{r['id']}/image").content))
                                 .text[METADATA_KEY])["parameters"]["scheduler"] for r in (first, second)]
        assert schedulers == ["euler", "ddim"]


def test_a_compare_job_returns_the_report_grid_and_its_metrics(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        job = submit(client, method="compare", options={"prompt": "ink", "steps": 4, "strength": 0.5, "size": 32},
                     styles=[painting_bytes()]).json()
        record = wait(client, job["id"], timeout=300)
        assert record["status"] == "done", record["error"]
        names = [row["name"] for row in record["extra"]["rows"]]
        assert names[0] == "photo" and {"classic", "img2img", "guided"} <= set(names)
        assert PIL.Image.open(io.BytesIO(client.get(f"/api/v1/jobs/{job['id']}/image").content)).width > 32
        from guided.serve import ui_jobs  # what the Compare tab shows: the grid and one metrics row per output

        state = client.app.state.guided
        shown = ui_jobs.finished(state, state.store.get(job["id"]))
        assert shown.report is not None and shown.result is None and len(shown.rows) == len(names)


def test_the_step_preview_is_served_while_a_job_runs(tmp_path, stylizer):
    import torch

    from guided.serve.runner import _png, latents_preview

    preview = PIL.Image.open(io.BytesIO(_png(latents_preview(torch.randn(1, 4, 8, 6)))))
    assert max(preview.size) == 256 and preview.size == (192, 256)  # latents (h 8, w 6) -> RGB, enlarged
    release = threading.Event()
    with client_for(tmp_path, stylizer) as client:
        state = _blocking_runner(client, release)
        job = submit(client).json()
        wait(client, job["id"], statuses=("running",))
        assert client.get(f"/api/v1/jobs/{job['id']}/preview").status_code == 404  # no step yet
        state.queue._current[1].preview = _png(preview)
        response = client.get(f"/api/v1/jobs/{job['id']}/preview")
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        release.set()
        assert wait(client, job["id"])["status"] == "done"
        assert client.get(f"/api/v1/jobs/{job['id']}/preview").status_code == 404


def test_outputs_carry_no_exif_or_gps_from_the_upload(tmp_path, stylizer):
    exif = PIL.Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS IFD: latitude
    upload = png_bytes(fmt="JPEG", exif=exif.tobytes())
    assert PIL.Image.open(io.BytesIO(upload)).getexif()  # the upload does carry it
    with client_for(tmp_path, stylizer) as client:
        job = submit(client, image=upload).json()
        assert wait(client, job["id"])["status"] == "done"
        result = PIL.Image.open(io.BytesIO(client.get(f"/api/v1/jobs/{job['id']}/image").content))
        assert not result.getexif() and "exif" not in result.info


@pytest.mark.parametrize("options, field", [
    ({"strength": 2}, "strength"),
    ({"steps": 2.5}, "steps"),
    ({"guidance_scale": float("nan")}, "options"),  # NaN is not JSON: refused as unparsable
    ({"prompt": "x", "strenght": 0.5}, "strenght"),
    ({"preset": "../../../etc/passwd"}, "preset"),
    ({"preset": "/etc/passwd.json"}, "preset"),
    ({"prompt": 3}, "prompt"),
    ({"prompt": "x", "style_weights": [1, 2]}, "style_weights"),
    ({"prompt": "x", "guidance": {"clip_text": -1}}, "clip_text"),
    ({"prompt": "x", "scheduler": "warp"}, "scheduler"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": ""}, "prompt"),
])
def test_a_bad_option_is_a_422_naming_it(tmp_path, stylizer, options, field):
    with client_for(tmp_path, stylizer) as client:
        if field == "options":
            response = client.post("/api/v1/jobs", files={"image": ("a.png", png_bytes(), "image/png")},
                                   data={"options": '{"guidance_scale": NaN'})
        else:
            response = submit(client, options=options)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["field"] == field and "\n" not in body["error"]
        assert not client.get("/api/v1/jobs").json()  # nothing queued, nothing kept


def test_method_image_and_classic_styles_are_checked(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        assert submit(client, method="paint").json()["field"] == "method"
        missing = client.post("/api/v1/jobs", data={"options": "{}"})
        assert missing.status_code == 422 and missing.json() == {"error": "`image` is required", "field": "image"}
        no_style = submit(client, method="gatys", options=QUICK_GATYS)
        assert no_style.status_code == 422 and no_style.json()["field"] == "style"
        bad = submit(client, method="gatys", options={**QUICK_GATYS, "iterations": -1}, styles=[painting_bytes()])
        assert bad.status_code == 422 and bad.json()["field"] == "iterations"


@pytest.mark.parametrize("data", [b"not an image at all", b"",
                                  b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG header, then nothing
                                  b"GIF89a" + b"\x00" * 8])
def test_an_upload_that_is_not_an_allowed_image_is_a_415(tmp_path, stylizer, data):
    with client_for(tmp_path, stylizer) as client:
        response = submit(client, image=data)
        assert response.status_code == 415, response.text
        assert response.json()["field"] == "image"
        assert str(tmp_path) not in response.text  # the server's paths are not the client's business
        style = submit(client, styles=[data])
        assert style.status_code == 415 and style.json()["field"] == "style"
        assert not list((tmp_path / "serve" / "jobs").iterdir())  # refused uploads are not kept


def test_a_decompression_bomb_is_a_415(tmp_path, stylizer):
    bomb = png_bytes(PIL.Image.new("1", (12_000, 9_000)))  # 108 Mpx in ~15 kB
    assert len(bomb) < 100_000
    with client_for(tmp_path, stylizer) as client:
        response = submit(client, image=bomb)
        assert response.status_code == 415 and "bomb" in response.json()["error"] or "larger" in response.text


def test_a_body_over_the_cap_is_a_413_before_it_is_read(tmp_path, stylizer):
    with client_for(tmp_path, stylizer, max_upload_mb=0.05) as client:
        big = submit(client, image=png_bytes() + b"\x00" * 60_000)
        assert big.status_code == 413 and "--max-upload-mb" in big.json()["error"]
        # A Content-Length over the cap is refused without reading the body at all (none is sent).
        claimed = client.post("/api/v1/jobs", headers={"content-length": str(10 ** 9),
                                                       "content-type": "multipart/form-data; boundary=x"})
        assert claimed.status_code == 413

        head = (b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                b"Content-Type: image/png\r\n\r\n")
        chunked = client.post("/api/v1/jobs", content=iter([head] + [b"\x00" * 8192] * 10),
                              headers={"content-type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413  # no Content-Length: counted while it arrives
        assert not list((tmp_path / "serve" / "jobs").iterdir())


def test_the_body_cap_stops_reading_a_stream_without_length_as_soon_as_it_passes():
    import asyncio

    from guided.serve.security import BodyLimit

    received, sent = [], []

    async def app(scope, receive, send):  # an app that reads the whole body, as a parser would
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"\x00" * 1000, "more_body": len(received) < 1000}

    async def send(message):
        sent.append(message)

    asyncio.run(BodyLimit(app, limit=5000)({"type": "http", "method": "POST", "path": "/", "headers": []},
                                           receive, send))
    assert len(received) == 6 and sent[0]["status"] == 413  # 6 kB read of 1 MB, then refused


def _blocking_runner(client, release: threading.Event):
    """Replace the job runner with one that waits for `release` or a cancel."""
    state = client.app.state.guided

    def run(record, control):
        while not release.wait(0.02):
            if control.cancel.is_set():
                raise JobCancelled(control.reason)
        return Outcome(PIL.Image.new("RGB", (8, 8)), {"kind": "test"})

    state.queue.runner.run = run
    return state


def test_a_full_queue_is_a_429_with_retry_after_and_cancel_works(tmp_path, stylizer):
    release = threading.Event()
    with client_for(tmp_path, stylizer, queue=1) as client:
        _blocking_runner(client, release)
        running = submit(client).json()
        wait(client, running["id"], statuses=("running",))
        queued = submit(client).json()
        full = submit(client)
        assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
        assert "queue is full" in full.json()["error"]
        cancel_queued = client.delete(f"/api/v1/jobs/{queued['id']}")
        assert cancel_queued.status_code == 200 and cancel_queued.json()["status"] == "cancelled"
        cancel_running = client.delete(f"/api/v1/jobs/{running['id']}")
        assert cancel_running.status_code == 202
        record = wait(client, running["id"])
        assert record["status"] == "cancelled" and record["error"] == "cancelled by the user"
        assert client.get(f"/api/v1/jobs/{running['id']}/image").status_code == 404
        assert client.delete(f"/api/v1/jobs/{running['id']}").status_code == 409
        release.set()
        again = submit(client)  # room again
        assert again.status_code == 202 and wait(client, again.json()["id"])["status"] == "done"


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a" * 31 + "%00"])
def test_an_unknown_job_is_a_404(tmp_path, stylizer, job_id):
    with client_for(tmp_path, stylizer) as client:
        for suffix in ("", "/image", "/preview"):
            response = client.get(f"/api/v1/jobs/{job_id}{suffix}")
            assert response.status_code == 404 and "error" in response.json()
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 404


def test_a_restart_keeps_results_and_fails_what_was_cut_off(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        done = wait(client, submit(client).json()["id"])
        first_png = client.get(f"/api/v1/jobs/{done['id']}/image").content
    # A record a killed process left running, and one left queued (as after `kill -9`).
    jobs = tmp_path / "serve" / "jobs"
    for status, job_id in (("running", "a" * 32), ("queued", "b" * 32)):
        (jobs / job_id).mkdir()
        (jobs / job_id / "job.json").write_text(json.dumps({"id": job_id, "method": "stylize", "options": {},
                                                            "status": status}))
        (jobs / job_id / ".result.png.1234abcd.tmp").write_bytes(b"half")  # a killed writer's leftover
    with client_for(tmp_path, stylizer) as client:
        assert client.get(f"/api/v1/jobs/{done['id']}").json()["status"] == "done"
        assert client.get(f"/api/v1/jobs/{done['id']}/image").content == first_png
        for job_id in ("a" * 32, "b" * 32):
            record = client.get(f"/api/v1/jobs/{job_id}").json()
            assert record["status"] == "failed" and "server stopped" in record["error"]
            assert not list((jobs / job_id).glob(".*.tmp"))


def test_a_job_cut_off_by_shutdown_is_marked_failed_with_the_reason(tmp_path, stylizer):
    release = threading.Event()
    with client_for(tmp_path, stylizer) as client:
        _blocking_runner(client, release)
        running = submit(client).json()
        wait(client, running["id"], statuses=("running",))
        queued = submit(client).json()
    records = {r: json.loads((tmp_path / "serve" / "jobs" / r / "job.json").read_text())
               for r in (running["id"], queued["id"])}
    assert records[running["id"]]["status"] == "failed" and "shut down" in records[running["id"]]["error"]
    assert records[queued["id"]]["status"] == "failed" and "before this job ran" in records[queued["id"]]["error"]
    assert not (tmp_path / "serve" / "jobs" / running["id"] / "result.png").exists()


def test_the_read_only_endpoints(tmp_path, stylizer):
    with client_for(tmp_path, stylizer) as client:
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["tiny"] is True and health["queue"]["size"] == 8
        presets = client.get("/api/v1/presets").json()
        assert "ink-wash" in {p["name"] for p in presets["stylize"]} and "path" not in presets["stylize"][0]
        assert {"default", "d2l", "d2l-fast"} == {p["name"] for p in presets["gatys"]}
        models = client.get("/api/v1/models").json()
        assert models["tiny"] is True and {"stylize", "gatys"} <= {r["feature"] for r in models["rows"]}
        schema = client.get("/api/v1/openapi.json").json()
        assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/image", "/api/v1/fast",
                "/api/v1/presets", "/api/v1/nets", "/api/v1/models", "/api/v1/health"} <= set(schema["paths"])
        assert client.get("/docs").status_code == 404  # the docs page would load scripts from a CDN
