"""Request hygiene on the real app: control characters refused before any route (on PostgreSQL,
which refuses a NUL itself), HSTS in production only, server-minted CSRF cookies, `Allow` on 405,
forwarded headers believed only from COURSE_TRUSTED_PROXIES; and, on a real uvicorn server, no
banner, read time-outs for slow clients and tokens masked in the access log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import Subscriber
from course.web.app import create_app
from course.web.security import CSRF_COOKIE, csrf_field_for, mint_csrf_cookie
from course.web.access_log import mask_tokens
from course.web.server import MAX_HEAD_BYTES, TimedHttpToolsProtocol, uvicorn_options
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of

COURSE_URL = f"/courses/{COURSE_SLUG}"


@pytest.fixture
def pg_client(pg_web_stack: WebStack) -> Iterator[TestClient]:
    with TestClient(create_app(pg_web_stack.settings), base_url="http://testserver", raise_server_exceptions=False) as client:
        yield client


def subscriber_count(stack: WebStack) -> int:
    with stack.sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


# --- control characters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/courses/%00",
        f"/courses/{COURSE_SLUG}%00",
        "/courses/a%00b/embed",
        "/courses/%1b%5b31m",
        "/courses/%c2%85",  # a C1 control, NEL
        "/u/abc%00def",
        "/preferences/%7f",
        f"{COURSE_URL}?next=%00",
    ],
)
def test_control_characters_in_a_path_or_query_get_400(pg_client: TestClient, path: str) -> None:
    response = pg_client.get(path)
    assert response.status_code == 400, (path, response.status_code)
    assert "characters" in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_control_characters_in_form_and_json_fields_get_400_and_store_nothing(
    pg_client: TestClient, pg_web_stack: WebStack
) -> None:
    token = csrf_token_of(pg_client.get(COURSE_URL).text)
    for field, value in [("email", "ann\x00@example.org"), ("name", "Ann\x1b[2J"), ("timezone", "UTC\x00")]:
        form = {"email": "ann@example.org", "name": "Ann", "timezone": "UTC", "csrf_token": token, field: value}
        response = pg_client.post(COURSE_URL, data=form)
        assert response.status_code == 400, field
    api = [
        {"course": f"{COURSE_SLUG}\x00", "email": "ann@example.org"},
        {"course": COURSE_SLUG, "email": "ann@example.org", "name": "\x00"},
        {"course": COURSE_SLUG, "email": "ann@example.org", "\x00": "x"},
    ]
    for document in api:
        response = pg_client.post("/api/subscriptions", json=document)
        assert response.status_code == 400, document
        assert response.json() == {"detail": "control characters are not allowed in a request"}
    # Raw bytes, not percent-encoded, are refused as well.
    raw = pg_client.post(
        "/api/subscriptions",
        content=b'{"course": "' + COURSE_SLUG.encode() + b'", "email": "a\\u0000@example.org"}',
        headers={"content-type": "application/json"},
    )
    assert raw.status_code == 400
    assert subscriber_count(pg_web_stack) == 0

    # Ordinary input, white space included, still works.
    ok = pg_client.post(COURSE_URL, data={"email": "ann@example.org", "name": "Ann\t", "timezone": "UTC", "csrf_token": token})
    assert ok.status_code == 200
    assert pg_client.post("/api/subscriptions", json={"course": COURSE_SLUG, "email": "bo@example.org"}).status_code == 202
    pg_web_stack.handle_signups()
    assert subscriber_count(pg_web_stack) == 2


# --- headers, CSRF, 405 ----------------------------------------------------------------------


def test_hsts_only_in_production(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/").headers


def test_an_attacker_chosen_csrf_cookie_is_never_adopted(client: TestClient, web_stack: WebStack) -> None:
    secret = web_stack.settings.secret_key
    planted = "A" * 43  # the old format: any 32-64 URL-safe characters were taken as ours
    client.cookies.set(CSRF_COOKIE, planted)
    page = client.get(COURSE_URL)
    minted = page.cookies.get(CSRF_COOKIE)
    assert minted and minted != planted, "the server minted its own cookie"
    assert csrf_token_of(page.text) == csrf_field_for(secret, minted)

    # Even the field that matches the planted cookie does not pass: the cookie is not ours.
    client.cookies.set(CSRF_COOKIE, planted)
    forged = client.post(COURSE_URL, data={"email": "x@example.org", "csrf_token": csrf_field_for(secret, planted)})
    assert forged.status_code == 403
    # A cookie signed with another secret is not ours either.
    foreign = mint_csrf_cookie("another-secret")
    client.cookies.set(CSRF_COOKIE, foreign)
    forged = client.post(COURSE_URL, data={"email": "x@example.org", "csrf_token": csrf_field_for(secret, foreign)})
    assert forged.status_code == 403
    assert subscriber_count(web_stack) == 0

    # The server's own cookie keeps working, and is kept (not re-minted) on the next page.
    client.cookies.set(CSRF_COOKIE, minted)
    again = client.get(COURSE_URL)
    assert CSRF_COOKIE not in again.cookies
    done = client.post(COURSE_URL, data={"email": "x@example.org", "csrf_token": csrf_token_of(again.text)})
    assert done.status_code == 200


def test_405_names_every_allowed_method(client: TestClient) -> None:
    page = client.put(COURSE_URL)
    assert page.status_code == 405
    assert {method.strip() for method in page.headers["allow"].split(",")} >= {"GET", "POST"}
    api = client.delete("/api/subscriptions")
    assert api.status_code == 405 and "POST" in api.headers["allow"]


# --- trusted proxies -------------------------------------------------------------------------


def signups_from(app_settings: object, client_address: str, forwarded: list[str]) -> list[int]:
    with TestClient(create_app(app_settings), base_url="http://testserver", client=(client_address, 40000)) as browser:  # type: ignore[arg-type]
        token = csrf_token_of(browser.get(COURSE_URL).text)
        return [
            browser.post(
                COURSE_URL, data={"email": f"p{n}@example.org", "csrf_token": token}, headers={"x-forwarded-for": address}
            ).status_code
            for n, address in enumerate(forwarded)
        ]


def test_forwarded_for_is_ignored_unless_the_proxy_is_listed(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"signup_limit_per_ip": 3})
    # No trusted proxies (the default): a new X-Forwarded-For per request changes nothing.
    spoofed = [f"198.51.100.{n}" for n in range(5)]
    assert signups_from(settings, "127.0.0.1", spoofed) == [200, 200, 200, 429, 429]


def test_behind_a_listed_proxy_each_visitor_has_their_own_limit(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"signup_limit_per_ip": 3, "trusted_proxies": "10.0.0.0/8"})
    # Five visitors behind the proxy: each has their own address and limit.
    assert signups_from(settings, "10.1.2.3", [f"203.0.113.{n}" for n in range(5)]) == [200] * 5
    # A client that claims to be behind the proxy but is not: its header is ignored.
    web_stack.clock.advance(timedelta(hours=2))
    assert signups_from(settings, "192.0.2.9", [f"203.0.113.{n + 10}" for n in range(5)]) == [200, 200, 200, 429, 429]
    # A visitor who puts a fake address in front: the proxy appends the real one, which counts.
    web_stack.clock.advance(timedelta(hours=2))
    chained = [f"198.51.100.{n}, 203.0.113.77" for n in range(5)]
    assert signups_from(settings, "10.1.2.3", chained) == [200, 200, 200, 429, 429]


# --- a real server ---------------------------------------------------------------------------


class ShortTimeouts(TimedHttpToolsProtocol):
    """What `course web` serves with (httptools on uvloop), with deadlines short enough for a test."""

    header_timeout = 0.6
    body_timeout = 0.6


def test_course_web_serves_httptools_on_uvloop_with_the_deadlines(web_stack: WebStack) -> None:
    options = uvicorn_options(web_stack.settings)
    assert options["http"] is TimedHttpToolsProtocol and options["loop"] == "uvloop"
    assert options["server_header"] is False and options["proxy_headers"] is False


@pytest.fixture
def served(web_stack: WebStack) -> Iterator[tuple[str, int]]:
    """The app served as `course web` serves it, with ShortTimeouts' deadlines."""
    yield from _serve(web_stack, ShortTimeouts)


