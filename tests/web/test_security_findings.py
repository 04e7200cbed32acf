"""Every finding of the black-box review in issue #12, replayed against the real app on PostgreSQL
(where the review found them) with the review's own reproduction, each now answered as it should
be. The numbers are the issue's."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from course.audience.enrollment import enroll, get_or_create_subscriber, unsubscribe
from course.delivery.links import LinkPurpose, signer_from_settings
from course.ledger import suppress
from course.models import Course, Enrollment, SignupRequest, Subscriber, SubscriberStatus
from course.settings import DEFAULT_SECRET
from course.web.app import InsecureConfiguration, create_app
from course.web.security import CSRF_COOKIE
from course.web.access_log import MaskTokens
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of, link_in

pytestmark = pytest.mark.postgres

COURSE_URL = f"/courses/{COURSE_SLUG}"
API = "/api/subscriptions"


@pytest.fixture
def stack(pg_web_stack: WebStack) -> WebStack:
    return pg_web_stack


def app_for(stack: WebStack, **overrides: Any) -> TestClient:
    settings = stack.settings.model_copy(update={"signup_limit_per_ip": 100_000, **overrides})
    return TestClient(create_app(settings), base_url="http://testserver", raise_server_exceptions=False)


def count(stack: WebStack, model: type[Any]) -> int:
    with stack.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def signup_json(email: str, **extra: str) -> dict[str, str]:
    return {"course": COURSE_SLUG, "email": email, **extra}


# 1. Enumeration by race -------------------------------------------------------------------------


def test_1_concurrent_signups_of_a_new_address_never_fail(stack: WebStack) -> None:
    app = app_for(stack).app

    def one_signup(_: int) -> int:
        with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
            return client.post(API, json=signup_json("race@example.org")).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one_signup, range(16)))
    assert statuses == [202] * 16, statuses

    # Two workers handle the queue at the same moment: one subscriber, one enrollment, no error.
    with ThreadPoolExecutor(2) as pool:
        handled = list(pool.map(lambda _: stack.handle_signups(), range(2)))
    assert sum(sum(outcomes.values()) for outcomes in handled) == 16
    assert count(stack, Subscriber) == 1 and count(stack, Enrollment) == 1
    assert len(stack.deliver()) == stack.settings.signup_limit_per_address


# 2. Enumeration by timing -----------------------------------------------------------------------


def test_2_signup_answers_take_the_same_time_whatever_the_address(stack: WebStack) -> None:
    """Medians of the answer time per class of address (new, pending, enrolled, unsubscribed,
    bounced), requests interleaved so the machine's load falls on every class alike."""
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        enrolled = get_or_create_subscriber(session, "enrolled@example.org", now=now)
        enroll(session, enrolled, course, now=now)
        left = get_or_create_subscriber(session, "left@example.org", now=now)
        enroll(session, left, course, now=now)
        unsubscribe(session, left, course_id=None, now=now)
        bounced = get_or_create_subscriber(session, "bounced@example.org", now=now)
        enroll(session, bounced, course, now=now)
        suppress(session, [bounced.id], now=now)
    with app_for(stack) as client:
        client.post(API, json=signup_json("pending@example.org"))
        stack.handle_signups()
        classes = {
            "new": lambda n: f"new{n}@example.org",
            "pending": lambda n: "pending@example.org",
            "enrolled": lambda n: "enrolled@example.org",
            "unsubscribed": lambda n: "left@example.org",
            "bounced": lambda n: "bounced@example.org",
        }
        for n in range(10):  # warm up every path
            for address in classes.values():
                client.post(API, json=signup_json(address(1000 + n)))
        timings: dict[str, list[float]] = {name: [] for name in classes}
        answers: dict[str, set[str]] = {name: set() for name in classes}
        for n in range(80):
            order = list(classes.items())
            order = order[n % len(order):] + order[: n % len(order)]
            for name, address in order:
                started = time.perf_counter()
                response = client.post(API, json=signup_json(address(n)))
                timings[name].append(time.perf_counter() - started)
                answers[name].add(f"{response.status_code} {response.text}")
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    print("signup answer medians (ms):", {name: round(value, 2) for name, value in medians.items()})
    assert len(set.union(*answers.values())) == 1, "one answer for every class"
    spread = max(medians.values()) - min(medians.values())
    overall = statistics.median(medians.values())
    # The review saw 13 ms against 22 ms (9 ms apart, 50% of the slower). Every class now does the
    # same work: what is left is the noise of a machine shared with other test runs.
    assert spread < max(2.5, 0.25 * overall), medians


