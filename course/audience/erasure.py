"""GDPR: a subscriber's data as JSON (the access request), and erasure.

Erasure keeps every row the counts and funnels read (the subscriber's row, enrollments, delivery
rows) and removes what identifies the person from every table that holds it
(`personal_data_columns` lists them: that list is what "every table" means, and a test searches
every text column of the database for the address afterwards):

1. the address goes on the suppression list as a keyed hash (course.audience.suppression), so an
   import or a signup cannot bring it back silently: a new signup is a fresh opt-in;
2. the subscriber row becomes `erased-<id>@erased.invalid`, no name, UTC, status erased;
3. tags and sign-up requests are deleted; enrollments still running are stopped;
4. delivery rows are anonymised by the ledger (SMTP answers and test addresses);
5. the import reports forget the address; the event record (subscriber_events, when the table
   exists) keeps each event's kind and time, not its details."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Table, delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.sqltypes import JSON, String, Text

from course.audience.suppression import suppress_address
from course.ledger import anonymise_subscriber_rows
from course.audience.enrollment import stopped_values
from course.models import (
    BounceReport,
    Campaign,
    Course,
    Delivery,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    SignupRequest,
    Subscriber,
    SubscriberEvent,
    SubscriberImportRow,
    SubscriberStatus,
    SubscriberTag,
    SuppressionReason,
    subscriber_rows,
)

EVENTS_TABLE = "subscriber_events"
# Columns of the event record that say what happened and when, kept after erasure; every other
# text or JSON column of it is cleared.
EVENT_COLUMNS_KEPT = ("id", "subscriber_id", "kind", "at", "occurred_at", "created_at")


class ErasureError(ValueError):
    """No such subscriber: the message names the id or address."""


@dataclass(frozen=True)
class PersonalData:
    """One table that holds personal data of subscribers: the column naming whose it is (or the
    address column matched against theirs) and the columns erasure clears. `how`: "anonymise"
    rewrites the row, "delete" removes it, "clear" empties the columns."""

    table: str
    owner_column: str
    columns: tuple[str, ...]
    how: str


def personal_data_columns(session: Session) -> list[PersonalData]:
    """Every table and column holding a subscriber's personal data, as erasure treats them. A new
    table with personal data is added here (and to `erase`), and the erasure test then checks it."""
    tables = [
        PersonalData("subscribers", "id", ("email", "name", "timezone"), "anonymise"),
        PersonalData("subscriber_tags", "subscriber_id", ("tag",), "delete"),
        PersonalData("signup_requests", "email", ("email", "name", "timezone"), "delete"),
        PersonalData("deliveries", "subscriber_id", ("last_error", "test_address"), "clear"),
        PersonalData("subscriber_import_rows", "email", ("email", "reason"), "anonymise"),
        # A bounce's diagnostic text often quotes the address ("550 5.1.1 <ann@…>: unknown user").
        PersonalData("bounce_reports", "subscriber_id", ("reason",), "clear"),
    ]
    events = _events_table(session)
    if events is not None:
        tables.append(PersonalData(EVENTS_TABLE, "subscriber_id", tuple(column.name for column in _event_detail_columns(events)), "clear"))
    return tables


def _events_table(session: Session) -> Table | None:
    """The subscriber timeline's event record (course.audience.events)."""
    return SubscriberEvent.__table__  # type: ignore[return-value]


def _event_detail_columns(events: Table) -> list[Column[Any]]:
    return [
        column for column in events.columns
        if column.name not in EVENT_COLUMNS_KEPT and isinstance(column.type, (String, Text, JSON))
    ]  # fmt: skip


def find(session: Session, who: int | str) -> Subscriber:
    if isinstance(who, int):
        subscriber = session.get(Subscriber, who)
    else:
        subscriber = session.scalars(select(Subscriber).where(func.lower(Subscriber.email) == who.strip().lower())).first()
    if subscriber is None:
        raise ErasureError(f"no subscriber {who!r}")
    return subscriber


