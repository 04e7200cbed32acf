"""The admin's subscriber directory, on PostgreSQL and SQLite: filters parsed from a URL's query,
case-insensitive substring search, keyset pages that never repeat or skip anyone, a timeline that
merges the event record with the ledger's deliveries, admin unsubscribe and resubscribe (never for
a complaint or an erasure), and bulk actions on a filter's whole result that are idempotent; every
change comes with its event, in its own transaction."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from course.audience.directory import (
    DirectoryError,
    SubscriberFilter,
    admin_resubscribe,
    admin_unsubscribe,
    bulk_action,
    filter_conditions,
    list_subscribers,
    parse_cursor,
    parse_filter,
    subscriber_detail,
)
from course.audience.enrollment import enroll, get_or_create_subscriber, pause, unsubscribe, unsubscribe_in_one
from course.audience.events import events_of, record_event
from course.audience.subscriptions import change_timezone, confirm
from course.clock import ManualClock
from course.ledger import suppress
from course.models import (
    Course,
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    SubscriberTag,
)
from tests.support.pipeline_fixtures import make_course

ADMIN = "editor@example.org"


def _people(session: Session, clock: ManualClock, count: int) -> list[int]:
    return [
        get_or_create_subscriber(session, f"reader{n:03d}@example.org", name=f"Reader {n}", now=clock.now() + timedelta(seconds=n)).id
        for n in range(count)
    ]


def _kinds(session: Session, subscriber_id: int) -> list[str]:
    return [event.kind for event in events_of(session, subscriber_id)]


# --- filters (pure) ------------------------------------------------------------------------------


def test_a_filter_round_trips_through_its_url_query() -> None:
    chosen = parse_filter({"q": "  Ann  ", "status": "Active", "tag": "vip", "course": "bread", "lesson": "3",
                           "from": "2026-01-01", "to": "2026-02-01", "timezone": "Europe/Berlin"})  # fmt: skip
    assert chosen == SubscriberFilter(
        q="Ann", status="active", tag="vip", course="bread", lesson=3, signed_up_from=date(2026, 1, 1),
        signed_up_to=date(2026, 2, 1), timezone="Europe/Berlin",
    )  # fmt: skip
    from urllib.parse import parse_qsl

    assert parse_filter(dict(parse_qsl(chosen.query_string()))) == chosen
    assert SubscriberFilter().query_string() == "" and SubscriberFilter().is_everyone


def test_bad_filter_values_are_refused_one_message_per_field() -> None:
    with pytest.raises(DirectoryError) as refused:
        parse_filter({"status": "gone", "from": "yesterday", "timezone": "Mars/Base", "lesson": "2", "q": "x" * 300})
    assert set(refused.value.fields) == {"status", "from", "timezone", "lesson", "q"}
    assert "a lesson needs a course" in refused.value.fields["lesson"]
    with pytest.raises(DirectoryError):
        parse_filter({"from": "2026-02-01", "to": "2026-01-01"})
    with pytest.raises(DirectoryError):
        parse_cursor("1; DROP TABLE subscribers")
    assert parse_cursor("") is None and parse_cursor("42") == 42


# --- the list ------------------------------------------------------------------------------------


def test_keyset_pages_cover_everyone_once_newest_first(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ids = _people(session, clock, 23)
    seen: list[int] = []
    cursor = None
    with db() as session:
        for _ in range(5):
            page = list_subscribers(session, SubscriberFilter(), cursor=cursor, limit=10)
            seen += [row.id for row in page.subscribers]
            if page.next_cursor is None:
                break
            cursor = parse_cursor(page.next_cursor)
    assert seen == sorted(ids, reverse=True)
    # A subscriber added meanwhile does not shift the later pages (no OFFSET).
    with db.begin() as session:
        first = list_subscribers(session, SubscriberFilter(), limit=10)
        get_or_create_subscriber(session, "late@example.org", now=clock.now())
        second = list_subscribers(session, SubscriberFilter(), cursor=parse_cursor(first.next_cursor or ""), limit=10)
    assert [row.id for row in second.subscribers] == sorted(ids, reverse=True)[10:20]


def test_search_is_case_insensitive_prefix_and_substring_on_address_and_name(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ann = get_or_create_subscriber(session, "Ann.Smith@Example.org", name="Annabel", now=clock.now()).id
        bob = get_or_create_subscriber(session, "bob@shop.example", name="Bob Marsh", now=clock.now()).id
        get_or_create_subscriber(session, "carl_1@example.net", name="Carl", now=clock.now())
        get_or_create_subscriber(session, "carl11@example.net", name="Carl", now=clock.now())

    def found(q: str) -> set[int]:
        with db() as session:
            return {row.id for row in list_subscribers(session, parse_filter({"q": q})).subscribers}

    assert found("ann") == {ann}  # prefix, other case
    assert found("SMITH@") == {ann}  # substring
    assert found("marsh") == {bob}  # the name
    assert found("shop.EX") == {bob}
    assert len(found("carl")) == 2
    assert len(found("carl_")) == 1  # _ and % are characters, not wildcards
    assert found("%") == set()
    assert found("nobody") == set()


def test_filters_by_status_tag_course_lesson_date_and_zone(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=3)
        ann = get_or_create_subscriber(session, "ann@example.org", timezone_name="Europe/Berlin", now=clock.now())
        bob = get_or_create_subscriber(session, "bob@example.org", now=clock.now() + timedelta(days=3))
        enroll(session, ann, course, now=clock.now())
        session.add(SubscriberTag(subscriber_id=bob.id, tag="vip"))
        ann_id, bob_id = ann.id, bob.id
        session.execute(
            Delivery.__table__.update()
            .where(Delivery.subscriber_id == ann_id, Delivery.lesson_id == course.lessons[1].id)
            .values(state=DeliveryState.SENT)
        )  # lesson 2 reached (a test arranges the ledger's state directly)
        suppress(session, [bob_id], now=clock.now())
    day = clock.now().date()

    def found(**params: str) -> set[int]:
        with db() as session:
            return {row.id for row in list_subscribers(session, parse_filter(params)).subscribers}

    assert found(status="bounced") == {bob_id}
    assert found(tag="vip") == {bob_id}
    assert found(course="bread") == {ann_id}
    assert found(course="bread", lesson="2") == {ann_id}
    assert found(course="bread", lesson="3") == set()
    assert found(timezone="Europe/Berlin") == {ann_id}
    assert found(**{"from": (day + timedelta(days=1)).isoformat()}) == {bob_id}
    assert found(**{"to": day.isoformat()}) == {ann_id}
    assert found(course="nope") == set()


# --- the event record and the timeline -----------------------------------------------------------


def test_each_change_records_its_event_in_its_own_transaction(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", status=SubscriberStatus.PENDING, now=clock.now())
        enroll(session, ann, course, now=clock.now(), status=EnrollmentStatus.PENDING)
        ann_id, course_id = ann.id, course.id
    with db.begin() as session:
        confirm(session, ann_id, course_id, now=clock.now())
        change_timezone(session, session.get(Subscriber, ann_id), "Asia/Tokyo", now=clock.now())  # type: ignore[arg-type]
        pause(session, session.scalars(select(Enrollment)).one(), now=clock.now())
        admin_unsubscribe(session, ann_id, actor=ADMIN, reason="asked by phone", now=clock.now())
    # A change rolled back leaves no event behind.
    with pytest.raises(RuntimeError), db.begin() as session:
        admin_resubscribe(session, ann_id, actor=ADMIN, reason="asked again", now=clock.now())
        raise RuntimeError("the request failed after the change")
    with db() as session:
        assert _kinds(session, ann_id) == ["confirmed", "preferences_changed", "paused", "unsubscribed"]
        unsubscribed = events_of(session, ann_id)[-1]
        assert (unsubscribed.actor, unsubscribed.detail) == (ADMIN, {"reason": "asked by phone"})
        assert session.get(Subscriber, ann_id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


@pytest.mark.parametrize("course_only", [False, True], ids=["everything", "one-course"])
def test_the_one_statement_unsubscribe_records_its_event_too(db: sessionmaker[Session], clock: ManualClock, course_only: bool) -> None:
    engine = db.kw["bind"]
    if engine.dialect.name != "postgresql":
        pytest.skip("one statement on PostgreSQL only (the one-click endpoint's)")
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        enroll(session, ann, course, now=clock.now())
        ann_id, course_id = ann.id, course.id
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        unsubscribe_in_one(connection, ann_id, course_id=course_id if course_only else None, now=clock.now())
        unsubscribe_in_one(connection, 10**9, course_id=course_id if course_only else None, now=clock.now())  # nobody: no event
    with db() as session:
        events = session.scalars(select(SubscriberEvent)).all()
        assert [(event.subscriber_id, event.kind, event.occurred_at) for event in events] == [(ann_id, "unsubscribed", clock.now())]
        assert events[0].detail == ({"course_id": course_id} if course_only else None)


def test_a_bounce_is_recorded_once_by_the_ledger(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ann_id = get_or_create_subscriber(session, "ann@example.org", now=clock.now()).id
        suppress(session, [ann_id], now=clock.now())
        suppress(session, [ann_id], now=clock.now())  # a second bounce of an address already suppressed
    with db() as session:
        assert _kinds(session, ann_id) == ["bounced"]


def test_the_timeline_merges_events_and_deliveries_in_time_order(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        course = make_course(session, now=clock.now(), lessons=2)
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        record_event(session, ann.id, SubscriberEventKind.SIGNED_UP, now=clock.now() - timedelta(hours=1), detail={"course_id": course.id, "source": "cli"})
        enroll(session, ann, course, now=clock.now())
        ann_id = ann.id
        session.execute(
            Delivery.__table__.update().where(Delivery.lesson_id == course.lessons[0].id)
            .values(state=DeliveryState.BOUNCED, last_error="550 5.1.1 no such user")
        )  # fmt: skip
    clock.advance(timedelta(days=5))
    with db.begin() as session:
        admin_unsubscribe(session, ann_id, actor=ADMIN, now=clock.now())
    with db() as session:
        detail = subscriber_detail(session, ann_id)
        assert subscriber_detail(session, 10**9) is None
    assert detail is not None
    summaries = [entry.summary for entry in detail.timeline]
    assert summaries[0].startswith("Signed up (") and "via cli" in summaries[0]
    assert summaries[1].startswith("Lesson 1 of") and summaries[1].endswith(": bounced")
    assert detail.timeline[1].detail["smtp_answer"] == "550 5.1.1 no such user"
    assert summaries[-2].startswith("Lesson 2 of") and summaries[-2].endswith(": cancelled")  # due before the unsubscribe
    assert summaries[-1] == "Unsubscribed from everything"
    assert [entry.at for entry in detail.timeline] == sorted(entry.at for entry in detail.timeline)
    assert detail.enrollments[0].lesson_count == 2 and detail.enrollments[0].status == EnrollmentStatus.UNSUBSCRIBED


# --- admin actions -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [SubscriberStatus.COMPLAINED, SubscriberStatus.ERASED])
def test_complained_or_erased_addresses_are_never_resubscribed(db: sessionmaker[Session], clock: ManualClock, status: SubscriberStatus) -> None:
    with db.begin() as session:
        ann = get_or_create_subscriber(session, "ann@example.org", now=clock.now())
        ann.status = status
        ann_id = ann.id
    with pytest.raises(DirectoryError, match="never resubscribed"), db.begin() as session:
        admin_resubscribe(session, ann_id, actor=ADMIN, reason="they asked", now=clock.now())
    with db() as session:
        assert session.get(Subscriber, ann_id).status == status  # type: ignore[union-attr]
        assert _kinds(session, ann_id) == []


def test_resubscribe_needs_a_reason_and_records_it(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ann_id = get_or_create_subscriber(session, "ann@example.org", now=clock.now()).id
        assert admin_unsubscribe(session, ann_id, actor=ADMIN, now=clock.now())
        assert not admin_unsubscribe(session, ann_id, actor=ADMIN, now=clock.now())  # already: nothing recorded
    with pytest.raises(DirectoryError, match="needs a reason"), db.begin() as session:
        admin_resubscribe(session, ann_id, actor=ADMIN, reason="   ", now=clock.now())
    with db.begin() as session:
        admin_resubscribe(session, ann_id, actor=ADMIN, reason="signed the paper form", now=clock.now())
    with db() as session:
        assert session.get(Subscriber, ann_id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
        events = events_of(session, ann_id)
        assert [event.kind for event in events] == ["unsubscribed", "resubscribed"]
        assert events[-1].detail == {"reason": "signed the paper form"} and events[-1].actor == ADMIN


def test_bulk_actions_act_on_the_whole_filter_and_repeat_as_no_ops(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        make_course(session, now=clock.now(), lessons=2)
        ids = _people(session, clock, 12)
        get_or_create_subscriber(session, "outsider@example.net", now=clock.now())
    readers = parse_filter({"q": "@example.org"})
    for attempt in (1, 2):
        with db.begin() as session:
            tagged = bulk_action(session, readers, "tag-add", value="spring", actor=ADMIN, now=clock.now())
            enrolled = bulk_action(session, readers, "enrol", value="bread", actor=ADMIN, now=clock.now())
        assert (tagged.matched, tagged.changed) == (12, 12 if attempt == 1 else 0)
        assert enrolled.changed == (12 if attempt == 1 else 0)
    with db.begin() as session:
        stopped = bulk_action(session, parse_filter({"tag": "spring"}), "unsubscribe", value="list cleanup", actor=ADMIN, now=clock.now())
        again = bulk_action(session, parse_filter({"tag": "spring"}), "unsubscribe", actor=ADMIN, now=clock.now())
        removed = bulk_action(session, readers, "tag-remove", value="spring", actor=ADMIN, now=clock.now())
    assert (stopped.changed, again.changed, removed.changed) == (12, 0, 12)
    with db() as session:
        assert session.scalar(select(func.count()).select_from(SubscriberTag)) == 0
        assert set(session.scalars(select(Subscriber.status).where(Subscriber.id.in_(ids)))) == {SubscriberStatus.UNSUBSCRIBED}
        open_rows = session.scalar(select(func.count()).where(Delivery.state.in_([DeliveryState.PENDING, DeliveryState.HELD])))
        assert open_rows == 0  # every lesson row of the enrolments was cancelled
        assert _kinds(session, ids[0]) == ["tag_added", "enrolled", "unsubscribed", "tag_removed"]
        outsider = session.scalar(select(Subscriber.id).where(Subscriber.email == "outsider@example.net"))
        assert _kinds(session, outsider) == []  # type: ignore[arg-type]
    with pytest.raises(DirectoryError, match="unknown course"), db.begin() as session:
        bulk_action(session, readers, "enrol", value="nope", actor=ADMIN, now=clock.now())
    with pytest.raises(DirectoryError, match="a tag is"), db.begin() as session:
        bulk_action(session, readers, "tag-add", value="two words", actor=ADMIN, now=clock.now())


def test_the_events_table_is_append_only_in_the_code() -> None:
    """Nothing but course.audience.events and course.ledger's bounce writes subscriber_events, and
    nothing updates or deletes its rows, except erasure (course.audience.erasure), which clears the
    detail of an erased subscriber's events and keeps what happened and when."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "course"
    writers = {
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if "SubscriberEvent)" in path.read_text() or "SubscriberEvent.__table__" in path.read_text()
    }  # fmt: skip
    assert writers <= {"audience/events.py", "ledger.py", "audience/enrollment.py", "models.py", "audience/erasure.py"}
    for path in root.rglob("*.py"):
        if path.name == "erasure.py":
            continue
        source = path.read_text()
        assert "update(SubscriberEvent" not in source and "delete(SubscriberEvent" not in source, path