def _serve(web_stack: WebStack, protocol: type) -> Iterator[tuple[str, int]]:
    options = {**uvicorn_options(web_stack.settings), "http": protocol}
    config = uvicorn.Config(create_app(web_stack.settings), host="127.0.0.1", port=0, log_config=None, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)


def exchange(address: tuple[str, int], *parts: bytes, pause: float = 0.0, wait: float = 3.0) -> tuple[bytes, float]:
    """Send the parts with a pause between them; return all the server sent and when it closed."""
    with socket.create_connection(address, timeout=wait) as connection:
        started = time.monotonic()
        for part in parts:
            try:
                connection.sendall(part)
            except OSError:
                break
            time.sleep(pause)
        received = b""
        while True:
            try:
                chunk = connection.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


def test_no_server_banner(served: tuple[str, int]) -> None:
    answer, _ = exchange(served, b"GET /static/site.css HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 200")
    assert b"\r\nserver:" not in head


def test_a_slow_request_head_is_cut_off(served: tuple[str, int]) -> None:
    answer, elapsed = exchange(served, b"GET / HTTP/1.1\r\n", b"host: x\r\n", b"x-slow: 1\r\n", pause=0.4)
    assert answer.startswith(b"HTTP/1.1 408")
    assert elapsed < 2.5
    # Saying nothing at all is cut off too.
    answer, elapsed = exchange(served)
    assert answer.startswith(b"HTTP/1.1 408") and elapsed < 2.5


