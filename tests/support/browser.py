"""Chromium for the browser tests: Debian's chromium driven by Playwright, the app served by uvicorn
on a real port, axe-core's verdict, and the folder the screenshots go to.

One place for what every browser test needs, so they launch the same browser the same way and
judge accessibility by the same rule (no serious or critical axe-core violation)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The two widths every page and email is looked at: a desktop window and a phone.
VIEWPORTS: dict[str, dict[str, int]] = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian Chromium (skips the test when it is not installed), closed afterwards."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Any, label: str, **options: Any) -> Any:
    """A browsing context at one of VIEWPORTS ("desktop" or "phone"; a phone has a 2x screen)."""
    phone = label == "phone"
    return browser.new_context(viewport=VIEWPORTS[label], device_scale_factor=2 if phone else 1, is_mobile=phone, **options)


def serious_axe_violations(page: Any, name: str) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each, naming the page."""
    return axe_violations(page, name, impacts=("serious", "critical"))


def axe_violations(page: Any, name: str, *, impacts: tuple[str, ...] = ("minor", "moderate", "serious", "critical")) -> list[str]:
    """axe-core's violations of these impacts (every level by default) on the page as it is now,
    one line each, naming the page."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{name}: {violation['id']} ({violation['impact']}): {violation['help']} — {[node['target'] for node in violation['nodes']][:3]}"
        for violation in results.response["violations"]
        if violation["impact"] in impacts
    ]


def held_port() -> socket.socket:
    """A listening socket on a free local port, held until the server takes it (no race for a free port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    return listener


@contextmanager
def served(app: Any, listener: socket.socket) -> Iterator[None]:
    """The ASGI app under uvicorn in a thread, on the held socket, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {listener.getsockname()[1]}")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def artefacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> Path:
    """Where a test's screenshots go: the folder named by COURSE_TEST_ARTEFACTS, or else pytest's
    temporary folder for the run; one subfolder per test module. Printed past pytest's capture so a
    person can open them."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    configured = os.environ.get("COURSE_TEST_ARTEFACTS")
    folder = Path(configured).resolve() / module if configured else tmp_path_factory.mktemp(f"{module}-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\nscreenshots: {folder}")
    return folder
