"""`guided serve` is safe by default: each rule, tested on the app with its web UI."""
from __future__ import annotations

import base64
import json
import socket
import sys
import types

import PIL.Image
import pytest
from serve_helpers import client_for, png_bytes, submit, wait

from guided.errors import GuidedError
from guided.serve.config import ServeConfig, is_loopback

pytest.importorskip("gradio", reason="the web UI needs the serve extra: pip install 'guided[serve]'")


@pytest.fixture(scope="module")
def ui_client(tmp_path_factory, stylizer):
    """One server with its web UI for the module (building the UI takes seconds)."""
    with client_for(tmp_path_factory.mktemp("ui"), stylizer, ui=True, max_upload_mb=1) as client:
        yield client


# -- binding and authentication ------------------------------------------------------------------
@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("::", False), ("myhost.example", False)])
def test_only_loopback_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_auth_or_an_explicit_opt_out(tmp_path):
    assert ServeConfig().host == "127.0.0.1"
    with pytest.raises(GuidedError, match="--auth"):
        ServeConfig(host="0.0.0.0", out=tmp_path).checked()
    ServeConfig(host="0.0.0.0", out=tmp_path, auth=("ann", "secret")).checked()
    ServeConfig(host="0.0.0.0", out=tmp_path, insecure_no_auth=True).checked()


def test_the_cli_refuses_and_warns_in_one_line(tmp_path, capsys, monkeypatch):
    from guided.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--auth" in err and "--insecure-no-auth" in err
    (tmp_path / "pw").write_text("\n")
    assert main(["serve", "--auth-file", str(tmp_path / "pw")]) == 2
    assert "empty" in capsys.readouterr().err
    import guided.cli.serve as serve_cli

    monkeypatch.setattr(serve_cli, "missing_packages", lambda: ["gradio"])
    assert main(["serve"]) == 2
    assert "pip install 'guided[serve]'" in capsys.readouterr().err


def test_the_insecure_opt_out_prints_a_warning(tmp_path, capsys, monkeypatch):
    import uvicorn

    from guided.cli import main
    from guided.stylize import Stylizer

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(kw))
    monkeypatch.setattr(Stylizer, "load", classmethod(lambda cls, **kw: None))
    assert main(["serve", "--host", "0.0.0.0", "--insecure-no-auth", "--tiny", "--no-ui",
                 "--out", str(tmp_path / "o")]) == 0
    assert started["host"] == "0.0.0.0"
    assert "--insecure-no-auth" in capsys.readouterr().err


def test_with_auth_every_route_needs_the_credentials(tmp_path, stylizer):
    good = {"Authorization": "Basic " + base64.b64encode(b"ann:s3cret:x").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ann:wrong").decode()}
    with client_for(tmp_path, stylizer, ui=True, auth=("ann", "s3cret:x")) as client:
        for path in ("/api/v1/health", "/api/v1/openapi.json", "/", "/config"):
            response = client.get(path)
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
            assert client.get(path, headers=bad).status_code == 401
        assert submit(client).status_code == 401
        assert client.get("/api/v1/health", headers=good).status_code == 200
        assert client.get("/", headers=good).status_code == 200
        assert submit(client, headers=good).status_code == 202


# -- requests from other sites -------------------------------------------------------------------
def test_a_cross_origin_post_is_refused(ui_client):
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://127.0.0.1:7860.evil.example"}):
        response = submit(ui_client, headers=headers)
        assert response.status_code == 403 and "cross-origin" in response.json()["error"]
        upload = ui_client.post("/gradio_api/upload", headers=headers,
                                files={"files": ("a.png", png_bytes(), "image/png")})
        assert upload.status_code == 403  # the cross-site upload of CVE-2024-1727
    assert submit(ui_client, headers={"Origin": "http://127.0.0.1:7860"}).status_code == 202  # its own pages
    assert "access-control-allow-origin" not in ui_client.get(
        "/api/v1/health", headers={"Origin": "https://evil.example"}).headers


# -- files ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/gradio_api/file=/etc/passwd", "/gradio_api/file=%2Fetc%2Fpasswd", "/gradio_api/file=%252Fetc%252Fpasswd",
    "/gradio_api/file=../../../../etc/passwd", "/gradio_api/file=..%2F..%2F..%2Fetc%2Fpasswd",
    "/gradio_api/file=%252e%252e%252f%252e%252e%252fetc%252fpasswd", "/gradio_api/file/etc/passwd",
    "/file=/etc/passwd", "/gradio_api/file=C:%5CWindows%5Cwin.ini", "/gradio_api/file=/etc/passwd%00.png",
    "/gradio_api/file=http://169.254.169.254/latest/meta-data/", "/gradio_api/file=https://example.com/x.png",
])
def test_traversal_and_urls_on_the_ui_file_routes_are_refused(ui_client, path):
    response = ui_client.get(path)
    assert "root:" not in response.text
    if "/../" in path:  # the HTTP client folds `..` itself: /etc/passwd, which is no route at all
        assert response.status_code == 404
    else:
        assert response.status_code == 403
        assert response.json() == {"error": "file not allowed"}  # our guard answered, before the UI library