# 3. The per-IP limit and X-Forwarded-For --------------------------------------------------------


def test_3_forwarded_for_from_an_unlisted_peer_changes_nothing(stack: WebStack) -> None:
    with app_for(stack, signup_limit_per_ip=5) as client:
        statuses = [
            client.post(API, json=signup_json(f"p{n}@example.org"), headers={"x-forwarded-for": f"203.0.113.{n}"}).status_code
            for n in range(20)
        ]
    assert statuses.count(202) == 5 and statuses.count(429) == 15
    assert len(stack.deliver()) == 5


# 4. Plus-addresses and fixed windows ------------------------------------------------------------


def test_4_plus_addresses_share_one_limit_and_the_window_slides(stack: WebStack) -> None:
    limit = stack.settings.signup_limit_per_address
    with app_for(stack) as client:
        for n in range(30):
            client.post(API, json=signup_json(f"victim+{n}@example.org"))
        client.post(API, json=signup_json("Victim@Example.org"))
        assert len(stack.deliver()) == limit, "one inbox, one limit"
        for n in range(10):
            client.post(API, json=signup_json(f"v.i.c.t.i.m+{n}@gmail.com"))
            client.post(API, json=signup_json(f"victim+{n}@googlemail.com"))
        assert len(stack.deliver()) == limit, "Gmail's dots and googlemail.com are one inbox too"

        # Across the top of the hour: the limit does not start afresh at :00.
        stack.clock.set(stack.clock.now().replace(minute=59, second=30) + timedelta(hours=3))
        for n in range(limit):
            client.post(API, json=signup_json(f"edge+{n}@example.org"))
        before = len(stack.deliver())
        stack.clock.advance(timedelta(minutes=1))
        for n in range(limit):
            client.post(API, json=signup_json(f"edge+{n + 10}@example.org"))
        after = len(stack.deliver())
    assert (before, after) == (limit, 0)


def test_4_a_site_wide_cap_on_confirmation_mails(stack: WebStack, caplog: pytest.LogCaptureFixture) -> None:
    capped = stack.settings.model_copy(update={"confirmation_mails_per_hour": 4})
    stack.settings = capped
    with app_for(stack) as client, caplog.at_level(logging.WARNING):
        for n in range(10):
            assert client.post(API, json=signup_json(f"many{n}@example.org")).status_code == 202
        assert len(stack.deliver()) == 4
    assert "COURSE_CONFIRMATION_MAILS_PER_HOUR" in caplog.text, "logged when it bites"


# 5. View links ----------------------------------------------------------------------------------


def test_5_a_forwarded_view_link_shows_the_lesson_only(stack: WebStack) -> None:
    now = stack.clock.now()
    with stack.sessions.begin() as session:
        course = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        reader = get_or_create_subscriber(session, "reader@example.org", name="Reader", now=now)
        enroll(session, reader, course, now=now)
    (lesson,) = stack.deliver()
    with app_for(stack) as stranger:
        page = stranger.get(link_in(lesson, "/view/"))
    assert page.status_code == 200
    assert "reader@example.org" not in page.text and "Reader" not in page.text
    assert "/preferences/" not in page.text and "/u/" not in page.text


# 6. Production settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"secret_key": ""}, "COURSE_SECRET_KEY"),
        ({"secret_key": "x"}, "COURSE_SECRET_KEY"),
        ({"secret_key": DEFAULT_SECRET}, "COURSE_SECRET_KEY"),
        ({"base_url": "http://courses.example.com"}, "COURSE_BASE_URL"),
        ({"unsubscribe_mailto": "unsubscribe@localhost"}, "COURSE_UNSUBSCRIBE_MAILTO"),
        ({"list_id_domain": "course.localhost"}, "COURSE_LIST_ID_DOMAIN"),
    ],
)
def test_6_production_refuses_to_run_unsafe(stack: WebStack, overrides: dict[str, str], variable: str) -> None:
    safe = {
        "env": "production",
        "secret_key": "dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IG9mIDMyIGJ5dGVzIQ",
        "base_url": "https://courses.example.com",
        "unsubscribe_mailto": "unsubscribe@example.com",
        "list_id_domain": "courses.example.com",
    }
    create_app(stack.settings.model_copy(update=safe))
    with pytest.raises(InsecureConfiguration) as refused:
        create_app(stack.settings.model_copy(update={**safe, **overrides}))
    assert [problem.split()[0] for problem in refused.value.problems] == [variable]


