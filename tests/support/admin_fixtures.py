"""Helpers for the admin tests: make an admin or an API token straight in the database, and sign a
TestClient in through the real login form (CSRF field and all)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from course.accounts.store import create_admin, create_api_token
from course.models import Admin, AdminRole
from tests.support.web_fixtures import csrf_token_of

PASSWORD = "a long test password"


def make_admin(sessions: sessionmaker[Session], email: str, role: AdminRole, *, now, password: str = PASSWORD) -> int:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        admin, _ = create_admin(session, email=email, role=role, password=password, now=now)
        return admin.id


def make_token(sessions: sessionmaker[Session], role: AdminRole, *, now) -> str:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        _, raw = create_api_token(session, name=f"{role} token", role=role, created_by=None, now=now)
        return raw


def must_change_password(sessions: sessionmaker[Session], admin_id: int) -> None:
    with sessions.begin() as session:
        session.execute(update(Admin).where(Admin.id == admin_id).values(password_must_change=True))


def sign_in(client: TestClient, email: str, password: str = PASSWORD, *, next_path: str = "") -> str:
    """Post the login form; returns where it sent the browser."""
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"email": email, "password": password, "next": next_path, "csrf_token": csrf_token_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code in (303, 401, 429), response.text
    return response.headers.get("location", str(response.status_code))


def csrf_of(client: TestClient, path: str = "/admin/account") -> str:
    return csrf_token_of(client.get(path).text)
