"""Every admin page and admin API route, found by walking the app's route table, refuses anonymous
access (303 to the sign-in page for pages, 401 for the API) and every role below its own (403);
every admin form refuses a post without its CSRF field. A new route without a guard fails here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.accounts.credentials import ROLE_RANK
from course.models import Admin, AdminRole, ApiToken
from course.web.admin.auth import RequirePage, RequireToken
from course.web.app import create_app
from tests.support.admin_fixtures import make_admin, make_token, sign_in
from tests.support.web_fixtures import TEST_BASE_URL, WebStack
from tests.support.web_fixtures import *  # noqa: F403

# Admin routes anyone may reach: the way in and out.
PUBLIC = {
    ("GET", "/admin"),
    ("GET", "/admin/"),
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("GET", "/admin/login/code"),
    ("POST", "/admin/login/code"),
    ("POST", "/admin/logout"),
    # an invitation's link is its own credential (signed, once, expiring)
    ("GET", "/admin/invitation/{token}"),
    ("POST", "/admin/invitation/{token}"),
}


def _guards(dependant) -> Iterator[RequirePage | RequireToken]:  # type: ignore[no-untyped-def]
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, (RequirePage, RequireToken)):
            yield dependency.call
        yield from _guards(dependency)


def admin_routes(app: FastAPI) -> list[tuple[str, str, RequirePage | RequireToken | None]]:
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.path.startswith(("/admin", "/api/admin")):
            continue
        guards = list(_guards(route.dependant))
        assert len(guards) <= 1, f"{route.path} has {len(guards)} guards"
        for method in sorted(route.methods):
            found.append((method, route.path, guards[0] if guards else None))
    return found


def _concrete(path: str) -> str:
    return (
        path.replace("{campaign_id}", "1").replace("{admin_id}", "1").replace("{token_id}", "1")
        .replace("{invitation_id}", "1").replace("{token}", "x").replace("{slug}", "sourdough-from-scratch")
        .replace("{position}", "1").replace("{import_id}", "1").replace("{subscriber_id}", "1").replace("{entry_id}", "1").replace("{job_id}", "1")
    )  # fmt: skip


def test_every_admin_route_has_a_guard_of_the_right_kind(web_stack: WebStack) -> None:
    routes = admin_routes(create_app(web_stack.settings))
    assert len(routes) >= 20
    unguarded = {(method, path) for method, path, guard in routes if guard is None}
    assert unguarded == PUBLIC, f"admin routes without a role guard: {unguarded - PUBLIC}"
    for method, path, guard in routes:
        if path.startswith("/api/"):
            assert isinstance(guard, RequireToken), f"{method} {path} must use a token guard"
        elif guard is not None:
            assert isinstance(guard, RequirePage), f"{method} {path} must use a page guard"


def test_anonymous_and_too_low_roles_are_refused_everywhere(web_stack: WebStack, client: TestClient) -> None:
    now = web_stack.clock.now()
    owner_id = make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=now)
    for role in (AdminRole.EDITOR, AdminRole.VIEWER):
        make_admin(web_stack.sessions, f"{role}@example.org", role, now=now)
    tokens = {role: make_token(web_stack.sessions, role, now=now) for role in AdminRole}
    browsers = {}
    for role in AdminRole:
        browser = TestClient(client.app, base_url=TEST_BASE_URL)
        assert sign_in(browser, f"{role}@example.org") == "/admin/dashboard"
        browsers[role] = browser
    with web_stack.sessions() as session:
        admins_before = session.scalar(select(func.count()).select_from(Admin))
        tokens_before = session.scalar(select(func.count()).where(ApiToken.revoked_at.is_(None)))

    checked = 0
    for method, path, guard in admin_routes(client.app):
        if guard is None:
            continue
        url = _concrete(path)
        anonymous = client.request(method, url, follow_redirects=False)
        if isinstance(guard, RequireToken):
            assert anonymous.status_code == 401, (method, path, anonymous.status_code)
            assert anonymous.headers["www-authenticate"] == "Bearer"
            wrong = client.request(method, url, headers={"Authorization": "Bearer course_" + "x" * 43})
            assert wrong.status_code == 401, (method, path)
        else:
            assert anonymous.status_code == 303, (method, path, anonymous.status_code)
            assert anonymous.headers["location"].startswith("/admin/login"), (method, path)
        for role in AdminRole:
            if ROLE_RANK[role] >= ROLE_RANK[guard.role]:
                continue
            if isinstance(guard, RequireToken):
                answer = client.request(method, url, headers={"Authorization": f"Bearer {tokens[role]}"})
            else:
                answer = browsers[role].request(method, url, follow_redirects=False)
            assert answer.status_code == 403, (method, path, role, answer.status_code)
            checked += 1
    assert checked >= 15  # owner-only and editor-only routes were each tried with lower roles

    with web_stack.sessions() as session:  # and nothing was changed by any refused request
        assert session.scalar(select(func.count()).select_from(Admin)) == admins_before
        assert session.scalar(select(func.count()).where(ApiToken.revoked_at.is_(None))) == tokens_before
        assert session.get(Admin, owner_id).role == AdminRole.OWNER  # type: ignore[union-attr]


def test_every_admin_form_refuses_a_post_without_its_csrf_field(web_stack: WebStack, client: TestClient) -> None:
    make_admin(web_stack.sessions, "owner@example.org", AdminRole.OWNER, now=web_stack.clock.now())
    assert sign_in(client, "owner@example.org") == "/admin/dashboard"
    posts = [path for method, path, _ in admin_routes(client.app) if method == "POST" and not path.startswith("/api/")]
    assert len(posts) >= 8
    for path in posts:
        answer = client.post(_concrete(path), data={"csrf_token": "forged", "email": "x@example.org", "role": "owner"}, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.status_code)
        assert "Please try that again" in answer.text
    # Still signed in (the logout post was refused too) and still the only admin.
    assert client.get("/admin/campaigns", follow_redirects=False).status_code == 200
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Admin)) == 1


@pytest.mark.parametrize("path", ["/admin/campaigns", "/admin/account", "/admin/courses", "/admin/courses/sourdough-from-scratch"])
def test_viewer_pages_are_open_to_every_role(web_stack: WebStack, client: TestClient, path: str) -> None:
    make_admin(web_stack.sessions, "viewer@example.org", AdminRole.VIEWER, now=web_stack.clock.now())
    sign_in(client, "viewer@example.org")
    assert client.get(path).status_code == 200
