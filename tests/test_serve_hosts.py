"""DNS rebinding: the server answers only requests whose `Host` names it, on every route and method."""
from __future__ import annotations

import http.client
import socket

import pytest
from serve_helpers import client_for, png_bytes, submit, wait

from guided.errors import GuidedError
from guided.serve.config import ServeConfig
from guided.serve.security import host_allowed, normal_host

pytest.importorskip("gradio", reason="the web UI needs the serve extra: pip install 'guided[serve]'")

REBOUND = "evil.example:7860"
#: (method, path) over the API, the UI page, its upload and file routes, and a route that does not exist.
ROUTES = [("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/{job}"), ("GET", "/api/v1/jobs/{job}/image"),
          ("GET", "/api/v1/jobs/{job}/preview"), ("DELETE", "/api/v1/jobs/{job}"), ("POST", "/api/v1/jobs"),
          ("POST", "/api/v1/fast"), ("GET", "/api/v1/health"), ("GET", "/api/v1/openapi.json"), ("GET", "/"),
          ("HEAD", "/"), ("OPTIONS", "/api/v1/jobs"), ("PUT", "/api/v1/jobs"), ("PATCH", "/api/v1/jobs"),
          ("POST", "/gradio_api/upload"), ("GET", "/gradio_api/file={upload}"), ("GET", "/gradio_api/info"),
          ("GET", "/config"), ("GET", "/no/such/route")]


@pytest.fixture(scope="module")
def served(tmp_path_factory, stylizer):
    """A server with its UI and one finished job, whose result a rebinding page would want to read."""
    root = tmp_path_factory.mktemp("hosts")
    with client_for(root, stylizer, ui=True) as client:
        job = submit(client).json()["id"]
        assert wait(client, job)["status"] == "done"
        upload = client.app.state.guided.ui_upload_dir / "probe.png"
        upload.parent.mkdir(parents=True, exist_ok=True)
        upload.write_bytes(png_bytes())
        yield client, job, upload


@pytest.mark.parametrize("origin", [None, "http://evil.example:7860"])
@pytest.mark.parametrize("method, path", ROUTES)
def test_a_rebinding_request_is_refused_on_every_route(served, method, path, origin):
    client, job, upload = served
    headers = {"Host": REBOUND, **({"Origin": origin} if origin else {})}
    response = client.request(method, path.format(job=job, upload=upload), headers=headers)
    assert response.status_code == 421, (method, path, response.status_code)
    if method != "HEAD":
        message = response.json()["error"]
        assert "evil.example" in message and "--allowed-host" in message and "\n" not in message
    assert job not in response.text and b"\x89PNG" not in response.content  # nothing of the user's comes back


def test_the_same_requests_for_this_server_are_answered(served):
    client, job, upload = served
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "127.0.0.1", "LOCALHOST:8000"):
        assert client.get("/api/v1/jobs", headers={"Host": host}).status_code == 200, host
        image = client.get(f"/api/v1/jobs/{job}/image", headers={"Host": host})
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert client.get("/", headers={"Host": "localhost:7860"}).status_code == 200
    assert client.get(f"/gradio_api/file={upload}", headers={"Host": "127.0.0.1:7860"}).status_code == 200
    origin = {"Host": "localhost:7860", "Origin": "http://localhost:7860"}
    assert submit(client, headers=origin).status_code == 202  # the UI's own pages, reached as localhost


def test_a_name_given_with_allowed_host_is_answered(tmp_path, stylizer):
    with client_for(tmp_path, stylizer, allowed_hosts=("studio.example.org",)) as client:
        assert client.get("/api/v1/health", headers={"Host": "studio.example.org"}).status_code == 200
        assert client.get("/api/v1/health", headers={"Host": "Studio.Example.org.:443"}).status_code == 200
        assert client.get("/api/v1/health", headers={"Host": "other.example.org"}).status_code == 421
        assert client.get("/api/v1/health", headers={"Host": "studio.example.org.evil.example"}).status_code == 421


@pytest.mark.parametrize("given, bound, allowed", [
    ("127.0.0.1:7860", "127.0.0.1", True), ("127.0.0.5", "127.0.0.1", True), ("[::1]:1", "127.0.0.1", True),
    ("localhost", "::1", True), ("evil.example", "127.0.0.1", False), ("localhost.evil.example", "127.0.0.1", False),
    ("", "127.0.0.1", False), ("192.168.1.5:7860", "127.0.0.1", False), ("192.168.1.5:7860", "192.168.1.5", True),
    ("10.0.0.7", "0.0.0.0", True), ("[fe80::1]:80", "::", True), ("myhost.lan:7860", "0.0.0.0", False),
    ("myhost.lan:7860", "myhost.lan", True), ("evil.example", "0.0.0.0", False)])
def test_the_host_rule(given, bound, allowed):
    assert host_allowed(given, bound) is allowed


def test_normal_host_strips_ports_brackets_case_and_the_final_dot():
    assert [normal_host(h) for h in ("A.Example.:80", "[::1]:7860", "::1", "127.0.0.1:1", "x")] == [
        "a.example", "::1", "::1", "127.0.0.1", "x"]


@pytest.mark.parametrize("bad", ["http://studio.example", "studio.example/path", "studio.example:443", "", "a b",
                                 "*.example.org"])
def test_a_malformed_allowed_host_is_one_line_naming_it(tmp_path, bad):
    with pytest.raises(GuidedError, match="`--allowed-host`") as caught:
        ServeConfig(out=tmp_path, allowed_hosts=(bad,)).checked()
    assert repr(bad) in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_takes_allowed_host_more_than_once(tmp_path):
    from guided.cli import build_parser
    from guided.cli.serve import config_from

    args = build_parser().parse_args(["serve", "--out", str(tmp_path), "--allowed-host", "a.example",
                                      "--allowed-host", "b.example"])
    assert config_from(args).allowed_hosts == ("a.example", "b.example")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_refuses_a_rebound_name_over_its_socket(tmp_path, stylizer):
    from guided.serve.app import create_app, serving_in_background

    port = _free_port()
    app = create_app(ServeConfig(tiny=True, out=tmp_path / "serve", port=port), stylizer=stylizer, ui=False)
    with serving_in_background(app, port):
        for host, status in ((f"evil.example:{port}", 421), (f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200)):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", "/api/v1/jobs", headers={"Host": host})
                assert connection.getresponse().status == status, host
            finally:
                connection.close()
