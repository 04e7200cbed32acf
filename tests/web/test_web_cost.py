"""What each public request costs the database, counted on PostgreSQL: statements (every one the
app's engine executes) and commits. A signup request is one transaction of the same statements for
every address (the queued signup); the course pages come from the
catalogue cache until an import changes the catalogue; preferences and one-click unsubscribe cost
the same however many courses the reader takes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session

from course.clock import ManualClock
from course.content.catalogue import catalogue_changed
from course.db import get_engine
from course.delivery.links import LinkPurpose, signer_from_settings
from course.models import (
    Course,
    Enrollment,
    EnrollmentStatus,
    RateLimitHit,
    SignupRequest,
    Subscriber,
    SubscriberStatus,
)
from course.ratelimit import window_start
from course.web.app import create_app
from course.web.cache import CatalogueCache
from tests.support.smtp_server import RecordingSMTPServer
from tests.support.web_fixtures import COURSE_SLUG, START, WebStack, csrf_token_of, prepare, web_settings

pytestmark = pytest.mark.postgres


@dataclass
class DatabaseCounter:
    """Statements and commits on one engine, between start() and the read."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0

    def __post_init__(self) -> None:
        self.counting = False

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._commit)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self.counting:
            self.statements.append(statement.split("\n", 1)[0][:80])

    def _commit(self, conn: Any) -> None:
        if self.counting:
            self.commits += 1

    def start(self) -> DatabaseCounter:
        self.statements, self.commits, self.counting = [], 0, True
        return self


