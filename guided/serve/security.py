"""The server's safety rules, as plain ASGI middleware (one class per rule) and two path helpers.

Order, outermost first (see `app.create_app`): security headers, the allowed hosts (DNS
rebinding), same-origin, authentication, the body cap, then the guard on the web UI's file
routes. Each refuses with a JSON error of one line, before the request body is read.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from guided.io.files import inside

logger = logging.getLogger(__name__)

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Methods that change state: the ones a cross-site form or script must not be able to send.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def send_error(send: Send, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    """A JSON error `{"error": message}` with `status`, as the REST API answers."""
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class SecurityHeaders:
    """No sniffing of content types, no framing by other sites, no referrer leaving the machine."""

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
               (b"referrer-policy", b"no-referrer"))

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AllowedHosts:
    """Answer only requests whose `Host` names this server: the defence against DNS rebinding.

    A page on evil.example can make its own name resolve to 127.0.0.1; the browser then sends this
    server requests with `Host: evil.example` and a matching `Origin`, so the same-origin rule alone
    passes them, and the page can run jobs and read results. A name nobody configured is refused
    here, on every route, method and websocket, before anything else runs. The port is not compared:
    rebinding is a matter of the name, and an SSH tunnel or a proxy legitimately changes the port."""

    def __init__(self, app: ASGIApp, *, bound: str, allowed: Iterable[str] = ()):
        self.app = app
        self.bound = bound
        self.allowed = frozenset(normal_host(name) for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = header(scope, b"host")
        if given is not None and host_allowed(given, self.bound, self.allowed):
            return await self.app(scope, receive, send)
        logger.warning("refused a request for host %r: %s %s", (given or "")[:100], scope.get("method", "WS"),
                       scope["path"])
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        shown = f"host {given[:100]!r}" if given is not None else "a request without a Host header"
        await send_error(send, 421, f"{shown} is not this server's address; a name it is reached by "
                                    "(behind a proxy) must be given with --allowed-host NAME")


def normal_host(host: str) -> str:
    """`host` as compared: lower case, without a port, brackets or a final dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:7860
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:  # name:port or a.b.c.d:port (a bare IPv6 address has several colons)
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(given: str, bound: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Whether a request for `given` (a `Host` header) may be answered by a server bound to `bound`.

    Allowed: `localhost` and loopback addresses; the bound name or address; any address when bound to
    every interface (an IP address cannot be rebound, only a name can); the names in `allowed`."""
    name, bound = normal_host(given), normal_host(bound)
    if not name:
        return False
    if name in allowed or name == "localhost" or name == bound:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name nobody configured: what a rebinding page sends
    return address.is_loopback or bound in ("", "0.0.0.0", "::")


class SameOrigin:
    """Refuse a state-changing request sent by a page of another site (CSRF, cross-site upload).

    Browsers label such requests with `Origin` and `Sec-Fetch-Site`; clients that are not browsers
    (curl, scripts) send neither and pass. An `Origin` must name this server's own host and port."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS and not _same_origin(scope):
            logger.warning("refused a cross-origin %s %s", scope["method"], scope["path"])
            return await send_error(send, 403, "cross-origin request refused: this server accepts changes only "
                                               "from its own pages")
        await self.app(scope, receive, send)


def _same_origin(scope: Scope) -> bool:
    if (header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
        return False
    origin = header(scope, b"origin")
    if origin is None:
        return True
    host = header(scope, b"host")
    parts = urlsplit(origin)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class BasicAuth:
    """HTTP Basic authentication on every route (API and UI) when `credentials` is set."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str] | None):
        self.app = app
        self.expected = None if credentials is None else f"{credentials[0]}:{credentials[1]}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or self._valid(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await send_error(send, 401, "authentication required: give the user and password set with --auth",
                         [("www-authenticate", 'Basic realm="guided", charset="UTF-8"')])

    def _valid(self, scope: Scope) -> bool:
        value = header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self.expected)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Answer 413 for a body over `limit` bytes: from `Content-Length` before reading a byte, and for
    a body without one (chunked) as soon as the count passes the limit, before the app parses or
    spools it."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    def message(self) -> str:
        return f"request body too large: at most {self.limit / 2 ** 20:g} MB (--max-upload-mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return await send_error(send, 400, "invalid Content-Length header")
            if int(length) > self.limit:
                return await send_error(send, 413, self.message(), [("connection", "close")])
        seen = 0
        started = refused = False

        async def counting_receive() -> dict:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    if not started and not refused:  # answer now: the app may swallow the exception below
                        refused = True
                        await send_error(send, 413, self.message(), [("connection", "close")])
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if refused:  # the 413 has been sent; whatever the app answers after it is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            pass


#: Routes of the mounted web UI that we never serve: Gradio's URL proxy (it fetches other hosts),
#: run history (it connects to remote buckets), monitoring and live code editing.
BLOCKED_UI_PREFIXES = ("/gradio_api/proxy=", "/proxy=", "/gradio_api/run-history", "/gradio_api/runs",
                       "/gradio_api/vibe-", "/gradio_api/undo-vibe-", "/gradio_api/dev/", "/monitoring",
                       "/gradio_api/monitoring", "/gradio_api/custom_component", "/gradio_api/process_recording")
#: Routes that serve a file named in the URL.
FILE_ROUTE_PREFIXES = ("/gradio_api/file=", "/gradio_api/file/", "/file=", "/file/")


class UIFileGuard:
    """The web UI's file routes serve only files inside `upload_dir` (where the UI's own uploads and
    outputs go); anything else, a URL (which the UI library would fetch from the internet) or a
    name with traversal in any encoding, is 403 before the UI sees it. Its blocked routes are 404."""

    def __init__(self, app: ASGIApp, upload_dir: Path):
        self.app = app
        self.upload_dir = Path(upload_dir).resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope["path"]
        plain = fully_unquote(path)
        if plain.startswith(BLOCKED_UI_PREFIXES):
            return await send_error(send, 404, "not found")
        for prefix in FILE_ROUTE_PREFIXES:
            if plain.startswith(prefix) and not self._allowed(plain[len(prefix):].split("?", 1)[0]):
                logger.warning("refused a file request: %r", path[:200])
                return await send_error(send, 403, "file not allowed")
        await self.app(scope, receive, send)

    def _allowed(self, name: str) -> bool:
        if not name or unsafe_name(name) or "://" in name or not name.startswith("/"):
            return False
        return inside(Path(name), self.upload_dir)


def fully_unquote(text: str, rounds: int = 5) -> str:
    """Percent-decoding repeated until nothing changes (double- and triple-encoded forms included)."""
    for _ in range(rounds):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


_SEGMENT = re.compile(r"(^|[/\\])\.\.($|[/\\])")


def unsafe_name(name: str) -> bool:
    """A name with a NUL byte, a backslash, a `..` segment or a control character."""
    return ("\x00" in name or "\\" in name or bool(_SEGMENT.search(name))
            or any(ord(c) < 32 for c in name))