def test_a_slow_body_is_cut_off_and_a_prompt_one_is_not(served: tuple[str, int], web_stack: WebStack) -> None:
    head = (
        b"POST /api/subscriptions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: 200\r\n\r\n"
    )
    answer, elapsed = exchange(served, head, b'{"course": "', b"x" * 10, b"x" * 10, b"x" * 10, pause=0.3)
    assert b" 202 " not in answer
    assert elapsed < 2.5
    body = b'{"course": "' + COURSE_SLUG.encode() + b'", "email": "prompt@example.org"}'
    head = head.replace(b"content-length: 200", b"content-length: " + str(len(body)).encode())
    answer, _ = exchange(served, head, body)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    web_stack.handle_signups()
    assert subscriber_count(web_stack) == 1


def test_an_oversized_request_head_is_refused(served: tuple[str, int]) -> None:
    big = b"x-big: " + b"a" * (MAX_HEAD_BYTES + 1024) + b"\r\n"
    answer, _ = exchange(served, b"GET /static/site.css HTTP/1.1\r\nhost: x\r\n" + big + b"connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4"), answer[:100]
    answer, _ = exchange(served, b"GET /static/site.css HTTP/1.1\r\nhost: x\r\nx-small: 1\r\nconnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


def test_a_keep_alive_connection_serves_several_requests_and_then_times_a_slow_head(served: tuple[str, int]) -> None:
    request = b"GET /static/site.css HTTP/1.1\r\nhost: x\r\n\r\n"
    answer, elapsed = exchange(served, request, request, b"GET / HTTP/1.1\r\n", pause=0.1, wait=6.0)
    assert answer.count(b"HTTP/1.1 200") == 2, answer[:200]
    # The third head is cut off by its own deadline (0.6 s here): a 408, and the server closes the
    # connection well before the 5 s keep-alive time-out would have (generous for a loaded machine,
    # where the server thread shares the test's interpreter).
    assert b"HTTP/1.1 408" in answer, answer[-200:]
    assert elapsed < 4.5


def test_tokens_are_masked_in_the_access_log(served: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    token = "WzEsMl0.aBcDeF.XyZ0123456789abcdef"
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        for path in (f"/u/{token}", f"/preferences/{token}?saved=pause", f"/view/{token}", f"/confirm/{token}"):
            exchange(served, f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        time.sleep(0.2)
    lines = [record.getMessage() for record in caplog.records if record.name == "uvicorn.access"]
    assert len(lines) == 4, lines
    assert all(token not in line and "WzEsMl…" in line for line in lines), lines


def test_mask_tokens_keeps_other_paths() -> None:
    assert mask_tokens("/courses/sourdough?x=1") == "/courses/sourdough?x=1"
    assert mask_tokens("/u/abc") == "/u/abc"  # too short to be a token: nothing to hide
    assert mask_tokens("/preferences/WzEsMl0.x.y?saved=1") == "/preferences/WzEsMl…?saved=1"


def test_a_web_process_runs_at_most_web_threads_requests_at_once(web_stack: WebStack) -> None:
    app = create_app(web_stack.settings.model_copy(update={"web_threads": 2}))
    running, most = [0], [0]
    lock = threading.Lock()

    def slow() -> dict[str, int]:  # a sync handler, as the pages are: it runs in the thread pool
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.15)
        with lock:
            running[0] -= 1
        return {"ok": 1}

    app.add_api_route("/api/slow-for-test", slow)
    with TestClient(app) as client:  # the lifespan sets the limit
        answers: list[int] = []
        threads = [threading.Thread(target=lambda: answers.append(client.get("/api/slow-for-test").status_code)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert answers == [200] * 6
    assert most[0] == 2  # the other four waited their turn in the event loop
