"""Fixtures for browser journeys: the app on a real socket, and Chromium (Debian's) through Playwright.

    def test_x(live_server, browser):
        context = browser.new_context()
        page = context.new_page()
        page.goto(live_server.url + "/login")

`live_server` serves the `app` fixture of tests/conftest.py (a fresh database per test) with werkzeug's
threaded server on a free port, and runs the worker's fast jobs (queued webhooks, confirmed market orders)
every 0.2 s as the worker process would; uploads go to the test's tmp_path. `browser` is one Chromium per session;
open a context per person (each has its own cookies). Screenshots go to tests/e2e/screenshots/ (git-ignored).
"""
from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


@dataclass
class LiveServer:
    url: str
    app: object


@pytest.fixture
def live_server(app, tmp_path):
    from werkzeug.serving import make_server

    app.config["UPLOAD_DIR"] = str(tmp_path / "uploads")
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    from tests.rails_support import JobsThread
    from webapp.deposits.tasks import process_notifications
    from webapp.market.tasks import place_orders
    worker = JobsThread(app, [process_notifications, place_orders])
    yield LiveServer(url=f"http://127.0.0.1:{port}", app=app)
    worker.close()
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshot():
    """screenshot(page, "name") saves tests/e2e/screenshots/name.png (full page)."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page, name: str):
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    return take


@pytest.fixture
def mp():
    """The Mercado Pago emulator, for journeys that go through the BRL rails."""
    from tests.rails_support import mp_config
    from sandbox.mercadopago import start_in_thread
    server = start_in_thread(mp_config())
    yield server
    server.shutdown()


@pytest.fixture
def rails_app(db_url, mp, tmp_path):
    """The app wired to the emulator and served on a real socket (the emulator delivers webhooks to it)."""
    from tests.rails_support import close_app, make_app
    app = make_app(db_url, MERCADO_PAGO_BASE_URL=mp.url, UPLOAD_DIR=str(tmp_path / "uploads"))
    yield app
    close_app(app)