@pytest.mark.parametrize("raw", [b"/gradio_api/file=../../../../etc/passwd",
                                 b"/gradio_api/file=/tmp/x/../../etc/passwd",
                                 b"/gradio_api/file=%2e%2e/%2e%2e/etc/passwd"])
def test_the_ui_file_guard_reads_the_raw_path(tmp_path, raw):
    """What a client that does not fold `..` (curl --path-as-is) sends reaches the guard as is."""
    import asyncio

    from guided.serve.security import UIFileGuard

    sent, reached = [], []

    async def app(scope, receive, send):
        reached.append(scope)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": raw.decode(), "raw_path": raw, "headers": []}
    asyncio.run(UIFileGuard(app, tmp_path)(scope, None, send))
    assert not reached and sent[0]["status"] == 403


def test_a_symlink_in_the_ui_upload_folder_does_not_lead_out(ui_client):
    state = ui_client.app.state.guided
    link = state.ui_upload_dir / "escape.txt"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/passwd")
    try:
        assert ui_client.get(f"/gradio_api/file={link}").status_code == 403
    finally:
        link.unlink()


@pytest.mark.parametrize("path", ["/gradio_api/proxy=https://example.com/", "/proxy=https://example.com/",
                                  "/gradio_api/run-history/buckets", "/monitoring",
                                  "/gradio_api/vibe-code/", "/%67radio_api/proxy=https://example.com/"])
def test_ui_routes_that_reach_out_or_edit_code_are_not_served(ui_client, path):
    assert ui_client.get(path).status_code == 404


def test_uploads_get_server_names_and_no_client_path_is_opened(ui_client):
    files = [("image", ("../../../../tmp/evil\\name\x00.png", png_bytes(), "image/png")),
             ("style", ("/etc/passwd", png_bytes(), "image/png"))]
    response = ui_client.post("/api/v1/jobs", files=files, data={"options": json.dumps({"prompt": "x", "steps": 2,
                                                                                        "size": 32})})
    assert response.status_code == 202
    job = wait(ui_client, response.json()["id"])
    inputs = ui_client.app.state.guided.store.folder(job["id"]) / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == ["0.upload", "1.upload"]
    assert "evil" not in json.dumps(job) and "passwd" not in json.dumps(job)


def test_the_upload_cap_holds_in_the_ui_too(ui_client):
    big = png_bytes() + b"\x00" * (2 * 2 ** 20)  # the fixture's cap is 1 MB
    assert ui_client.post("/gradio_api/upload", files={"files": ("a.png", big, "image/png")}).status_code == 413
    assert submit(ui_client, image=big).status_code == 413


def test_security_headers(ui_client):
    headers = ui_client.get("/api/v1/health").headers
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


