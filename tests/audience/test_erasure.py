"""GDPR erasure and access: after erasure no text column of any table holds the address; delivery
rows stay for the counts; the address is suppressed by hash, so a re-import skips it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Table, func, inspect, or_, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.sqltypes import JSON, String, Text

from course.audience.enrollment import enroll, get_or_create_subscriber
from course.audience.erasure import access_export, erase, find, personal_data_columns
from course.audience.imports import ImportOptions, run_import, start_import
from course.audience.signup_requests import queue_signup
from course.audience.subscriptions import SignupDetails
from course.audience.suppression import address_hash, is_suppressed
from course.clock import ManualClock
from course.models import Base, Delivery, DeliveryState, SubscriberStatus, SubscriberTag
from tests.support.pipeline_fixtures import make_course

SECRET = "test-secret"
ADDRESS = "Erin.Erased@example.org"


def _text_columns_holding(session: Session, needle: str) -> list[str]:
    """Every (table.column) of the database whose text holds `needle`, case-insensitively."""
    found = []
    for name in inspect(session.connection()).get_table_names():
        table = Table(name, Base.metadata.__class__(), autoload_with=session.connection())
        columns = [column for column in table.columns if isinstance(column.type, (String, Text, JSON))]
        if not columns:
            continue
        hits = session.scalar(
            select(func.count()).select_from(table).where(
                or_(*(func.lower(func.cast(column, Text)).contains(needle.lower()) for column in columns))
            )
        )
        if hits:
            found += [f"{name}.{column.name}" for column in columns if session.scalar(
                select(func.count()).select_from(table).where(func.lower(func.cast(column, Text)).contains(needle.lower()))
            )]  # fmt: skip
    return found


def test_erasure_leaves_the_address_nowhere(sessions: sessionmaker[Session], clock: ManualClock, tmp_path: Path) -> None:
    with sessions.begin() as session:
        course = make_course(session, now=clock.now())
        erin = get_or_create_subscriber(session, ADDRESS, name="Erin", timezone_name="Europe/Paris", now=clock.now())
        session.add(SubscriberTag(subscriber_id=erin.id, tag="vip"))
        enroll(session, erin, course, now=clock.now())
        queue_signup(session, course.id, SignupDetails(email=ADDRESS.lower(), name="Erin", timezone="UTC"), now=clock.now())
        session.flush()
        session.execute(  # an SMTP answer quoting the address, as relays do (written by hand: no sender runs here)
            text("UPDATE deliveries SET last_error = :answer, state = 'sent' WHERE subscriber_id = :id AND lesson_id IS NOT NULL"),
            {"answer": f"250 ok queued for <{ADDRESS}>", "id": erin.id},
        )
        from course.models import BounceReport  # a soft bounce whose diagnostic quotes the address

        session.add(BounceReport(
            report_key="<bounce-1@mx>", subscriber_id=erin.id, kind="soft", status="4.2.2",
            reason=f"452 4.2.2 <{ADDRESS}>: mailbox full", source="folder", received_at=clock.now(),
        ))  # fmt: skip
        erin_id = erin.id
    listing = tmp_path / "list.csv"
    listing.write_text(f"email\n{ADDRESS}\nbad address\n")
    options = ImportOptions(mode="confirmed", consent="yes")
    with sessions.begin() as session:
        record = start_import(session, filename="list.csv", options=options, source="cli", actor="cli", admin_id=None, now=clock.now())
        run_import(session, record, listing, options=options, secret=SECRET, now=clock.now())
    with sessions.begin() as session:
        assert _text_columns_holding(session, ADDRESS)  # the search finds it before
        exported = access_export(session, find(session, ADDRESS.upper()))
        assert exported["profile"]["email"] == ADDRESS and exported["tags"] == ["vip"]
        assert exported["enrollments"][0]["course"] == "bread" and exported["deliveries"][0]["subject"]
        sent_before = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.subscriber_id == erin_id))
        assert erase(session, find(session, erin_id), secret=SECRET, now=clock.now()) is True
    with sessions.begin() as session:
        assert _text_columns_holding(session, ADDRESS) == []
        assert _text_columns_holding(session, "Erin") == []
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.subscriber_id == erin_id)) == sent_before
        assert not session.scalars(select(Delivery.state).where(Delivery.state.in_(["pending", "held", "leased"]))).all()
        assert session.scalars(select(Delivery.state).where(Delivery.state == DeliveryState.SENT)).first()
        assert find(session, erin_id).status == SubscriberStatus.ERASED
        assert is_suppressed(session, secret=SECRET, email=ADDRESS.lower()) == "erased"
        assert {entry.table for entry in personal_data_columns(session)} >= {"subscribers", "deliveries", "signup_requests", "bounce_reports", "subscriber_events"}
        assert erase(session, find(session, erin_id), secret=SECRET, now=clock.now()) is False
    # A re-import cannot bring the address back silently.
    with sessions.begin() as session:
        record = start_import(session, filename="again.csv", options=options, source="cli", actor="cli", admin_id=None, now=clock.now())
        counts = run_import(session, record, listing, options=options, secret=SECRET, now=clock.now())
    assert counts["suppressed"] == 1 and counts["accepted"] == 0
    assert address_hash(SECRET, ADDRESS) == address_hash(SECRET, ADDRESS.lower())


def test_erasure_clears_the_event_record_and_keeps_what_happened(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """The timeline's event record: after erasure each event still says what happened and when (the
    funnels count them), and nothing of who."""
    from course.audience.events import record_event
    from course.models import SubscriberEvent

    with sessions.begin() as session:
        erin = get_or_create_subscriber(session, ADDRESS, now=clock.now())
        record_event(session, erin.id, "signed_up", now=clock.now(), detail={"source": "form", "note": f"typed {ADDRESS}"})
        assert "subscriber_events" in {entry.table for entry in personal_data_columns(session)}
        assert any(ADDRESS in str(event.get("detail")) for event in access_export(session, erin)["events"])
        erase(session, erin, secret=SECRET, now=clock.now())
    with sessions.begin() as session:
        kinds = session.scalars(select(SubscriberEvent.kind).order_by(SubscriberEvent.id)).all()
        assert "signed_up" in kinds
        assert _text_columns_holding(session, ADDRESS) == []