def erase(session: Session, subscriber: Subscriber, *, secret: str, now: datetime, admin_id: int | None = None) -> bool:
    """Erase one subscriber (the module's steps). False if they were erased already."""
    if subscriber.status == SubscriberStatus.ERASED:
        return False
    address, subscriber_id = subscriber.email, subscriber.id
    suppress_address(session, secret=secret, email=address, reason=SuppressionReason.ERASED, now=now, admin_id=admin_id)
    anonymise_subscriber_rows(session, [subscriber_id], address=address)
    session.execute(delete(SubscriberTag).where(SubscriberTag.subscriber_id == subscriber_id))
    session.execute(delete(SignupRequest).where(func.lower(SignupRequest.email) == address.lower()))
    session.execute(
        update(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.status != EnrollmentStatus.COMPLETED)
        .values(stopped_values())
    )
    session.execute(
        update(SubscriberImportRow)
        .where(func.lower(SubscriberImportRow.email) == address.lower())
        .values(email="(erased)", reason="")
    )
    session.execute(update(BounceReport).where(BounceReport.subscriber_id == subscriber_id).values(reason=""))
    events = _events_table(session)
    if events is not None:
        cleared = {column.name: (None if column.nullable else _empty(column)) for column in _event_detail_columns(events)}
        if cleared:
            session.execute(update(events).where(events.c.subscriber_id == subscriber_id).values(**cleared))
    subscriber.email = f"erased-{subscriber_id}@erased.invalid"
    subscriber.name = ""
    subscriber.timezone = "UTC"
    subscriber.status = SubscriberStatus.ERASED
    subscriber.unsubscribed_at = subscriber.unsubscribed_at or now
    session.flush()
    return True


def _empty(column: Column[Any]) -> Any:
    return {} if isinstance(column.type, JSON) else ""


def access_export(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything kept about one subscriber, as JSON-ready data: profile, tags, enrollments, events
    and deliveries (with dates and subjects)."""
    enrollments = session.execute(
        select(Enrollment, Course.slug, Course.title).join(Course, Course.id == Enrollment.course_id)
        .where(Enrollment.subscriber_id == subscriber.id).order_by(Enrollment.enrolled_at)
    ).all()  # fmt: skip
    deliveries = session.execute(
        select(Delivery.kind, Delivery.state, Delivery.created_at, Delivery.sent_at, Delivery.template, Lesson.title, Campaign.subject)
        .outerjoin(Lesson, Lesson.id == Delivery.lesson_id)
        .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
        .where(subscriber_rows(Delivery, lambda column: column == subscriber.id))  # index-served (models.subscriber_rows)
        .order_by(Delivery.created_at, Delivery.id)
    ).all()
    events: list[dict[str, Any]] = []
    table = _events_table(session)
    if table is not None:
        events = [
            {key: _plain(value) for key, value in row._mapping.items() if key != "subscriber_id"}
            for row in session.execute(select(table).where(table.c.subscriber_id == subscriber.id).order_by(*table.primary_key.columns))
        ]
    return {
        "profile": {
            "email": subscriber.email, "name": subscriber.name, "timezone": subscriber.timezone, "status": subscriber.status,
            "created_at": _plain(subscriber.created_at), "confirmed_at": _plain(subscriber.confirmed_at),
            "unsubscribed_at": _plain(subscriber.unsubscribed_at),
        },
        "tags": sorted(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == subscriber.id))),
        "enrollments": [
            {"course": slug, "course_title": title, "status": enrollment.status,
             "enrolled_at": _plain(enrollment.enrolled_at), "completed_at": _plain(enrollment.completed_at)}
            for enrollment, slug, title in enrollments
        ],
        "events": events,
        "deliveries": [
            {"kind": kind, "state": state, "created_at": _plain(created_at), "sent_at": _plain(sent_at),
             "subject": lesson_title or campaign_subject or template or ""}
            for kind, state, created_at, sent_at, template, lesson_title, campaign_subject in deliveries
        ],
    }  # fmt: skip


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
