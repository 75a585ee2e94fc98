"""`guided serve` in a real browser: headless Chromium (the distribution's package) driven by
Playwright against a real server on loopback, on tiny models. Skips, saying why, without them.

The screenshot is saved as out/screenshots/serve-ui.png (and serve-ui-<tab>.png for the other tabs).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
from pathlib import Path

import PIL.Image
import pytest
from factories import painting, photo

pytest.importorskip("gradio", reason="the web UI needs the serve extra: pip install 'guided[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the server needs the serve extra: pip install 'guided[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the Python package)")

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "out" / "screenshots"
#: Flags for a browser that makes no connection of its own (updates, safe browsing, first-run pages).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    for candidate in (os.environ.get("GUIDED_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    return None


pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium found (apt-get install chromium; "
                                                           ".ci/run installs it); set GUIDED_CHROMIUM to another")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, stylizer):
    """A real uvicorn server on 127.0.0.1 in a thread, stopped at the end (bounded waits)."""
    from guided.serve.app import create_app, serving_in_background
    from guided.serve.config import ServeConfig

    port = _free_port()
    out = tmp_path_factory.mktemp("browser")
    app = create_app(ServeConfig(tiny=True, out=out / "serve", port=port), stylizer=stylizer)
    with serving_in_background(app, port):
        yield f"http://127.0.0.1:{port}", out


@pytest.fixture(scope="module")
def playwright():
    """One Playwright for the module (a second one cannot start while the first runs its event loop)."""
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(server, playwright):
    browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.requests_elsewhere = []
    base = server[0]
    page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:"))
            else page.requests_elsewhere.append(r.url))
    yield page
    browser.close()


def test_upload_pick_a_preset_run_see_and_download_the_result(server, page, tmp_path):
    base, _ = server
    photo_path = tmp_path / "photo.jpg"
    photo(240, 320).save(photo_path, quality=92)
    page.goto(base + "/", wait_until="load")
    page.get_by_role("tab", name="Text prompt").wait_for()
    notice = page.get_by_text("Tiny random models", exact=False).first
    notice.wait_for(state="visible", timeout=30_000)  # rendered after the tabs on a loaded machine
    assert notice.is_visible()

    page.locator("#t-photo input[type=file]").set_input_files(str(photo_path))
    page.get_by_label("Style preset").click()
    page.get_by_role("option", name="ink-wash").click()
    page.get_by_role("button", name="Stylize").first.click()

    link = page.locator("#g-download a")
    link.wait_for()
    slider_images = page.locator("#g-result img")
    assert slider_images.count() >= 2 and all(slider_images.nth(i).get_attribute("src") for i in range(2))
    assert "Done" in page.locator("#g-status").inner_text()
    assert "peak memory" in page.locator("#g-info").inner_text()
    page.wait_for_timeout(2000)  # the loss plot draws asynchronously after its last update
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "serve-ui.png"), full_page=True)

    with page.expect_download() as download_info:
        link.click()
    saved = tmp_path / "downloaded.png"
    download_info.value.save_as(saved)
    image = PIL.Image.open(saved)
    manifest = json.loads(image.text["guided"])
    assert image.format == "PNG" and manifest["kind"] == "stylize"
    assert manifest["parameters"]["preset"] == "ink-wash" and manifest["parameters"]["tiny"] is True
    assert not image.getexif()

    page.get_by_role("button", name="Send", exact=True).click()  # "Send the result to": Classic
    page.locator("#c-photo img").wait_for()
    assert page.get_by_role("tab", name="Classic").get_attribute("aria-selected") == "true"
    assert page.requests_elsewhere == []  # the page loaded nothing from another host


def test_the_other_tabs_render_and_the_fast_tab_says_why_it_is_off(server, page, tmp_path):
    base, _ = server
    page.goto(base + "/", wait_until="load")
    for tab in ("Painting + prompt", "Classic", "Fast", "Compare"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOTS / f"serve-ui-{tab.split()[0].lower()}.png"), full_page=False)
    page.get_by_role("tab", name="Fast").click()
    unavailable = page.get_by_text("Fast networks are not available", exact=False).first
    unavailable.wait_for(state="visible", timeout=30_000)
    assert unavailable.is_visible()


def test_a_mistake_shows_as_one_readable_line(server, page, tmp_path):
    base, _ = server
    page.goto(base + "/", wait_until="load")
    page.get_by_role("tab", name="Classic").click()
    path = tmp_path / "p.png"
    painting(2).save(path)
    page.locator("#c-photo input[type=file]").set_input_files(str(path))  # a photo, but no painting
    page.get_by_role("button", name="Paint (classic)").click()
    error = page.locator("#g-error")
    page.wait_for_function("document.querySelector('#g-error').innerText.includes('style')")
    text = error.inner_text().strip()
    assert "style is missing" in text and "\n" not in text and "Traceback" not in text


def test_the_api_answers_the_same_server(server):
    import urllib.request

    base, _ = server
    with urllib.request.urlopen(base + "/api/v1/health", timeout=10) as response:
        assert json.load(io.TextIOWrapper(response))["tiny"] is True


def test_a_dns_rebinding_page_gets_nothing(server, playwright):
    """Chromium told that evil.example resolves to 127.0.0.1 (what a rebinding attacker's DNS does):
    its page and its same-origin requests to the server are refused, and no job or result leaks."""
    base, _ = server
    port = base.rsplit(":", 1)[1]
    browser = playwright.chromium.launch(executable_path=chromium(), args=[
        *CHROMIUM_FLAGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
    try:
        page = browser.new_page()
        rebound = f"http://evil.example:{port}"
        response = page.goto(rebound + "/api/v1/jobs")
        assert response.status == 421 and "--allowed-host" in response.text()
        seen = page.evaluate("""async () => {
            const jobs = await fetch('/api/v1/jobs');
            const post = await fetch('/api/v1/jobs', {method: 'POST', body: new FormData()});
            return [jobs.status, post.status, await jobs.text()];
        }""")
        assert seen[:2] == [421, 421] and '"id"' not in seen[2]
        ours = page.goto(base + "/api/v1/health")  # the same browser, addressing the server by its own name
        assert ours.status == 200
    finally:
        browser.close()