# 7. NUL, ids out of range, non-canonical tokens -------------------------------------------------


def test_7_nul_huge_ids_and_trailing_characters_are_400s(stack: WebStack) -> None:
    signer = signer_from_settings(stack.settings)
    good = signer.token(LinkPurpose.UNSUBSCRIBE, 1)
    with app_for(stack) as client:
        answers = {
            "path": client.get("/courses/sourdough%00").status_code,
            "embed": client.get("/courses/sourdough%00/embed").status_code,
            "api": client.post(API, json=signup_json("a@example.org", course="sourdough\x00")).status_code,
            "form": client.post(f"{COURSE_URL}/subscribe", data={"email": "a\x00@example.org"}).status_code,
            "huge id": client.get("/preferences/" + signer.token(LinkPurpose.PREFERENCES, 2**64)).status_code,
            "huge course": client.get("/u/" + signer.token(LinkPurpose.UNSUBSCRIBE, 1, 2**70)).status_code,
            "trailing =": client.get("/u/" + good + "=").status_code,
            "trailing %21": client.get("/u/" + good + "%21").status_code,
        }
    assert answers == dict.fromkeys(answers, 400), answers


# 8. Names ---------------------------------------------------------------------------------------


def test_8_a_link_as_a_name_is_refused_and_a_name_is_in_no_header_before_confirmation(stack: WebStack) -> None:
    with app_for(stack) as client:
        refused = client.post(API, json=signup_json("someone@example.org", name="https://evil.example/claim"))
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "name"]
        assert stack.deliver() == []
        client.post(API, json=signup_json("someone@example.org", name="Sam Lee"))
    (confirmation,) = stack.deliver()
    assert confirmation["To"] == "someone@example.org"
    assert "Hi Sam," in confirmation.get_body(("plain",)).get_content()
    assert "evil" not in confirmation.as_string()


def test_8_a_pending_signup_is_never_overwritten(stack: WebStack) -> None:
    with app_for(stack) as client:
        client.post(API, json=signup_json("victim@example.org", name="Vera", timezone="Europe/Berlin"))
        (victims_mail,) = stack.deliver()
        client.post(API, json=signup_json("victim@example.org", name="Mallory", timezone="Pacific/Kiritimati"))
        (attackers_mail,) = stack.deliver()
        # The victim follows their own link: their own details, whatever was signed up since.
        page = client.get(link_in(victims_mail, "/confirm/"))
        assert client.post(link_in(victims_mail, "/confirm/"), data={"csrf_token": csrf_token_of(page.text)}).status_code == 200
    assert link_in(victims_mail, "/confirm/") != link_in(attackers_mail, "/confirm/")
    with stack.sessions() as session:
        victim = session.scalars(select(Subscriber).where(Subscriber.email == "victim@example.org")).one()
    assert (victim.name, victim.timezone, victim.status) == ("Vera", "Europe/Berlin", SubscriberStatus.ACTIVE)


