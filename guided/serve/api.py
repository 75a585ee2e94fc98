"""The REST API under `/api/v1`: a thin layer over the job queue and the library.

Errors are JSON `{"error": "<one line>", "field": "<option>"}` (field when one is at fault):
413 body over the cap (answered by `security.BodyLimit` before parsing), 415 an upload that is not
an allowed image, 422 a bad option, 429 (with Retry-After) a full queue, 404 an unknown job,
401 missing credentials (when --auth is on), 503 the fast path unavailable.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from guided import __version__
from guided.errors import GuidedError, ImageLoadError, one_line
from guided.serve.fastnets import FastUnavailable
from guided.serve.options import check_options, error_field
from guided.serve.store import FINAL
from guided.serve.worker import QueueFull
from guided.validate import json_object

logger = logging.getLogger(__name__)

PREFIX = "/api/v1"


def error(status: int, message: str, *, field: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": one_line(message)}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def bad_option(exc: GuidedError) -> JSONResponse:
    return error(422, str(exc), field=error_field(str(exc)))


def parse_options(text: str | None) -> dict:
    if text is None or not text.strip():
        return {}
    return json_object(text, "`options`")


def no_job(job_id: str) -> JSONResponse:
    """404 for an unknown job id (shown shortened: it came from the client)."""
    return error(404, f"no job {job_id[:64]!r}")


def make_router(state) -> APIRouter:
    """The routes, bound to `state` (an `app.ServerState`: config, store, queue, nets)."""
    router = APIRouter(prefix=PREFIX)

    @router.post("/jobs", status_code=202, summary="Queue a stylization job")
    async def create_job(image: Annotated[UploadFile, File(description="the photo")],
                         style: Annotated[list[UploadFile] | None, File(description="style image(s)")] = None,
                         method: Annotated[str, Form(description="stylize | gatys | fast | compare")] = "stylize",
                         options: Annotated[str | None, Form(description="JSON object of options")] = None):
        styles = list(style or [])
        try:
            opts = check_options(method, parse_options(options), styles=len(styles), nets=state.nets.names)
        except GuidedError as exc:
            return _fast_unavailable(state, method) or bad_option(exc)
        unavailable = _fast_unavailable(state, method)
        if unavailable is not None:
            return unavailable
        record = state.store.new(method, opts)
        try:
            for upload, what in [(image, "image"), *((s, "style") for s in styles)]:
                await _store_upload(state, record, upload, what)
            state.queue.submit(record)
        except ImageLoadError as exc:
            state.store.discard(record)
            return error(415, str(exc), field=getattr(exc, "field", None))
        except QueueFull as exc:
            state.store.discard(record)
            return error(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
        location = f"{PREFIX}/jobs/{record.id}"
        return JSONResponse(record.to_dict(), status_code=202, headers={"Location": location})

    @router.get("/jobs", summary="All jobs, oldest first")
    def list_jobs():
        return [{"id": r.id, "method": r.method, "status": r.status, "created": r.created}
                for r in state.store.all()]

    @router.get("/jobs/{job_id}", summary="A job's status, progress, losses so far and error")
    def get_job(job_id: str):
        record = state.store.get(job_id)
        if record is None:
            return no_job(job_id)
        return record.to_dict()

    @router.get("/jobs/{job_id}/image", summary="The result PNG with its manifest",
                response_class=FileResponse)
    def get_image(job_id: str):
        record = state.store.get(job_id)
        if record is None:
            return no_job(job_id)
        path = state.store.result_path(job_id)
        if path is None:
            return error(404, f"job {job_id} has no result (status: {record.status})")
        return FileResponse(path, media_type="image/png", filename=f"guided-{job_id[:8]}.png")

    @router.get("/jobs/{job_id}/preview", summary="The latest per-step preview of a running job")
    def get_preview(job_id: str):
        data = state.queue.preview(job_id)
        if data is None:
            return error(404, f"no preview for job {job_id[:64]!r} (not running, or no step yet)")
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    @router.delete("/jobs/{job_id}", summary="Cancel a queued or running job")
    def cancel_job(job_id: str):
        record = state.store.get(job_id)
        if record is None:
            return no_job(job_id)
        if record.status in FINAL:
            return error(409, f"job {job_id} is already {record.status}")
        record = state.queue.cancel(record)
        return JSONResponse(record.to_dict(), status_code=200 if record.status == "cancelled" else 202)

    @router.post("/fast", summary="Stylize with a fast network and return the PNG (synchronous)",
                 response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def fast(image: Annotated[UploadFile, File(description="the photo")],
                   net: Annotated[str | None, Form(description="network file name (see /nets)")] = None,
                   options: Annotated[str | None, Form(description="JSON: size, preserve_color")] = None):
        unavailable = _fast_unavailable(state, "fast")
        if unavailable is not None:
            return unavailable
        try:
            opts = parse_options(options)
            if net is not None:
                opts["net"] = net
            opts = check_options("fast", opts, styles=0, nets=state.nets.names)
        except GuidedError as exc:
            return bad_option(exc)
        from starlette.concurrency import run_in_threadpool

        data = await image.read()
        try:
            png = await run_in_threadpool(_fast_png, state, data, opts)
        except ImageLoadError as exc:
            return error(415, str(exc))
        except FastUnavailable as exc:
            return error(503, str(exc))
        except GuidedError as exc:
            return bad_option(exc)
        return Response(png, media_type="image/png")

    @router.get("/presets", summary="Style presets (guided img2img) and classic presets")
    def presets():
        from guided.gatys.presets import PRESETS
        from guided.guidance.presets import list_presets

        guided_presets = [{k: v for k, v in p.to_dict().items() if k != "path"} for p in list_presets()]
        classic = [{"name": p.name, "description": p.description} for p in PRESETS.values()]
        return {"stylize": guided_presets, "gatys": classic}

    @router.get("/nets", summary="Fast networks in --nets")
    def nets():
        reason = state.nets.why_unavailable()
        return {"available": reason is None, "reason": reason, "nets": state.nets.names()}

    @router.get("/models", summary="Model weights each feature needs and which are present (as `guided models`)")
    def models():
        from guided.models.status import model_status

        return {"tiny": state.config.tiny, "rows": [row.to_dict() for row in model_status()]}

    @router.get("/health", summary="Liveness and queue state")
    def health():
        return {"status": "ok", "version": __version__, "tiny": state.config.tiny,
                "queue": {"waiting": state.queue.waiting(), "size": state.config.queue,
                          "running": state.queue.running()}}

    return router


def _fast_unavailable(state, method: str) -> JSONResponse | None:
    if method != "fast":
        return None
    reason = state.nets.why_unavailable()
    return error(503, reason) if reason else None


async def _store_upload(state, record, upload: UploadFile, what: str) -> Path:
    """Save an upload under a server-chosen name and check it is an allowed image (else 415)."""
    from starlette.concurrency import run_in_threadpool

    from guided.io.images import load_image

    data = await upload.read()
    path = state.store.save_upload(record, data)
    try:
        await run_in_threadpool(load_image, path, what=f"uploaded {what}")
    except ImageLoadError as exc:
        message = str(exc).replace(f"'{path}'", f"#{len(record.inputs)}")  # our path is not the client's business
        err = ImageLoadError(message)
        err.field = what
        raise err from None
    return path


def _fast_png(state, data: bytes, opts: dict) -> bytes:
    """Run a fast network on uploaded bytes; the PNG with its manifest, EXIF stripped."""
    from guided.io.images import load_image, save_image

    tmp_root = Path(state.config.out) / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        upload = Path(tmp) / "upload"
        upload.write_bytes(data)
        try:
            photo = load_image(upload, what="uploaded image")
        except ImageLoadError as exc:
            raise ImageLoadError(str(exc).replace(f"'{upload}'", "")) from None
        image, metadata = state.nets.run(opts["net"], photo, size=opts.get("size"),
                                         preserve_color=bool(opts.get("preserve_color", False)))
        out = save_image(image, Path(tmp) / "result.png", metadata=metadata, sidecar=False)
        return out.read_bytes()