def test_postgres_serves_the_search_from_the_trigram_indexes(pg_database_url: str) -> None:
    """ILIKE '%…%' on address or name can use pg_trgm's GIN indexes (migration 0015): with the
    sequential scan priced out, the plan is a bitmap scan of both, never a scan of the table."""
    from course import schema
    from course.db import make_engine

    engine = make_engine(pg_database_url)
    try:
        schema.upgrade(engine)
        with Session(engine) as session:
            session.execute(text("SET enable_seqscan = off"))
            statement = select(Subscriber.id).where(*filter_conditions(parse_filter({"q": "ann"})))
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            plan = "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
    finally:
        engine.dispose()
    assert "ix_subscribers_email_trgm" in plan and "ix_subscribers_name_trgm" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_a_capped_count_stops_past_the_cap_and_tag_names_come_from_the_index(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """The list page's count says "more than" past its cap instead of counting a million rows; the
    filter form's tag choices are read one index probe per name (a loose index scan)."""
    from course.audience.directory import SubscriberFilter, count_matching, tag_names
    from course.models import SubscriberTag

    with sessions.begin() as session:
        for n in range(5):
            subscriber = get_or_create_subscriber(session, f"cap{n}@example.org", now=clock.now())
            session.add_all([SubscriberTag(subscriber_id=subscriber.id, tag=tag) for tag in ("zeta", "alpha", "mid")[: n % 3 + 1]])
    with sessions() as session:
        assert count_matching(session, SubscriberFilter()) == 5
        assert count_matching(session, SubscriberFilter(), at_most=2) == 3  # "more than 2"
        assert count_matching(session, SubscriberFilter(), at_most=10) == 5
        assert tag_names(session) == ["alpha", "mid", "zeta"]
        assert tag_names(session, limit=2) == ["alpha", "mid"]


def test_the_language_filter_round_trips_and_refuses_an_unknown_code() -> None:
    from urllib.parse import parse_qsl

    chosen = parse_filter({"language": " DE "})
    assert chosen == SubscriberFilter(language="de") and chosen.query_string() == "language=de"
    assert parse_filter(dict(parse_qsl(chosen.query_string()))) == chosen
    assert parse_filter({"language": "none"}).language == "none"
    with pytest.raises(DirectoryError) as refused:
        parse_filter({"language": "klingon"})
    assert set(refused.value.fields) == {"language"}


def test_a_bulk_enrol_writes_the_rows_enrolling_each_reader_alone_would(db: sessionmaker[Session], clock: ManualClock) -> None:
    # enrol_all enrols readers new to the course set-based (enroll_new: one INSERT per lesson and
    # time zone) and a reader with a history in it one at a time (enroll). Either way each reader's
    # enrollment and lesson rows must be what enroll() alone gives: lesson 1 now, the rest at the
    # course's send time in the reader's own zone.
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
    with db.begin() as session:
        make_course(session, now=clock.now(), lessons=3, days_between=2)
        make_course(session, now=clock.now(), slug="alone", lessons=3, days_between=2)
        ids = _people(session, clock, 8)
        for n, subscriber_id in enumerate(ids):
            change_timezone(session, session.get(Subscriber, subscriber_id), zones[n % len(zones)], now=clock.now())  # type: ignore[arg-type]
        bread = session.scalar(select(Course).where(Course.slug == "bread"))
        returning = session.get(Subscriber, ids[0])
        enroll(session, returning, bread, now=clock.now() - timedelta(days=9))  # type: ignore[arg-type]
        unsubscribe(session, returning, course_id=bread.id, now=clock.now() - timedelta(days=8))  # type: ignore[arg-type, union-attr]
    with db.begin() as session:
        done = bulk_action(session, parse_filter({"q": "@example.org"}), "enrol", value="bread", actor=ADMIN, now=clock.now())
        alone = session.scalar(select(Course).where(Course.slug == "alone"))
        for subscriber_id in ids:
            enroll(session, session.get(Subscriber, subscriber_id), alone, now=clock.now())  # type: ignore[arg-type]
    assert done.changed == 8

    def plan(session: Session, slug: str) -> dict[int, list[tuple[int, datetime, str]]]:
        rows = session.execute(
            select(Delivery.subscriber_id, Lesson.position, Delivery.due_at, Delivery.state)
            .join(Lesson, Lesson.id == Delivery.lesson_id).join(Course, Course.id == Lesson.course_id)
            .where(Course.slug == slug, Delivery.subscriber_id.in_(ids[1:]))
            .order_by(Delivery.subscriber_id, Lesson.position)
        )  # fmt: skip
        found: dict[int, list[tuple[int, datetime, str]]] = {}
        for subscriber_id, position, due_at, state in rows:
            found.setdefault(subscriber_id, []).append((position, due_at, state))
        return found

    with db() as session:
        assert plan(session, "bread") == plan(session, "alone") and len(plan(session, "bread")) == 7
        statuses = session.execute(
            select(Enrollment.subscriber_id, Enrollment.status).join(Course, Course.id == Enrollment.course_id).where(Course.slug == "bread")
        ).all()
        assert sorted(statuses) == sorted((subscriber_id, EnrollmentStatus.ACTIVE) for subscriber_id in ids)
        assert _kinds(session, ids[3]).count("enrolled") == 1
        # the returning reader went on where they stopped: their lesson rows are theirs again
        bread_lessons = select(Lesson.id).join(Course, Course.id == Lesson.course_id).where(Course.slug == "bread")
        pending = select(func.count()).where(
            Delivery.subscriber_id == ids[0], Delivery.lesson_id.in_(bread_lessons), Delivery.state == DeliveryState.PENDING
        )
        assert session.scalar(pending) == 3
