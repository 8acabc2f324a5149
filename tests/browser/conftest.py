"""Browser fixtures: the session app served by a live werkzeug server in a background thread,
and Debian's Chromium driven by Playwright (sync API).

The server serves the very app object of the session `app` fixture, so the browser and the test
share one database (in-memory SQLite with StaticPool, or the PostgreSQL test database). The server
is single-threaded (threaded=False): one request at a time, as the shared SQLite connection needs.
"""

import os
import shutil
import threading

import pytest

from tests.conftest import PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 20_000  # generous: CI runs the browser tests beside another xdist worker on 2 cores


@pytest.fixture(scope="session")
def live_server(app):
    """Serve the session app on 127.0.0.1:<free port>; yields the base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):  # keep failure reports readable; errors still log
            pass

    server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"no Chromium at {CHROMIUM}; run `bash scripts/ensure-browser.sh`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser, live_server):
    """A fresh context (no cookies) per test; its page fails fast instead of waiting 30 s."""
    context = browser.new_context(base_url=live_server, locale="en-US", viewport={"width": 1366, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    p = context.new_page()
    try:
        yield p
    finally:
        context.close()


def login(page, base, username, password=PASSWORD):
    """Sign in through FAB's login form and wait for the clients list."""
    page.goto(f"{base}/login/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form [type=submit]")
    page.wait_for_url("**/clients/list/**")
    return page
