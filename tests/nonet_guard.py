"""A socket guard: connections anywhere but loopback raise instead of reaching the network."""
from __future__ import annotations

import ipaddress
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetworkForbidden(RuntimeError):
    pass


def _is_loopback(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect(self, address):
    if self.family != socket.AF_UNIX and not _is_loopback(address):
        raise NetworkForbidden(f"tests must not use the network (connect to {address!r})")
    return _real_connect(self, address)


def _connect_ex(self, address):
    if self.family != socket.AF_UNIX and not _is_loopback(address):
        raise NetworkForbidden(f"tests must not use the network (connect to {address!r})")
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost") and not _is_loopback((host,)):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise NetworkForbidden(f"tests must not resolve host names ({host!r})") from None
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.getaddrinfo = _getaddrinfo


def uninstall() -> None:
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    socket.getaddrinfo = _real_getaddrinfo