@pytest.mark.parametrize(
    "name",
    ["=?utf-8?q?x=0D=0ABcc:_victim@example.net?=", "=?utf-8?b?QWRtaW4gPGFkbWluQGJhbmsuZXhhbXBsZT4=?=", "= ?utf-8?q?a?="],
)
def test_8_encoded_words_in_a_name_are_neutralised(stack: WebStack, name: str) -> None:
    with app_for(stack) as client:
        # No name is made of "=?…?=": refused at signup, and a stored one (from before the check) is
        # in no header (course.audience.enrollment.name_to_greet); clean_name neutralises it anyway.
        refused = client.post(API, json=signup_json("enc@example.org", name=name))
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "name"]
        assert stack.deliver() == []
        client.post(API, json=signup_json("enc@example.org"))
        (confirmation,) = stack.deliver()
        with stack.sessions.begin() as session:
            session.execute(update(SignupRequest).values(name=name))
        page = client.get(link_in(confirmation, "/confirm/"))
        client.post(link_in(confirmation, "/confirm/"), data={"csrf_token": csrf_token_of(page.text)})
    (lesson,) = stack.deliver()
    to = str(make_header(decode_header(lesson["To"])))
    assert "\r" not in to and "\n" not in to
    # Decoded as a mail client decodes it, To: names one address: the reader's.
    assert [address for _, address in getaddresses([to])] == ["enc@example.org"], to
    assert "=?" not in lesson["To"].replace("=?utf-8?", "").replace("=?UTF-8?", "")
    assert stack.smtp.received[-1].envelope_to == ["enc@example.org"]


# 9. Headers, slow clients, logs, CSRF -----------------------------------------------------------


def test_9_hsts_in_production_and_no_adopted_csrf_cookie(stack: WebStack) -> None:
    production = {
        "env": "production",
        "secret_key": "dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IG9mIDMyIGJ5dGVzIQ",
        "base_url": "https://courses.example.com",
        "unsubscribe_mailto": "unsubscribe@example.com",
        "list_id_domain": "courses.example.com",
    }
    with app_for(stack, **production) as client:
        assert client.get("/").headers["strict-transport-security"].startswith("max-age=")
    with app_for(stack) as client:
        assert "strict-transport-security" not in client.get("/").headers
        client.cookies.set(CSRF_COOKIE, "attacker-chosen-value-attacker-chosen-value")
        page = client.get(COURSE_URL)
        assert page.cookies.get(CSRF_COOKIE) not in (None, "attacker-chosen-value-attacker-chosen-value")


def test_9_tokens_are_masked_in_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/u/WzEsMl0.aaVDgA.Ul719stNuKLBniUevWB2GKnoaDU", "1.1", 200), None,
    )
    MaskTokens().filter(record)
    assert "Ul719stN" not in record.getMessage() and "/u/WzEsMl…" in record.getMessage()


def test_9_no_banner_and_slow_clients_are_cut_off(stack: WebStack) -> None:
    import socket

    import uvicorn

    from course.web.server import TimedHttpToolsProtocol, uvicorn_options

    class Quick(TimedHttpToolsProtocol):  # what `course web` serves with, deadlines shortened
        header_timeout = 0.5
        body_timeout = 0.5

    config = uvicorn.Config(
        create_app(stack.settings), host="127.0.0.1", port=0, log_config=None,
        **{**uvicorn_options(stack.settings), "http": Quick},
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    address = server.servers[0].sockets[0].getsockname()[:2]
    try:
        with socket.create_connection(address, timeout=5) as connection:
            connection.sendall(b"GET /static/site.css HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            head = connection.recv(65536).split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200") and b"\r\nserver:" not in head
        with socket.create_connection(address, timeout=5) as connection:
            started = time.monotonic()
            connection.sendall(b"POST /api/subscriptions HTTP/1.1\r\nhost: x\r\n")  # and then nothing
            answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_signup_that_cannot_be_handled_does_not_stop_the_queue(stack: WebStack, caplog: pytest.LogCaptureFixture) -> None:
    """One bad row (here: a time zone that stopped existing after it was queued) is logged and
    dropped; the signups after it still get their mail."""
    from course.models import SignupRequest

    with app_for(stack) as client:
        client.post(API, json=signup_json("first@example.org"))
        client.post(API, json=signup_json("second@example.org"))
    with stack.sessions.begin() as session:
        first = session.scalars(select(SignupRequest).where(SignupRequest.email == "first@example.org")).one()
        first.timezone = "Nowhere/Atlantis"
    with caplog.at_level(logging.ERROR):
        outcomes = stack.handle_signups()
    assert outcomes == {"failed": 1, "confirmation_queued": 1}
    assert "cannot handle signup" in caplog.text
    (mail,) = stack.deliver()
    assert mail["To"] == "second@example.org"
    assert stack.handle_signups() == {}, "the bad row is not retried for ever"
