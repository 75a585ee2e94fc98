"""`guided serve`: the web UI and the REST API in one process (FastAPI; the UI is Gradio mounted at /).

`config` the settings and the bind/auth rule, `security` the safety middleware, `store` the job
records on disk, `options` the job options checked with the library's validators, `runner` one job
through the library, `worker` the queue and its single worker, `fastnets` the fast networks of
`--nets`, `api` the /api/v1 routes, `app` the app factory, `ui` the Gradio interface.

    from guided.serve import ServeConfig, create_app
"""
from __future__ import annotations

import importlib

_NAMES = {"ServeConfig": "config", "create_app": "app"}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'guided.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(f"guided.serve.{_NAMES[name]}"), name)
