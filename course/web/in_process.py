"""The app served in this process, for a caller outside course.web that drives it by HTTP without a
server (the admin benchmark): Starlette's TestClient over the ASGI app create_app builds, every
middleware included. Only course.web imports the web frameworks (tests/test_architecture.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from course.settings import Settings
from course.web.app import create_app


def in_process_client(settings: Settings, *, base_url: str = "http://testserver") -> TestClient:
    """A client of the app for `settings`; use it as a context manager (it runs the app's lifespan)."""
    return TestClient(create_app(settings), base_url=base_url)
