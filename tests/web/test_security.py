"""Hostile and careless input: security headers, body size, rate limits, the production secret
check, and the purge of signups never confirmed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import Delivery, Enrollment, RateLimitHit, SignupRequest, Subscriber, SubscriberStatus
from course.settings import DEFAULT_SECRET, get_settings
from course.web.app import InsecureConfiguration, create_app
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, web_settings

COURSE_URL = f"/courses/{COURSE_SLUG}"


def test_security_headers_on_pages_errors_and_static(client: TestClient) -> None:
    for path in ("/", COURSE_URL, "/u/not-a-token", "/no-such-page", "/static/site.css"):
        response = client.get(path)
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/no-such-page").status_code == 404


def test_csrf_cookie_is_http_only_and_same_site(client: TestClient) -> None:
    cookie = client.get(COURSE_URL).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_bodies_over_the_limit_get_413_before_parsing(client: TestClient, web_stack: WebStack) -> None:
    megabyte = "x" * (1024 * 1024)
    token = csrf_token_of(client.get(COURSE_URL).text)
    declared = client.post(COURSE_URL, data={"email": "big@example.org", "name": megabyte, "csrf_token": token})
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for _ in range(16):
            yield b"a" * 65536

    streamed = client.post(
        f"{COURSE_URL}/subscribe", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    api = client.post("/api/subscriptions", content=b"[" * (100 * 1024), headers={"content-type": "application/json"})
    assert api.status_code == 413 and "KB" in api.json()["detail"]
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_flood_of_signups_from_one_ip_gets_429(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"signup_limit_per_ip": 5})
    with TestClient(create_app(settings), base_url="http://testserver") as flooder:
        token = csrf_token_of(flooder.get(COURSE_URL).text)
        codes = [
            flooder.post(COURSE_URL, data={"email": f"p{n}@example.org", "csrf_token": token}).status_code
            for n in range(8)
        ]
        api = flooder.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "api@example.org"})
    assert codes == [200] * 5 + [429] * 3
    assert api.status_code == 429 and int(api.headers["retry-after"]) > 0
    web_stack.handle_signups()
    with web_stack.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 5
        stored_keys = session.scalars(select(RateLimitHit.key)).all()
    assert all("testclient" not in key and len(key) == 64 for key in stored_keys), "keys are HMACs, not addresses"

    # The window slides: an hour later the last hour's attempts still count (no fresh limit at
    # the top of the hour); once they have slid out, signups are welcome again.
    web_stack.clock.advance(timedelta(seconds=settings.rate_limit_window_seconds))
    with TestClient(create_app(settings), base_url="http://testserver") as soon:
        token = csrf_token_of(soon.get(COURSE_URL).text)
        assert soon.post(COURSE_URL, data={"email": "soon@example.org", "csrf_token": token}).status_code == 429
    web_stack.clock.advance(timedelta(seconds=settings.rate_limit_window_seconds))
    with TestClient(create_app(settings), base_url="http://testserver") as later:
        token = csrf_token_of(later.get(COURSE_URL).text)
        assert later.post(COURSE_URL, data={"email": "late@example.org", "csrf_token": token}).status_code == 200


def test_an_unreachable_database_gives_a_plain_500_with_the_security_headers(tmp_path: Path) -> None:
    """Starlette answers unhandled errors outside the app's middleware; the headers must be there
    all the same, and the visitor must see neither a trace nor the database's address."""
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    app = create_app(web_settings(tmp_path, unreachable))
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as broken:
        page = broken.get(COURSE_URL)
        api = broken.post("/api/subscriptions", json={"email": "ann@example.com", "course": COURSE_SLUG})
    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text
    assert api.status_code == 500
    assert api.json() == {"detail": "internal error"}
    for response in (page, api):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "127.0.0.1:1" not in response.text and "Traceback" not in response.text


BLOG = "https://blog.example.com"


