"""The drip pipeline end to end, on real parts: the seed article becomes a course in the database,
three subscribers in three time zones enroll, a real Celery worker consumes from a real broker,
and a real SMTP server receives the mail. The test walks a manual clock from due time to due time
and checks what each person got, and when, in their own local time.

It runs twice: PostgreSQL + Redis, and the embedded mode (SQLite + kombu's SQLite transport)."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fastapi.testclient import TestClient

from course.clock import ManualClock
from course.audience.enrollment import enroll, get_or_create_subscriber
from course.audience.course_content import import_content
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import Course, Delivery, DeliveryState, Lesson, Subscriber
from course.settings import Settings, get_settings
from course.web.app import create_app
from tests.support.services import make_settings, seed_article_path
from tests.support.content_fixtures import seed_course_content
from tests.support.smtp_server import RecordingSMTPServer
from worker.app import app as celery_app
from worker.config import ALL_QUEUES, celery_config

PEOPLE = {
    "ana@example.org": "America/New_York",
    "ben@example.org": "Europe/Berlin",
    "kei@example.org": "Asia/Tokyo",
}


@pytest.fixture(params=["postgres+redis", "sqlite+embedded"])
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    clock: ManualClock,
) -> Iterator[Settings]:
    """Settings in the environment (the worker reads them there, like a real one) and a worker."""
    if request.param == "postgres+redis":
        database_url = request.getfixturevalue("pg_database_url")
        broker_url = request.getfixturevalue("redis_url")
    else:
        from tests.support.services import migrated_sqlite as _migrated_sqlite

        database_url = _migrated_sqlite(tmp_path / "course.db")
        broker_url = f"embedded+sqlite:///{tmp_path / 'broker.sqlite'}"
    settings = make_settings(
        tmp_path, database_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port, broker_url=broker_url
    )
    for name, value in {
        "COURSE_DATABASE_URL": database_url,
        "COURSE_BROKER_URL": broker_url,
        "COURSE_SMTP_HOST": smtp_server.host,
        "COURSE_SMTP_PORT": str(smtp_server.port),
        "COURSE_SECRET_KEY": settings.secret_key,
        "COURSE_BASE_URL": settings.base_url,
        "COURSE_VAR_DIR": str(settings.var_dir),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    celery_app.conf.update(celery_config(settings, broker_url))
    # The app caches broker connections: drop those of the previous test's broker, the way Celery
    # itself does in a freshly forked child.
    celery_app._after_fork()
    with start_worker(celery_app, pool="threads", concurrency=2, queues=list(ALL_QUEUES), perform_ping_check=False):
        yield settings


def run_dispatcher_and_wait(sessions: sessionmaker[Session], clock: ManualClock, timeout: float = 30) -> None:
    """Ask the worker to dispatch (as beat would), then wait until nothing due is left in flight."""
    from worker.tasks import dispatch

    dispatch.delay()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            busy = session.scalar(
                select(func.count()).where(
                    (Delivery.state.in_([DeliveryState.LEASED, DeliveryState.SENDING]))
                    | ((Delivery.state == DeliveryState.PENDING) & (Delivery.due_at <= clock.now()))
                )
            )
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError(f"deliveries still due or in flight after {timeout}s at {clock.now()}")


def next_due(sessions: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalar(select(func.min(Delivery.due_at)).where(Delivery.state == DeliveryState.PENDING))


def test_three_time_zones_receive_every_lesson_once_in_order_at_local_send_time(
    stack: Settings, smtp_server: RecordingSMTPServer, clock: ManualClock, tmp_path: Path
) -> None:
    settings = stack
    content = seed_course_content(tmp_path, seed_article_path(), target_words=150)
    from course.db import session_factory

    sessions = session_factory(settings)
    enrolled_at = clock.now()
    with sessions.begin() as session:
        import_content(session, content, now=clock.now())
        course = session.scalars(select(Course)).one()
        lesson_titles = list(session.scalars(select(Lesson.title).where(Lesson.course_id == course.id).order_by(Lesson.position)))
        for address, zone in PEOPLE.items():
            subscriber = get_or_create_subscriber(session, address, name=address[:3].title(), timezone_name=zone, now=clock.now())
            enroll(session, subscriber, course, now=clock.now())
    assert len(lesson_titles) >= 4, "the seed article should make a course of several lessons at 150 words"

    # Walk the calendar from one due time to the next, dispatching at each, until nothing is left.
    for _ in range(10 * len(lesson_titles)):
        due = next_due(sessions)
        if due is None:
            break
        clock.set(max(due, clock.now()))
        run_dispatcher_and_wait(sessions, clock)
    assert next_due(sessions) is None

    received = smtp_server.received
    by_person: dict[str, list] = defaultdict(list)
    for mail in received:
        by_person[mail.envelope_to[0]].append(mail)
    assert sorted(by_person) == sorted(PEOPLE)
    signer = signer_from_settings(settings)
    for address, zone_name in PEOPLE.items():
        zone = ZoneInfo(zone_name)
        mails = by_person[address]
        subjects = [mail.message["subject"] for mail in mails]
        # Every lesson once, in order.
        assert subjects == [f"Lesson {n} of {len(lesson_titles)}: {title}" for n, title in enumerate(lesson_titles, 1)]
        sent_at = [parsedate_to_datetime(mail.message["date"]) for mail in mails]
        # Lesson 1 at enrollment; every later one at 09:00 local, one local day after the previous.
        assert sent_at[0] == enrolled_at.replace(microsecond=0)
        local = [moment.astimezone(zone) for moment in sent_at]
        for previous, current in zip(local, local[1:]):
            assert (current.hour, current.minute) == (9, 0), f"{address} got a lesson at {current}"
            assert (current.date() - previous.date()).days == 1
        for mail in mails:
            message = mail.message
            assert re.fullmatch(r"<[a-z2-7]{26}@course\.localhost>", message["Message-ID"]), message["Message-ID"]  # opaque
            assert message["List-Id"].endswith(".course.localhost>")
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            https_url, mailto = [part.strip(" <>") for part in message["List-Unsubscribe"].split(",")]
            assert mailto.startswith("mailto:")
            token = urlparse(https_url).path.removeprefix("/u/")
            with sessions() as session:
                subscriber_id = session.scalars(select(Subscriber.id).where(Subscriber.email == address)).one()
            assert signer.read(LinkPurpose.UNSUBSCRIBE, token) == [subscriber_id, course.id]
            assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
        # The closing lesson links the two follow-up guides in the text and under Further reading.
        last_html = mails[-1].message.get_body(("html",)).get_content()
        assert 'href="https://guides.example.org/let-down"' in last_html
        assert 'href="https://guides.example.org/benefits"' in last_html
        assert "Further reading" in last_html
        assert "https://guides.example.org/let-down" in mails[-1].message.get_body(("plain",)).get_content()
    # One ledger row per (person, lesson), all sent, none twice.
    with sessions() as session:
        states = session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all()
    assert dict(states) == {"sent": len(PEOPLE) * len(lesson_titles)}


def test_unsubscribing_mid_course_stops_the_rest(
    stack: Settings, smtp_server: RecordingSMTPServer, clock: ManualClock, tmp_path: Path
) -> None:
    settings = stack
    content = seed_course_content(tmp_path, seed_article_path(), target_words=150)
    from course.db import session_factory

    sessions = session_factory(settings)
    with sessions.begin() as session:
        import_content(session, content, now=clock.now())
        course = session.scalars(select(Course)).one()
        for address, zone in PEOPLE.items():
            enroll(session, get_or_create_subscriber(session, address, timezone_name=zone, now=clock.now()), course, now=clock.now())
    run_dispatcher_and_wait(sessions, clock)
    assert len(smtp_server.received) == 3
    # Ben's mail client unsubscribes him the RFC 8058 way: a bare POST to the List-Unsubscribe URL,
    # with no cookie and no form token.
    first = next(mail for mail in smtp_server.received if mail.envelope_to == ["ben@example.org"])
    assert first.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urlparse(first.message["List-Unsubscribe"].split(",")[0].strip(" <>"))
    with TestClient(create_app(settings)) as web:
        response = web.post(url.path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    clock.advance(timedelta(days=30))
    run_dispatcher_and_wait(sessions, clock)
    to_ben = [mail for mail in smtp_server.received if mail.envelope_to == ["ben@example.org"]]
    assert len(to_ben) == 1
    assert len(smtp_server.received) > 3  # the others went on
