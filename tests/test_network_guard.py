import os
import socket
import subprocess
import sys

import pytest
from nonet_guard import NetworkForbidden


def test_guard_blocks_network_in_process():
    with pytest.raises(NetworkForbidden):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(NetworkForbidden):
        socket.getaddrinfo("example.org", 443)


def test_guard_allows_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()


def test_guard_blocks_network_in_subprocess():
    code = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert proc.returncode != 0
    assert "NetworkForbidden" in proc.stderr
