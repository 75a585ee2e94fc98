"""`create_app(config)`: one ASGI app, the REST API under /api/v1 and the web UI at /.

    from guided.serve import ServeConfig, create_app
    app = create_app(ServeConfig(tiny=True, out=Path("out/serve")))   # then uvicorn.run(app)

Safety middleware wraps everything (see `guided.serve.security`); the UI library's analytics are
off and its file routes are fenced to its own upload folder, so the server makes no outbound
connection and serves no file it did not make.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from guided.serve.config import ServeConfig
from guided.serve.fastnets import FastNets
from guided.serve.runner import Runner
from guided.serve.store import JobStore
from guided.serve.worker import JobQueue

logger = logging.getLogger(__name__)

#: Environment the UI library reads at import and start: no telemetry, no update checks.
QUIET_UI_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SHARE": "False", "GRADIO_SSR_MODE": "False",
                "GRADIO_MCP_SERVER": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}


class Models:
    """The Stylizer, loaded once: given at start, or on the first job that needs it."""

    def __init__(self, tiny: bool, stylizer=None):
        self.tiny = tiny
        self._stylizer = stylizer
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            if self._stylizer is None:
                from guided.stylize import Stylizer

                logger.info("loading the %s models", "tiny" if self.tiny else "default")
                self._stylizer = Stylizer.load(tiny=self.tiny)
            return self._stylizer


@dataclass
class ServerState:
    """What the API and the UI share."""

    config: ServeConfig
    store: JobStore
    queue: JobQueue
    nets: FastNets
    models: Models

    @property
    def ui_upload_dir(self) -> Path:
        return Path(self.config.out) / "ui-files"


def make_state(config: ServeConfig, *, stylizer=None) -> ServerState:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    store = JobStore(out, max_losses=config.max_steps_kept)
    nets = FastNets(config.nets)
    models = Models(config.tiny, stylizer)
    runner = Runner(store, stylizer=models, nets=nets, tiny=config.tiny)
    queue = JobQueue(store, runner, size=config.queue)
    return ServerState(config, store, queue, nets, models)


def create_app(config: ServeConfig, *, stylizer=None, ui: bool = True):
    """The FastAPI app: API, UI (when `ui` and the UI library is installed) and safety middleware.
    `stylizer`: an already loaded `Stylizer` (tests share one); else loaded on first use."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from guided.serve import security
    from guided.serve.api import error, make_router

    config = config.checked()
    state = make_state(config, stylizer=stylizer)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.queue.start()
        logger.info("serving %s models; jobs and results under %s", "tiny" if config.tiny else "default",
                    config.out)
        try:
            yield
        finally:
            state.queue.stop()

    app = FastAPI(title="guided", version=_version(), lifespan=lifespan, openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None)  # the docs pages load scripts from a CDN: off
    app.state.guided = state
    app.include_router(make_router(state))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "form")]
        name = where[0] if where else None
        what = "is required" if first.get("type") == "missing" else f"is invalid ({first.get('msg', '')})"
        return error(422, f"`{name}` {what}" if name else "invalid request", field=name)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    if ui:
        _mount_ui(app, state)
    # Middleware: the last added runs first. No origin may read responses cross-site (and with a
    # CORS policy of our own the UI library adds none of its looser one).
    app.add_middleware(CORSMiddleware, allow_origins=[], allow_methods=[], allow_headers=[])
    app.add_middleware(security.UIFileGuard, upload_dir=state.ui_upload_dir)
    app.add_middleware(security.BodyLimit, limit=config.max_upload_bytes)
    app.add_middleware(security.BasicAuth, credentials=config.auth)
    app.add_middleware(security.SameOrigin)
    app.add_middleware(security.AllowedHosts, bound=config.host, allowed=config.allowed_hosts)
    app.add_middleware(security.SecurityHeaders)
    return app


@contextlib.contextmanager
def serving_in_background(app, port: int, *, start_timeout: float = 60.0):
    """Run `app` with uvicorn on 127.0.0.1:`port` in a daemon thread for the `with` block (tests, the
    load bench); every wait is bounded. Raises RuntimeError when it does not start in time."""
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"the server did not start within {start_timeout:g} s")
        yield server
    finally:
        server.should_exit = True
        thread.join(30)


def _version() -> str:
    from guided import __version__

    return __version__


def ui_missing() -> str | None:
    """Why the web UI cannot be mounted (its library is not installed), or None."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        return "the web UI needs gradio: pip install 'guided[serve]'"
    return None


def _mount_ui(app, state: ServerState) -> None:
    missing = ui_missing()
    if missing:
        logger.warning("%s; serving the REST API only", missing)
        return
    state.ui_upload_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(QUIET_UI_ENV)
    os.environ["GRADIO_TEMP_DIR"] = str(state.ui_upload_dir.resolve())
    import gradio as gr

    from guided.serve.ui import THEME, UI_CSS, build_ui

    blocks = build_ui(state)
    gr.mount_gradio_app(app, blocks, path="/", max_file_size=state.config.max_upload_bytes, ssr_mode=False,
                        mcp_server=False, pwa=False, enable_monitoring=False, run_history=False,
                        footer_links=[], allowed_paths=[], show_error=True, theme=THEME, css=UI_CSS)