# -- no outbound connection ------------------------------------------------------------------------
def test_no_outbound_connection_at_start_or_during_use(tmp_path, stylizer, monkeypatch):
    """The suite's socket guard stays on; on top, every attempt (even one a thread would swallow)
    is recorded, through building the app, loading the UI and running a job."""
    import nonet_guard

    attempts = []

    def record_connect(self, address):
        if self.family != socket.AF_UNIX and not nonet_guard._is_loopback(address):
            attempts.append(address)
        return nonet_guard._connect(self, address)

    def record_lookup(host, *args, **kwargs):
        if host not in (None, "localhost") and not nonet_guard._is_loopback((host,)):
            attempts.append(host)
        return nonet_guard._getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", record_connect)
    monkeypatch.setattr(socket, "getaddrinfo", record_lookup)
    with client_for(tmp_path, stylizer, ui=True) as client:
        for path in ("/", "/config", "/gradio_api/info", "/theme.css", "/api/v1/models", "/api/v1/presets"):
            assert client.get(path).status_code == 200, path
        assert wait(client, submit(client).json()["id"])["status"] == "done"
    assert attempts == []


# -- fast networks ---------------------------------------------------------------------------------
class _FakeNet:
    def __call__(self, image, *, size=None, preserve_color=False):
        return types.SimpleNamespace(image=PIL.Image.eval(image, lambda v: 255 - v),
                                     metadata={"kind": "fast", "network": "fake"})


def test_nets_are_resolved_inside_their_folder_and_fast_returns_the_png(tmp_path, stylizer, monkeypatch):
    nets = tmp_path / "nets"
    nets.mkdir()
    for name in ("mosaic.safetensors", "candy.onnx", "pickled.pt", "notes.txt"):
        (nets / name).write_bytes(b"x")
    (tmp_path / "outside.safetensors").write_bytes(b"x")
    (nets / "escape.safetensors").symlink_to(tmp_path / "outside.safetensors")
    loaded = []
    fake = types.ModuleType("guided.fast")
    fake.FastStylizer = types.SimpleNamespace(load=lambda path: loaded.append(path) or _FakeNet())
    monkeypatch.setitem(sys.modules, "guided.fast", fake)
    with client_for(tmp_path, stylizer, nets=nets) as client:
        assert client.get("/api/v1/nets").json() == {"available": True, "reason": None,
                                                     "nets": ["candy.onnx", "mosaic.safetensors"]}
        for name in ("../outside.safetensors", "escape.safetensors", "pickled.pt", str(nets / "mosaic.safetensors")):
            response = client.post("/api/v1/fast", files={"image": ("a.png", png_bytes(), "image/png")},
                                   data={"net": name})
            assert response.status_code == 422 and response.json()["field"] == "net", name
        response = client.post("/api/v1/fast", files={"image": ("a.png", png_bytes(), "image/png")},
                               data={"net": "mosaic.safetensors"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        import io

        out = PIL.Image.open(io.BytesIO(response.content))
        assert json.loads(out.text["guided"])["kind"] == "fast"
        assert loaded == [nets.resolve() / "mosaic.safetensors"]
        job = submit(client, method="fast", options={"net": "candy.onnx"}).json()
        assert wait(client, job["id"])["status"] == "done"
        bad = client.post("/api/v1/fast", files={"image": ("a.png", b"nope", "image/png")},
                          data={"net": "mosaic.safetensors"})
        assert bad.status_code == 415


def test_network_errors_name_the_network_never_the_servers_folders(tmp_path, stylizer):
    """A broken or wrong network file (here: text, and a training checkpoint) is refused by its name alone."""
    import torch

    from guided.fast import TransformerNet
    from guided.fast.checkpoint import save_checkpoint

    nets = tmp_path / "secret-place" / "nets"
    nets.mkdir(parents=True)
    (nets / "garbage.safetensors").write_bytes(b"not safetensors at all")
    net = TransformerNet("half")
    save_checkpoint(nets / "mosaic.ckpt.safetensors", net, torch.optim.Adam(net.parameters()), {"step": 0}, {})
    with client_for(tmp_path, stylizer, nets=nets) as client:
        for name in ("garbage.safetensors", "mosaic.ckpt.safetensors"):
            direct = client.post("/api/v1/fast", files={"image": ("a.png", png_bytes(), "image/png")},
                                 data={"net": name})
            job = submit(client, method="fast", options={"net": name})
            record = wait(client, job.json()["id"]) if job.status_code == 202 else job.json()
            for message in (direct.json()["error"], record["error"]):
                assert name in message and "secret-place" not in message and str(tmp_path) not in message, message
            assert direct.status_code == 422
