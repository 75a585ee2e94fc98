"""`guided serve`: the web UI and the REST API on this machine (http://127.0.0.1:7860 by default)."""
from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from guided.errors import GuidedError

logger = logging.getLogger(__name__)

#: Packages `guided serve` needs beyond the library: the `serve` extra of pyproject.toml.
SERVE_PACKAGES = ("fastapi", "uvicorn", "multipart", "gradio")


def add_parser(sub) -> None:
    from guided.serve.config import ServeConfig

    d = ServeConfig()
    p = sub.add_parser("serve", help="web UI and REST API on this machine",
                       description="Start one process serving the web UI at / and the REST API under /api/v1 "
                                   "(OpenAPI schema at /api/v1/openapi.json). Binds 127.0.0.1 unless told "
                                   "otherwise; another address needs --auth (or --insecure-no-auth).")
    p.add_argument("--host", default=d.host, help=f"address to bind (default {d.host}: this machine only)")
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument("--out", type=Path, default=d.out, help=f"job records, uploads and results (default {d.out})")
    p.add_argument("--tiny", action="store_true", default=d.tiny,
                   help="serve tiny RANDOM models built in code: a smoke test, not real stylizations")
    p.add_argument("--nets", type=Path, help="folder of fast networks (.safetensors or .onnx) for the Fast tab")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb,
                   help=f"largest request body in MB, UI and API (default {d.max_upload_mb:g})")
    p.add_argument("--queue", type=int, default=d.queue, help=f"jobs that may wait (default {d.queue}); "
                                                               "more are answered 429")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--auth", metavar="USER:PASS", help="require this user and password (HTTP Basic)")
    who.add_argument("--auth-file", metavar="FILE", help="the same, read from the first line of FILE")
    p.add_argument("--insecure-no-auth", action="store_true",
                   help="allow a non-loopback --host without --auth (anyone who can reach it may use it)")
    p.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=list(d.allowed_hosts),
                   metavar="NAME", help="also answer requests addressed to NAME (a reverse proxy's public name; "
                                        "repeatable). Others than this machine's own names and addresses are "
                                        "refused (421), which stops DNS-rebinding pages")
    p.add_argument("--no-ui", action="store_true", help="serve the REST API only")
    p.set_defaults(func=run)


def missing_packages() -> list[str]:
    return [name for name in SERVE_PACKAGES if importlib.util.find_spec(name) is None]


def config_from(args: argparse.Namespace):
    """The checked `ServeConfig` of the parsed options."""
    from guided.serve.config import ServeConfig, parse_auth, read_auth_file

    auth = parse_auth(args.auth) if args.auth else (read_auth_file(args.auth_file) if args.auth_file else None)
    return ServeConfig(host=args.host, port=args.port, out=args.out, tiny=args.tiny, nets=args.nets,
                       max_upload_mb=args.max_upload_mb, queue=args.queue, auth=auth,
                       insecure_no_auth=args.insecure_no_auth, allowed_hosts=tuple(args.allowed_hosts)).checked()


def first_run(config):
    """Default models missing: fetch them when downloads are allowed (saying what and how big first),
    else serve tiny models with a loud notice. Returns the config to serve with."""
    import dataclasses

    from guided.models.checkpoints import offline
    from guided.models.download import download, plan

    if config.tiny or not plan("stylize"):
        return config
    if offline():
        logger.warning("NOTICE: the default models are not on this machine and downloads are off "
                       "(HF_HUB_OFFLINE/GUIDED_OFFLINE): serving tiny RANDOM models instead. "
                       "Run `guided models --download stylize` where the internet is reachable.")
        return dataclasses.replace(config, tiny=True)
    logger.info("the default models are not on this machine: fetching them once (see `guided models`)")
    download("stylize", say=lambda line: logger.info("%s", line))
    return config


def run(args: argparse.Namespace) -> int:
    missing = missing_packages()
    if missing:
        raise GuidedError(f"`guided serve` needs {', '.join(missing)}: pip install 'guided[serve]'")
    config = config_from(args)
    from guided.serve.config import is_loopback

    if not is_loopback(config.host) and config.auth is None:
        logger.warning("--insecure-no-auth: %s:%d is open to anyone who can reach it, without a password",
                       config.host, config.port)
    import uvicorn

    from guided.serve.app import create_app
    from guided.stylize import Stylizer

    config = first_run(config)
    stylizer = Stylizer.load(tiny=config.tiny)  # at start: a missing weight is said now, not on the first job
    app = create_app(config, stylizer=stylizer, ui=not args.no_ui)
    shown = f"[{config.host}]" if ":" in config.host else config.host
    models = "tiny" if config.tiny else "default"
    print(f"guided serve: http://{shown}:{config.port}/  (API: /api/v1, models: {models}, "
          f"results under {config.out})", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", server_header=False,
                proxy_headers=False, timeout_graceful_shutdown=10)
    return 0