@pytest.fixture
def costed(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> Iterator[tuple[WebStack, TestClient, DatabaseCounter]]:
    # A recheck interval longer than the test: every version check seen below is one we caused.
    settings = web_settings(tmp_path, pg_web_database_url, smtp_host=web_smtp.host, smtp_port=web_smtp.port,
                            catalogue_recheck_seconds=3600)
    stack = prepare(settings, web_clock, web_smtp)
    counter = DatabaseCounter()
    counter.attach(get_engine(settings))
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield stack, client, counter
    get_engine(settings).dispose()


def api_signup(client: TestClient, email: str) -> int:
    body = {"course": COURSE_SLUG, "email": email, "name": "Ann", "timezone": "Europe/Berlin"}
    return client.post("/api/subscriptions", json=body).status_code


# What a signup request runs on PostgreSQL, whatever the address's state (the worker does the rest:
# course.audience.signup_requests): ONE statement in autocommit, so no BEGIN and no COMMIT round
# trip: the per-IP count (the upsert of the current window and the previous window's count, for the
# sliding window) and the INSERT into the signup queue, as data-modifying CTEs.
SIGNUP_STATEMENTS = ["WITH hit AS"]


def statement_kinds(counter: DatabaseCounter) -> list[str]:
    return [next((kind for kind in SIGNUP_STATEMENTS if statement.startswith(kind)), statement)
            for statement in counter.statements]


def queued(stack: WebStack) -> list[str]:
    with stack.sessions() as session:
        return list(session.scalars(select(SignupRequest.email).order_by(SignupRequest.id)))


def test_a_signup_is_one_statement_whatever_the_address(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    assert api_signup(client, "first@example.org") == 202  # fills the catalogue cache
    counter.start()
    assert api_signup(client, "second@example.org") == 202
    assert statement_kinds(counter) == SIGNUP_STATEMENTS, counter.statements
    assert counter.commits == 0  # autocommit: the statement is its own transaction
    form = {"email": "third@example.org", "name": "Cy", "timezone": "Europe/Berlin"}
    counter.start()
    assert client.post(f"/courses/{COURSE_SLUG}/subscribe", data=form).status_code == 200
    assert statement_kinds(counter) == SIGNUP_STATEMENTS and counter.commits == 0, counter.statements
    assert queued(stack) == ["first@example.org", "second@example.org", "third@example.org"]
    stack.handle_signups()
    with stack.sessions() as session:
        third = session.scalars(select(Subscriber).where(Subscriber.email == "third@example.org")).one()
        assert third.status == SubscriberStatus.PENDING
        (enrollment,) = session.scalars(select(Enrollment).where(Enrollment.subscriber_id == third.id))
        assert enrollment.status == EnrollmentStatus.PENDING
        session.execute(update(Enrollment).where(Enrollment.id == enrollment.id).values(status=EnrollmentStatus.ACTIVE))
        session.commit()
    # A pending address and an enrolled one cost the request exactly what a new one did.
    for email in ("second@example.org", "third@example.org"):
        counter.start()
        assert api_signup(client, email) == 202
        assert statement_kinds(counter) == SIGNUP_STATEMENTS and counter.commits == 0, (email, counter.statements)
    assert queued(stack)[-2:] == ["second@example.org", "third@example.org"]


def test_an_invalid_signup_or_the_honeypot_still_counts_against_the_ip_limit_and_queues_nothing(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    assert api_signup(client, "warm@example.org") == 202
    counter.start()
    assert api_signup(client, "not an address") == 422
    assert statement_kinds(counter) == SIGNUP_STATEMENTS and counter.commits == 0, counter.statements
    bot = {"email": "bot@example.org", "name": "B", "timezone": "UTC", "leave_blank": "http://spam"}
    counter.start()
    assert client.post(f"/courses/{COURSE_SLUG}/subscribe", data=bot).status_code == 200
    assert statement_kinds(counter) == SIGNUP_STATEMENTS and counter.commits == 0, counter.statements
    assert queued(stack) == ["warm@example.org"]
    with stack.sessions() as session:
        assert session.scalar(select(RateLimitHit.hits).where(RateLimitHit.scope == "signup-ip")) == 3


def test_the_one_statement_keeps_the_sliding_per_ip_limit(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> None:
    """Three signups a window from one address: the fourth is refused (429) and queues nothing; half
    a window into the next window, half of the previous window's hits still count."""
    settings = web_settings(tmp_path, pg_web_database_url, smtp_host=web_smtp.host, smtp_port=web_smtp.port,
                            signup_limit_per_ip=3)
    stack = prepare(settings, web_clock, web_smtp)
    window = settings.rate_limit_window_seconds
    start = window_start(web_clock.now(), timedelta(seconds=window))
    web_clock.set(start + timedelta(seconds=1))
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        assert [api_signup(client, f"s{n}@example.org") for n in range(4)] == [202, 202, 202, 429]
        # Half a window into the next one: 4 hits last window weigh 2 (then 3, 4 with this window's).
        web_clock.set(start + timedelta(seconds=window + window // 2))
        assert [api_signup(client, f"t{n}@example.org") for n in range(3)] == [202, 429, 429]
    assert queued(stack) == ["s0@example.org", "s1@example.org", "s2@example.org", "t0@example.org"]
    get_engine(settings).dispose()


def test_course_pages_come_from_the_cache_until_the_catalogue_changes(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    for path in ("/", f"/courses/{COURSE_SLUG}", f"/courses/{COURSE_SLUG}/embed"):
        assert client.get(path).status_code == 200
    counter.start()
    pages = {path: client.get(path) for path in ("/", f"/courses/{COURSE_SLUG}", f"/courses/{COURSE_SLUG}/embed")}
    assert counter.statements == [] and counter.commits == 0
    app_site = client.app.state.site  # type: ignore[attr-defined]
    assert app_site.catalogue.holds(("index",)) and app_site.catalogue.holds(("course.html", COURSE_SLUG), COURSE_SLUG)
    assert not app_site.catalogue.holds(("course.html", "no-such-course"), "no-such-course")
    assert all(page.status_code == 200 for page in pages.values())
    assert "Sourdough from Scratch" in pages[f"/courses/{COURSE_SLUG}"].text
    # Each visitor still gets a CSRF token of its own in the cached page.
    stranger = TestClient(client.app, base_url="http://testserver")
    theirs = stranger.get(f"/courses/{COURSE_SLUG}")
    assert "csrfPlaceholder" not in theirs.text and "csrfPlaceholder" not in pages[f"/courses/{COURSE_SLUG}"].text
    assert csrf_token_of(theirs.text) != csrf_token_of(pages[f"/courses/{COURSE_SLUG}"].text)
    assert csrf_token_of(theirs.text) == csrf_token_of(stranger.get(f"/courses/{COURSE_SLUG}").text)  # its cookie's

    with stack.sessions.begin() as session:  # what an import in this process does to the course
        session.execute(update(Course).where(Course.slug == COURSE_SLUG).values(title="Sourdough, Renamed"))
    assert "Sourdough, Renamed" not in client.get(f"/courses/{COURSE_SLUG}").text  # cached, not yet told
    catalogue_changed()
    assert "Sourdough, Renamed" in client.get(f"/courses/{COURSE_SLUG}").text
    assert "Sourdough, Renamed" in client.get("/").text


def test_made_up_course_addresses_are_answered_404_from_memory(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    """A scan of made-up course addresses costs the database nothing: the 404 comes from the
    catalogue's set of slugs, read once with the first course looked up after a change. A course
    added later is found once the catalogue says it changed."""
    stack, client, counter = costed
    assert client.get(f"/courses/{COURSE_SLUG}").status_code == 200
    counter.start()
    for number in range(20):
        for path in (f"/courses/made-up-{number}", f"/courses/made-up-{number}/embed"):
            assert client.get(path).status_code == 404
        assert client.post("/api/subscriptions", json={"course": f"made-up-{number}", "email": f"a{number}@example.org"}).status_code == 404
    assert counter.statements == []  # the slugs were read with the first course page, above
    with stack.sessions.begin() as session:
        session.add(Course(
            slug="made-up-3", title="Now Real", description="", days_between_lessons=1, send_time=clock_time(9),
            weekday_mask=0b11111, sender_name="S", sender_email="s@example.org", target_words=300,
            created_at=START, updated_at=START,
        ))  # fmt: skip
    catalogue_changed()  # what the importer in this process says (another process's: the version check)
    assert client.get("/courses/made-up-3").status_code == 200
    assert client.get("/courses/made-up-4").status_code == 404


def test_while_one_request_checks_the_catalogue_the_others_are_served_from_memory(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    assert client.get(f"/courses/{COURSE_SLUG}").status_code == 200
    catalogue = client.app.state.site.catalogue  # type: ignore[attr-defined]
    key = ("course.html", COURSE_SLUG)
    assert catalogue.holds(key, COURSE_SLUG)
    catalogue._next_check = 0.0  # the once-a-second version check is due
    # The first request to ask is the one to check (in the thread pool, where course() checks) ...
    assert not catalogue.holds(key, COURSE_SLUG)
    # ... and until it has, the event loop serves the others from memory, with no SQL.
    counter.start()
    assert catalogue.holds(key, COURSE_SLUG) and catalogue.holds(key, COURSE_SLUG)
    assert catalogue.course(COURSE_SLUG, check=False).slug == COURSE_SLUG  # type: ignore[union-attr]
    assert len(catalogue.page(key, lambda: "never rendered", hole="x", check=False).pieces) > 1
    assert client.get(f"/courses/{COURSE_SLUG}").status_code == 200
    assert counter.statements == []
    checks = catalogue.version_checks
    assert catalogue.course(COURSE_SLUG).slug == COURSE_SLUG  # type: ignore[union-attr]  # the claimer's check
    assert catalogue.version_checks == checks + 1 and len(counter.statements) == 1
    catalogue._next_check = 0.0
    assert not catalogue.holds(key, COURSE_SLUG)  # the claim ended with that check: the next one is new
    catalogue._check_claimed_until = 0.0  # a claimer that never checked: its claim runs out ...
    page = client.get(f"/courses/{COURSE_SLUG}")  # ... and the next request claims and checks
    assert page.status_code == 200 and "Sourdough from Scratch" in page.text
    assert catalogue.version_checks == checks + 2 and catalogue.holds(key, COURSE_SLUG)


def test_another_process_import_shows_within_the_recheck_interval(
    tmp_path: Path, pg_web_database_url: str, web_clock: ManualClock, web_smtp: RecordingSMTPServer
) -> None:
    settings = web_settings(tmp_path, pg_web_database_url, smtp_host=web_smtp.host, smtp_port=web_smtp.port,
                            catalogue_recheck_seconds=0)
    stack = prepare(settings, web_clock, web_smtp)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        assert "Sourdough from Scratch" in client.get(f"/courses/{COURSE_SLUG}").text
        # An import elsewhere: only the database changes (updated_at moves, as the importer sets it).
        with stack.sessions.begin() as session:
            session.execute(update(Course).values(title="Bread Again", updated_at=START.replace(year=2031)))
        assert "Bread Again" in client.get(f"/courses/{COURSE_SLUG}").text
    get_engine(settings).dispose()


def _reader_in_courses(stack: WebStack, email: str, courses: int) -> int:
    """A confirmed reader enrolled in the sample course and courses - 1 more."""
    with stack.sessions.begin() as session:
        sample = session.scalars(select(Course).where(Course.slug == COURSE_SLUG)).one()
        reader = Subscriber(email=email, name="R", timezone="Europe/Berlin", status=SubscriberStatus.ACTIVE,
                            created_at=START, confirmed_at=START)
        session.add(reader)
        session.flush()
        for index in range(courses):
            course = sample if index == 0 else Course(
                slug=f"extra-{email.split('@')[0]}-{index}", title=f"Extra {index}", description="",
                days_between_lessons=1, send_time=clock_time(9), weekday_mask=0b11111, sender_name="S",
                sender_email="s@example.org", target_words=300, created_at=START, updated_at=START,
            )
            session.add(course)
            session.flush()
            session.add(Enrollment(subscriber_id=reader.id, course_id=course.id, status=EnrollmentStatus.ACTIVE,
                                   enrolled_at=START))
        return reader.id


def test_preferences_and_one_click_unsubscribe_cost_the_same_for_one_course_or_four(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    signer = signer_from_settings(stack.settings)
    costs = {}
    for courses in (1, 4):
        reader = _reader_in_courses(stack, f"r{courses}@example.org", courses)
        counter.start()
        page = client.get(f"/preferences/{signer.token(LinkPurpose.PREFERENCES, reader)}")
        assert page.status_code == 200
        preferences = len(counter.statements)
        assert counter.commits == 0  # read-only: autocommit, no BEGIN and no COMMIT round trip
        counter.start()
        answer = client.post(f"/u/{signer.token(LinkPurpose.UNSUBSCRIBE, reader)}",
                             data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        costs[courses] = (preferences, len(counter.statements), counter.commits)
        with stack.sessions() as session:
            statuses = set(session.scalars(select(Enrollment.status).where(Enrollment.subscriber_id == reader)))
        assert statuses == {EnrollmentStatus.UNSUBSCRIBED}
    assert costs[1] == costs[4], costs
    # Preferences: the subscriber, then the enrollments with their counts. Unsubscribe from
    # everything: one statement in autocommit (the enrollments, the subscriber and every open row
    # of theirs), then the language of the page; no BEGIN and no COMMIT.
    assert costs[1] == (2, 2, 0), costs


def test_unsubscribing_from_one_course_is_one_statement_and_the_course_comes_from_the_cache(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    stack, client, counter = costed
    signer = signer_from_settings(stack.settings)
    readers = [_reader_in_courses(stack, f"one{n}@example.org", 2) for n in range(2)]
    course_id = stack.course_id()
    for reader in readers:
        counter.start()
        answer = client.post(f"/u/{signer.token(LinkPurpose.UNSUBSCRIBE, reader, course_id)}",
                             data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200 and "Sourdough from Scratch" in answer.text
        cost = (list(counter.statements), counter.commits)
        with stack.sessions() as session:
            statuses = dict(session.execute(select(Enrollment.course_id, Enrollment.status).where(Enrollment.subscriber_id == reader)).all())
            assert session.get(Subscriber, reader).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
        assert statuses[course_id] == EnrollmentStatus.UNSUBSCRIBED
        assert {status for course, status in statuses.items() if course != course_id} == {EnrollmentStatus.ACTIVE}
    # The second reader's: one statement in autocommit (the enrollment's UPDATE, the cancel of its
    # open rows and the subscriber's address: audience.enrollment.unsubscribe_in_one); the course's
    # title and language were cached by the first.
    assert cost == (["WITH stopped AS "], 0), cost


def test_a_slug_set_read_while_the_catalogue_changed_is_not_kept(
    costed: tuple[WebStack, TestClient, DatabaseCounter],
) -> None:
    """Another thread's version check may drop everything while this one reads the slugs: that set
    may predate the change (a course just added missing from it), so it answers this request only."""
    stack, _, _ = costed
    cache: CatalogueCache

    def sessions_meanwhile_dropped() -> Session:
        cache._generation += 1  # what a concurrent _refresh that saw a change does, with the rest
        return stack.sessions()

    cache = CatalogueCache(sessions_meanwhile_dropped, recheck_seconds=3600)  # type: ignore[arg-type]
    cache._refresh = lambda: None  # type: ignore[method-assign]  # only the slug read is under test
    assert cache.course("made-up") is None and cache._slugs is None
    steady = CatalogueCache(stack.sessions, recheck_seconds=3600)
    assert steady.course("made-up") is None and steady._slugs is not None and COURSE_SLUG in steady._slugs