def test_the_api_answers_cross_origin_calls_only_from_listed_origins(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"api_cors_origins": f"{BLOG}/, https://shop.example.com"})
    with TestClient(create_app(settings), base_url="http://testserver") as cors_client:
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
        allowed = cors_client.options("/api/subscriptions", headers={"origin": BLOG, **preflight})
        refused = cors_client.options("/api/subscriptions", headers={"origin": "https://evil.example", **preflight})
        signup = cors_client.post("/api/subscriptions", headers={"origin": BLOG},
                                  json={"email": "ann@example.com", "course": COURSE_SLUG})
        page = cors_client.get(COURSE_URL, headers={"origin": BLOG})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == BLOG
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert signup.status_code == 202
    assert signup.headers["access-control-allow-origin"] == BLOG
    # The pages hold CSRF tokens and personal details: never readable from another site.
    assert page.status_code == 200
    assert "access-control-allow-origin" not in page.headers


def test_without_listed_origins_the_api_has_no_cors(client: TestClient) -> None:
    response = client.post("/api/subscriptions", headers={"origin": BLOG},
                           json={"email": "ann@example.com", "course": COURSE_SLUG})
    assert response.status_code == 202
    assert "access-control-allow-origin" not in response.headers


def test_production_refuses_the_default_secret(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"env": "production", "secret_key": DEFAULT_SECRET})
    with pytest.raises(InsecureConfiguration, match="COURSE_SECRET_KEY"):
        create_app(settings)
    safe = {
        "secret_key": "kq3V9x-2LmZpR7tYw0bNc4HsJf8GdA1eQx7uTn5Wr2P",
        "base_url": "https://courses.example.com",
        "unsubscribe_mailto": "unsubscribe@example.com",
        "list_id_domain": "courses.example.com",
    }
    with TestClient(create_app(settings.model_copy(update=safe)), base_url="https://courses.example.com") as production:
        response = production.get("/")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert "server" not in response.headers


def test_purge_task_removes_only_old_unconfirmed_signups(
    client: TestClient, web_stack: WebStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.config import celery_config
    from worker.maintenance import purge_unconfirmed_subscribers

    client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "old@example.org"})
    client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "old-but-confirmed@example.org"})
    web_stack.handle_signups()
    with web_stack.sessions.begin() as session:
        confirmed = session.scalars(select(Subscriber).where(Subscriber.email == "old-but-confirmed@example.org")).one()
        confirmed.status = SubscriberStatus.ACTIVE
    web_stack.clock.advance(timedelta(days=29))
    client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "new@example.org"})
    web_stack.handle_signups()
    web_stack.clock.advance(timedelta(days=2))

    # The task reads its settings from the environment, as a real worker does.
    monkeypatch.setenv("COURSE_DATABASE_URL", web_stack.settings.database_url)
    monkeypatch.setenv("COURSE_VAR_DIR", str(web_stack.settings.var_dir))
    get_settings.cache_clear()
    result = purge_unconfirmed_subscribers()

    assert result["subscribers"] == 1
    assert result["rate_limit_windows"] >= 1
    with web_stack.sessions() as session:
        left = set(session.scalars(select(Subscriber.email)))
        assert left == {"old-but-confirmed@example.org", "new@example.org"}
        assert set(session.scalars(select(SignupRequest.email))) == {"new@example.org"}, "old signups go too"
        orphans = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.subscriber_id.not_in(select(Subscriber.id)))
        )
        assert orphans == 0
        # The active subscriber stays, but the enrollment they never confirmed in 31 days goes;
        # the two-day-old signup keeps its pending enrollment.
        enrolled = set(
            session.scalars(select(Subscriber.email).join(Enrollment, Enrollment.subscriber_id == Subscriber.id))
        )
        assert enrolled == {"new@example.org"}
    schedule = celery_config(web_stack.settings, "memory://")["beat_schedule"]
    assert any(entry["task"] == "course.purge_unconfirmed" for entry in schedule.values())
