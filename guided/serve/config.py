"""`ServeConfig`: what `guided serve` was started with, a why per default; the bind/auth rule."""
from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from guided.errors import GuidedError
from guided.validate import number

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one server process (the options of `guided serve`)."""

    host: str = "127.0.0.1"  # loopback: only this machine can connect unless the user decides otherwise
    port: int = 7860  # Gradio's customary port, so links and habits from other SD web UIs carry over
    out: Path = Path("out/serve")  # job records, uploads and results live here and survive restarts
    tiny: bool = False  # False: the real weights; True: tiny random models built in code (a labelled smoke test)
    nets: Path | None = None  # folder of fast networks (.safetensors/.onnx); None: the Fast tab is off
    max_upload_mb: float = 20.0  # a 20 MB body holds a 24-megapixel JPEG plus paintings; larger is a mistake
    queue: int = 8  # waiting jobs; a tiny-model job takes ~1 s, a real one ~30 s: 8 is minutes of work
    auth: tuple[str, str] | None = field(default=None, repr=False)  # HTTP Basic user and password
    insecure_no_auth: bool = False  # a non-loopback bind without auth only when the user says so
    max_steps_kept: int = 2000  # per-step loss rows kept per job record: enough to draw any curve
    # Host names besides this machine's own that requests may be addressed to (a reverse proxy's public
    # name). None by default: a page on any other name is a DNS-rebinding attempt (security.AllowedHosts).
    allowed_hosts: tuple[str, ...] = ()

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2 ** 20)

    def checked(self) -> ServeConfig:
        """Refuse settings that are wrong or unsafe, one line naming the option."""
        number(self.port, "--port", low=0, high=65535, integer=True)
        number(self.max_upload_mb, "--max-upload-mb", low=0, high=1024, low_open=True)
        number(self.queue, "--queue", low=1, high=10_000, integer=True)
        if self.auth is not None:
            user, password = self.auth
            if not user or not password or ":" in user:
                raise GuidedError("`--auth` must be USER:PASS with a non-empty user (no ':') and password")
        if not is_loopback(self.host) and self.auth is None and not self.insecure_no_auth:
            raise GuidedError(f"`--host` {self.host!r} is reachable from other machines: give --auth USER:PASS "
                              "(or --auth-file FILE), or --insecure-no-auth if you really mean anyone may use it")
        for name in self.allowed_hosts:
            check_host_name(name)
        if self.nets is not None and not Path(self.nets).is_dir():
            raise GuidedError(f"`--nets` '{self.nets}' is not a folder")
        return self


_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$", re.I)


def check_host_name(name: str) -> str:
    """`name` as a host name or IP address for `--allowed-host`, else a GuidedError naming it."""
    plain = name.strip("[]") if isinstance(name, str) else name
    try:
        ipaddress.ip_address(plain)
        return name
    except ValueError:
        pass
    if not isinstance(name, str) or not _HOST_NAME.match(name):
        raise GuidedError(f"`--allowed-host` {name!r} must be a host name or an IP address, without a scheme, "
                          "port, path or wildcard (e.g. studio.example.org)")
    return name


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a name that is not `localhost`
    counts as reachable from elsewhere, since it may resolve to any interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(text: str, *, what: str = "--auth") -> tuple[str, str]:
    """`USER:PASS` as a pair (the password may contain ':')."""
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise GuidedError(f"`{what}` must be USER:PASS, got a value without both parts")
    return user, password


def read_auth_file(path: str | Path) -> tuple[str, str]:
    """The first non-empty line of `path` as USER:PASS (so the password stays out of `ps` and shell history)."""
    path = Path(path).expanduser()
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise GuidedError(f"`--auth-file` '{path}' cannot be read: {exc.strerror if isinstance(exc, OSError) else exc}"
                          ) from None
    if not lines:
        raise GuidedError(f"`--auth-file` '{path}' is empty; write USER:PASS on its first line")
    return parse_auth(lines[0], what="--auth-file")
