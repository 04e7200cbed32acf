"""The delivery ledger's one writer: every INSERT, UPDATE and DELETE against `deliveries` is a
function here, so everything the rest of the code may do to a delivery row reads as one short list
and the concurrency rules are visible at a glance. Other modules read rows as they like, but write
them only through these functions (tests/test_architecture.py checks it, and that the list below
names every public name of this module, each in its own section of the file).

The interface, by caller (one section of this file each, in this order):

The subscriber side's:  lesson_rows, next_pending_due, schedule_lesson_rows, add_account_mail,
                        add_account_mails, hold_enrollment_rows, cancel_enrollment_rows,
                        cancel_subscriber_rows, Cancelling, run_with_cancelling, suppress,
                        anonymise_subscriber_rows (erasure)
The campaign lifecycle's: add_campaign_test, fan_out_campaign_rows, hold_campaign_rows,
                        release_campaign_rows, cancel_campaign_rows
Content's and admin accounts': cancel_lesson_rows, add_lesson_test, add_admin_invitation_mail, cancel_invitation_rows
The dispatcher's:       Claim, count_in_flight, claim_due, fail_exhausted_leases
The sender's:           DeliveryJob, CourseHeader, LessonContent, CampaignContent, InvitationContent,
                        Batch, take_over, Outcome, Settled, record, MessageIds,
                        message_ids_from_secret, message_id_for, message_ids_for, delivery_of_message_id
Previews' reads:        read_batch, course_merge_values
Operators' and the bench's: requeue_failed, insert_lesson_rows

The previews' reads are content as the sender reads it, without sending (the admin's previews, the
view-in-browser page, the benchmark's message size). The state groups and priority classes live next to DeliveryState in course.models.

The life of a row: pending --claim--> leased --take_over--> sending --> sent | pending (retry) |
failed | bounced; any open row can be cancelled or held. Two rules keep a delivery from going out
twice:

1. claim_due marks a batch `leased` with a fresh lease token in one UPDATE whose inner SELECT uses
   FOR UPDATE SKIP LOCKED on PostgreSQL: concurrent dispatchers take disjoint rows, none waits.
2. take_over moves rows from `leased` to `sending` only where the token still matches. A retried or
   duplicated send task finds zero rows and sends nothing; a task whose lease expired and was
   reclaimed finds the token changed. The sender stops before its lease runs out.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    Integer,
    Select,
    SmallInteger,
    String,
    Text,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.expression import Executable

from course import counters
from course.models import (
    CLAIMABLE_DELIVERY_STATES,
    IN_FLIGHT_DELIVERY_STATES,
    OPEN_DELIVERY_STATES,
    QUEUED_DELIVERY_STATES,
    UNSETTLED_DELIVERY_STATES,
    AdminInvitation,
    Campaign,
    CampaignStatus,
    CampaignTestSend,
    Course,
    Delivery,
    DeliveryKind,
    DeliveryPriority,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    SignupRequest,
    Subscriber,
    SubscriberEvent,
    SubscriberEventKind,
    SubscriberStatus,
    UTCDateTime,
    subscriber_rows,
)


# --- Building blocks (private) --------------------------------------------------------------------


def _add_urgent(
    session: Session, *, now: datetime, priority: DeliveryPriority = DeliveryPriority.URGENT, **columns: Any
) -> Delivery:
    """A pending row due now in the urgent class (unless told otherwise: an import's confirmations
    are bulk), flushed so its id is known: how every single mail someone is waiting for (account
    mail, a test send, an admin invitation) enters the ledger."""
    row = Delivery(priority=int(priority), due_at=now, state=DeliveryState.PENDING, attempts=0, created_at=now, **columns)
    session.add(row)
    session.flush()
    return row


def _rows_with_constants(
    source: Select[Any], source_columns: list[str], **constants: ColumnElement[Any]
) -> tuple[list[str], Select[Any]]:
    """The column list and SELECT of an `INSERT INTO deliveries (...) SELECT`: the columns `source`
    yields (named by `source_columns`, in its order), then one column per keyword, each the same
    for every row (a typed literal, or an expression over `source`'s tables)."""
    return [*source_columns, *constants], source.add_columns(*constants.values())


def _set_state(session: Session, where: ColumnElement[bool], states: Iterable[DeliveryState], state: DeliveryState) -> int:
    """Move the rows matching `where` that are in one of `states` to `state`, dropping any lease."""
    return session.execute(
        update(Delivery)
        .where(where, Delivery.state.in_(list(states)))
        .values(state=state, lease_token=None, lease_expires_at=None)
    ).rowcount  # synchronize_session stays "auto": rows loaded in this session see the new state


def _ids_among(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids`; on PostgreSQL `column = ANY(:ids)`, the ids as one array parameter: the
    statement's text is then the same for any number of ids, so it is not rendered again per
    execution, and psycopg parses it once (an IN list of a few hundred ids made a statement past
    psycopg's 4 KB parse cache: ~4 % of a send worker's time went to parsing it again)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(BigInteger)))
    return column.in_(ids)


# --- The subscriber side's (audience: enrollment, signups, preferences, unsubscribe) --------------


def lesson_rows(session: Session, subscriber_id: int, lesson_ids: Sequence[int]) -> dict[int, Delivery]:
    """The subscriber's existing rows for these lessons, by lesson id (at most one each)."""
    return {
        row.lesson_id: row
        for row in session.scalars(
            select(Delivery).where(Delivery.subscriber_id == subscriber_id, Delivery.lesson_id.in_(lesson_ids))
        )
        if row.lesson_id is not None
    }


def next_pending_due(session: Session, enrollment_id: int) -> datetime | None:
    """When the enrollment's next pending row is due (None when nothing is pending)."""
    return session.scalars(
        select(Delivery.due_at)
        .where(Delivery.enrollment_id == enrollment_id, Delivery.state == DeliveryState.PENDING)
        .order_by(Delivery.due_at)
        .limit(1)
    ).first()


def schedule_lesson_rows(
    session: Session,
    existing: dict[int, Delivery],
    *,
    subscriber_id: int,
    enrollment_id: int,
    due_at_by_lesson: Sequence[tuple[int, datetime]],
    now: datetime,
) -> None:
    """Make each (lesson, due time) a pending row of this enrollment: a row in `existing` (from
    lesson_rows) is moved to the new time and un-cancelled, a missing one is inserted. The caller
    decides which lessons to pass: rows finished or in flight must not be among them."""
    new_rows = []
    for lesson_id, due_at in due_at_by_lesson:
        row = existing.get(lesson_id)
        if row is None:
            new_rows.append(
                {
                    "subscriber_id": subscriber_id,
                    "kind": DeliveryKind.LESSON,
                    "enrollment_id": enrollment_id,
                    "lesson_id": lesson_id,
                    "priority": int(DeliveryPriority.BULK),
                    "due_at": due_at,
                    "state": DeliveryState.PENDING,
                    "attempts": 0,
                    "created_at": now,
                }
            )
        else:
            row.enrollment_id = enrollment_id
            row.due_at = due_at
            row.state = DeliveryState.PENDING
            row.lease_token = None
            row.lease_expires_at = None
    if new_rows:
        session.execute(insert(Delivery), new_rows)
    session.flush()


def add_account_mail(
    session: Session,
    *,
    subscriber_id: int,
    enrollment_id: int,
    template: str,
    now: datetime,
    priority: DeliveryPriority = DeliveryPriority.URGENT,
) -> Delivery:
    """Queue a transactional mail (confirm, already_enrolled), due now, in the urgent class (an
    import's confirmations: bulk, throttled like any other mail)."""
    return _add_urgent(
        session, now=now, priority=priority, subscriber_id=subscriber_id, kind=DeliveryKind.TRANSACTIONAL,
        enrollment_id=enrollment_id, template=template,
    )


def add_account_mails(
    session: Session,
    enrollments: list[tuple[int, int]],
    *,
    template: str,
    now: datetime,
    priority: DeliveryPriority = DeliveryPriority.URGENT,
) -> dict[int, int]:
    """add_account_mail for many (subscriber_id, enrollment_id) pairs in one INSERT (PostgreSQL):
    returns each enrollment's new delivery id. The worker queues a batch of confirmations so."""
    if not enrollments:
        return {}
    rows = session.execute(
        text(
            "INSERT INTO deliveries (subscriber_id, enrollment_id, kind, template, priority, due_at, state, attempts, "
            "created_at) SELECT s, e, :kind, :template, :priority, :now, :state, 0, :now "
            "FROM unnest(CAST(:subscribers AS bigint[]), CAST(:enrollments AS bigint[])) AS t(s, e) "
            "RETURNING id, enrollment_id"
        ),
        {
            "kind": str(DeliveryKind.TRANSACTIONAL), "template": template, "priority": int(priority),
            "now": now, "state": str(DeliveryState.PENDING),
            "subscribers": [subscriber for subscriber, _ in enrollments],
            "enrollments": [enrollment for _, enrollment in enrollments],
        },
    ).all()
    return {enrollment_id: delivery_id for delivery_id, enrollment_id in rows}


def hold_enrollment_rows(session: Session, enrollment_ids: Sequence[int]) -> int:
    """A paused enrollment: its rows not yet taken over by a sender wait, held, until resumed."""
    return _set_state(
        session, Delivery.enrollment_id.in_(enrollment_ids), QUEUED_DELIVERY_STATES, DeliveryState.HELD
    )


def cancel_enrollment_rows(session: Session, enrollment_ids: Sequence[int]) -> int:
    """Cancel the open rows of these enrollments (lessons and their account mail)."""
    if not enrollment_ids:
        return 0
    return _set_state(
        session, Delivery.enrollment_id.in_(enrollment_ids), OPEN_DELIVERY_STATES, DeliveryState.CANCELLED
    )


def cancel_subscriber_rows(session: Session, subscriber_ids: Sequence[int]) -> int:
    """Cancel every open row of these subscribers, from any course or campaign."""
    if not subscriber_ids:
        return 0
    return _set_state(
        session, subscriber_rows(Delivery, lambda column: column.in_(subscriber_ids)), OPEN_DELIVERY_STATES, DeliveryState.CANCELLED
    )


def _cancelling(where: Callable[[Any], ColumnElement[bool]]) -> Update:
    """The UPDATE that cancel_*_rows runs, not executed, for a statement that makes it one part of
    itself (run_with_cancelling). `where` gets the deliveries table's columns (Core, no ORM
    attributes: the statement stays a plain one, with none of the ORM's bookkeeping per execution)
    and says which rows; only open ones are cancelled. It RETURNs each cancelled row's id."""
    columns = Delivery.__table__.c
    return (
        update(Delivery.__table__)
        .where(where(columns), columns.state.in_([str(state) for state in OPEN_DELIVERY_STATES]))
        .values(state=DeliveryState.CANCELLED.value, lease_token=None, lease_expires_at=None)
        .returning(columns.id)
    )


Cancelling = Callable[[Callable[[Any], ColumnElement[bool]]], Update]
_STATEMENTS_WITH_CANCELLING: dict[Hashable, Executable] = {}


def run_with_cancelling(
    connection: Connection, key: Hashable, build: Callable[[Cancelling], Executable], parameters: dict[str, Any]
) -> Row[Any]:
    """Run, as one statement, a caller's change that also cancels open delivery rows (PostgreSQL:
    the cancel is a data-modifying CTE of it), and return its one row. `build` gets the ledger's
    cancelling UPDATE (see _cancelling) and returns the whole statement; it is built once per `key`
    and kept. The ledger runs it, so every statement that writes deliveries is executed here:
    audience.enrollment.unsubscribe_in_one (one round trip for the one-click unsubscribe)."""
    statement = _STATEMENTS_WITH_CANCELLING.get(key)
    if statement is None:
        statement = _STATEMENTS_WITH_CANCELLING[key] = build(_cancelling)
    return connection.execute(statement, parameters).one()


def suppress(session: Session, subscriber_ids: Sequence[int], *, now: datetime) -> None:
    """A permanent failure: the address gets nothing more, from any course or campaign."""
    newly = list(session.scalars(
        update(Subscriber)
        .where(Subscriber.id.in_(subscriber_ids), Subscriber.status != SubscriberStatus.BOUNCED)
        .values(status=SubscriberStatus.BOUNCED, unsubscribed_at=now)
        .returning(Subscriber.id)
        .execution_options(synchronize_session=False)
    ))  # fmt: skip
    # The subscriber's timeline records it in this same transaction (course.audience.events is the
    # record's writer everywhere else; the ledger sits below it and writes this one kind itself).
    if newly:
        session.execute(
            insert(SubscriberEvent),
            [dict(subscriber_id=subscriber_id, kind=SubscriberEventKind.BOUNCED.value, occurred_at=now) for subscriber_id in newly],
        )
        counters.add_one(session, counters.EVENTS, SubscriberEventKind.BOUNCED.value, now, len(newly))
    cancel_subscriber_rows(session, subscriber_ids)


def anonymise_subscriber_rows(session: Session, subscriber_ids: Sequence[int], *, address: str) -> int:
    """An erased subscriber's rows stay (counts and funnels stay right) without personal data:
    open ones are cancelled, and the SMTP answer (which may quote the address) and any test address
    go; so does `address` wherever a test send or invitation was addressed to it."""
    cancel_subscriber_rows(session, subscriber_ids)
    changed = session.execute(
        update(Delivery)
        .where(subscriber_rows(Delivery, lambda column: column.in_(subscriber_ids)))
        .values(last_error=None, test_address=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    changed += session.execute(
        update(Delivery)
        .where(func.lower(Delivery.test_address) == address.lower())
        .values(test_address=None, last_error=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    return int(changed or 0)


# --- The campaign lifecycle's ---------------------------------------------------------------------


def add_campaign_test(
    session: Session, *, campaign_id: int, subscriber_id: int, address: str, now: datetime
) -> Delivery:
    """Queue a test send of a campaign, due now in the urgent class: composed as `subscriber_id`
    gets it, sent to `address`. It has no campaign_id, so it is in no count of the campaign. The
    campaign's content as it is now is copied beside the row (campaign_test_sends): the test shows
    what was asked for, whatever is saved before it goes out."""
    row = _add_urgent(
        session, now=now, subscriber_id=subscriber_id, kind=DeliveryKind.CAMPAIGN_TEST, test_campaign_id=campaign_id, test_address=address
    )
    content = (CampaignTestSend.name, CampaignTestSend.subject, CampaignTestSend.preheader,
               CampaignTestSend.body_markdown, CampaignTestSend.sender_name, CampaignTestSend.sender_email)
    session.execute(
        insert(CampaignTestSend).from_select(
            [CampaignTestSend.delivery_id, *content],
            select(
                literal(row.id, BigInteger), Campaign.name, Campaign.subject, func.coalesce(Campaign.preheader, ""),
                Campaign.body_markdown, Campaign.sender_name, Campaign.sender_email,
            ).where(Campaign.id == campaign_id),
        )
    )
    return row


def fan_out_campaign_rows(
    session: Session,
    campaign_id: int,
    recipients: Select[Any],
    *,
    due_at: datetime | ColumnElement[Any],
    now: datetime,
    analyze_after_rows: int,
) -> int:
    """One pending campaign row per subscriber id that `recipients` (a SELECT of one column of
    subscriber ids) yields, due at `due_at`, in one INSERT … SELECT. `due_at` is one moment, or an
    expression over the recipients' columns (a campaign sent at a local time in each subscriber's
    own zone: a CASE on subscribers.timezone). ON CONFLICT DO NOTHING on
    (subscriber, campaign) makes a repeated or concurrent fan-out harmless. Writing
    `analyze_after_rows` rows or more refreshes the planner statistics. Returns how many rows were
    written."""
    columns, rows = _rows_with_constants(
        recipients,
        ["subscriber_id"],
        kind=literal(DeliveryKind.CAMPAIGN.value, String),
        campaign_id=literal(campaign_id, Integer),
        priority=literal(int(DeliveryPriority.BULK), SmallInteger),
        due_at=literal(due_at, UTCDateTime()) if isinstance(due_at, datetime) else due_at,
        state=literal(DeliveryState.PENDING.value, String),
        attempts=literal(0, Integer),
        created_at=literal(now, UTCDateTime()),
    )
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        dialect_insert(Delivery)
        .from_select(columns, rows)
        .on_conflict_do_nothing(
            index_elements=["subscriber_id", "campaign_id"], index_where=Delivery.campaign_id.is_not(None)
        )
        .execution_options(preserve_rowcount=True)  # an INSERT's rowcount is dropped otherwise
    )
    written = session.execute(statement).rowcount
    if written >= analyze_after_rows:
        # The planner's statistics still describe the ledger before these rows: with them the
        # dispatcher's claim read and sorted every open row (0.7 s a claim at 1M) instead of walking
        # ix_deliveries_due. Autovacuum would catch up only later, or never where it is off.
        session.execute(text("ANALYZE deliveries"))
    return written


def hold_campaign_rows(session: Session, campaign_id: int) -> int:
    """A paused campaign: its rows not yet taken over by a sender (pending, or leased to a send task
    that has not started them) wait, held. Holding drops the lease token, so a send task that still
    carries these ids takes none of them over: the pause reaches rows already handed to a worker."""
    return _set_state(session, Delivery.campaign_id == campaign_id, QUEUED_DELIVERY_STATES, DeliveryState.HELD)


def release_campaign_rows(session: Session, campaign_id: int) -> int:
    """A resumed campaign: each held row is pending again, once (sent rows are never touched)."""
    return _set_state(session, Delivery.campaign_id == campaign_id, (DeliveryState.HELD,), DeliveryState.PENDING)


def cancel_campaign_rows(session: Session, campaign_id: int) -> int:
    """Cancel a campaign's open rows; rows already handed to a worker are caught by the sender's
    check at send time."""
    return _set_state(session, Delivery.campaign_id == campaign_id, OPEN_DELIVERY_STATES, DeliveryState.CANCELLED)


# --- Content's and admin accounts' ----------------------------------------------------------------


def cancel_lesson_rows(session: Session, lesson_ids: Sequence[int]) -> int:
    """Cancel the open rows of lessons retired from their course's content."""
    if not lesson_ids:
        return 0
    return _set_state(session, Delivery.lesson_id.in_(lesson_ids), OPEN_DELIVERY_STATES, DeliveryState.CANCELLED)


def add_lesson_test(session: Session, *, lesson_id: int, subscriber_id: int | None, address: str, now: datetime) -> Delivery:
    """Queue an editor's "send me this lesson", due now in the urgent class: the lesson composed as
    `subscriber_id` gets it (None: a sample reader), sent to `address`. Its lesson_id is NULL (the
    lesson is in test_lesson_id), so it is in no count of the lesson and never takes the place of
    the reader's own row of it."""
    return _add_urgent(
        session, now=now, subscriber_id=subscriber_id, kind=DeliveryKind.LESSON_TEST, test_lesson_id=lesson_id, test_address=address
    )


def add_admin_invitation_mail(session: Session, *, invitation_id: int, address: str, now: datetime) -> Delivery:
    """Queue the mail of an admin invitation, due now in the urgent class, to `address`: it goes to
    no subscriber (subscriber_id is NULL) and carries the invitation's current sign-in link."""
    return _add_urgent(
        session, now=now, subscriber_id=None, kind=DeliveryKind.ADMIN_INVITATION, invitation_id=invitation_id, test_address=address
    )


def cancel_invitation_rows(session: Session, invitation_id: int) -> int:
    """Cancel an invitation's unsent mail (revoked, or replaced by a re-send); a row already handed
    to a worker is caught by the sender's check at send time (the link it would carry is dead)."""
    return _set_state(session, Delivery.invitation_id == invitation_id, OPEN_DELIVERY_STATES, DeliveryState.CANCELLED)


# --- The dispatcher's -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    token: str
    urgent_ids: list[int]
    bulk_ids: list[int]
    lease_expires_at: datetime

    @property
    def size(self) -> int:
        return len(self.urgent_ids) + len(self.bulk_ids)


def count_in_flight(session: Session, *, now: datetime) -> int:
    """Rows handed to send tasks whose lease still runs: the dispatcher's measure of back-pressure."""
    return session.scalar(
        select(func.count()).where(
            Delivery.state.in_(IN_FLIGHT_DELIVERY_STATES), Delivery.lease_expires_at >= now
        )
    ) or 0


def claim_due(
    session: Session, *, now: datetime, limit: int, lease: timedelta, urgent_only: bool = False
) -> Claim | None:
    """Lease up to `limit` due rows, most urgent first: pending rows whose time has come, and rows
    whose lease expired because the worker holding them died. `urgent_only` claims only rows of
    the urgent priority class (confirmations), which never wait behind a full pipeline of bulk mail."""
    token = uuid.uuid4().hex
    lease_expires_at = now + lease
    due = (
        select(Delivery.id)
        .where(
            Delivery.state.in_(CLAIMABLE_DELIVERY_STATES),
            Delivery.due_at <= now,
            or_(Delivery.state == DeliveryState.PENDING, Delivery.lease_expires_at < now),
        )
        .order_by(Delivery.priority, Delivery.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if urgent_only:
        due = due.where(DeliveryPriority.is_urgent(Delivery.priority))
    claimed = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(state=DeliveryState.LEASED, lease_token=token, lease_expires_at=lease_expires_at)
        .returning(Delivery.id, Delivery.priority)
        .execution_options(synchronize_session=False)
    ).all()
    if not claimed:
        return None
    return Claim(
        token=token,
        urgent_ids=sorted(i for i, priority in claimed if DeliveryPriority.is_urgent(priority)),
        bulk_ids=sorted(i for i, priority in claimed if not DeliveryPriority.is_urgent(priority)),
        lease_expires_at=lease_expires_at,
    )


def _no_journal(delivery_ids: Sequence[int]) -> set[int]:
    return set()


def fail_exhausted_leases(
    session: Session,
    *,
    now: datetime,
    max_attempts: int,
    accepted: Callable[[Sequence[int]], set[int]] = _no_journal,
    message_ids: MessageIds | None = None,
) -> int:
    """Rows whose worker died on every one of max_attempts tries are given up on rather than
    reclaimed again: a message that crashes its worker must not crash-loop the fleet. Those that
    `accepted` (the send journal) says the relay took are settled as sent instead: a worker that
    died after the 250, every time, still sent the message. Returns how many rows failed."""
    exhausted = list(
        session.scalars(
            select(Delivery.id)
            .where(
                Delivery.state.in_(IN_FLIGHT_DELIVERY_STATES),
                Delivery.lease_expires_at < now,
                Delivery.attempts >= max_attempts,
            )
            .with_for_update(skip_locked=True)
        )
    )
    if not exhausted:
        return 0
    sent = accepted(exhausted) & set(exhausted)
    if sent:
        assert message_ids is not None, "settling rows as sent needs their Message-IDs"
        _mark_sent(session, sorted(sent), now=now, message_ids=message_ids)
    failed = [delivery_id for delivery_id in exhausted if delivery_id not in sent]
    if failed:
        given_up = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(failed))
            .values(state=DeliveryState.FAILED, last_error="lease expired on every attempt (worker lost)")
            .execution_options(synchronize_session=False)
        ).rowcount
        counters.add_one(session, counters.DELIVERIES, DeliveryState.FAILED.value, now, int(given_up or 0))
    return len(failed)


# --- The sender's ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryJob:
    """One email to send, as read when the sender takes its row over."""

    delivery_id: int
    kind: str
    template: str | None
    attempts: int
    subscriber_id: int | None  # None (and so email, name, status) for an admin invitation
    email: str | None
    name: str | None
    subscriber_status: str | None
    enrollment_id: int | None
    enrollment_status: str | None
    course_id: int | None
    lesson_id: int | None
    campaign_id: int | None
    due_at: datetime | None = None  # when this attempt fell due (send latency is measured from it)
    first_attempt_at: datetime | None = None  # when the first attempt was taken over (retry window)
    test_campaign_id: int | None = None  # a test send: the campaign it shows
    test_address: str | None = None  # and where it goes instead of `email` (an invitation: its only address)
    invitation_id: int | None = None  # an admin invitation's mail: which invitation
    test_lesson_id: int | None = None  # a lesson test: the lesson it shows (sent to test_address)
    # The send journal's epoch when the row's previous attempt was taken over, if that attempt's
    # outcome was never recorded (a lost worker, a database away past the lease); else None.
    journal_epoch: str | None = None


@dataclass(frozen=True)
class CourseHeader:
    course_id: int
    slug: str
    title: str
    sender_name: str
    sender_email: str
    language: str = "en"  # of the email frame around the lesson (course.i18n)
    provider: str | None = None  # the mail provider its lessons take first (course.delivery.routing)


@dataclass(frozen=True)
class LessonContent:
    lesson_id: int
    course: CourseHeader
    position: int
    lesson_count: int
    title: str
    body: dict[str, Any]
    reading_minutes: int
    retired: bool


@dataclass(frozen=True)
class CampaignContent:
    campaign_id: int
    name: str
    subject: str
    body_markdown: str
    sender_name: str
    sender_email: str
    cancelled: bool
    preheader: str = ""  # the line inboxes show after the subject
    # The course its audience is made of, read only when its text names a course merge tag.
    course_id: int | None = None
    course_title: str = ""
    provider: str | None = None  # the mail provider it takes first (course.delivery.routing)


@dataclass(frozen=True)
class InvitationContent:
    """An admin invitation as its mail needs it: the link names id and nonce; a dead one is not sent."""

    invitation_id: int
    email: str
    role: str
    link_nonce: str
    expires_at: datetime
    live: bool  # neither accepted nor revoked


@dataclass
class Batch:
    """A send task's rows and the content they refer to, each piece of content read once."""

    jobs: list[DeliveryJob]
    courses: dict[int, CourseHeader] = field(default_factory=dict)
    lessons: dict[int, LessonContent] = field(default_factory=dict)
    campaigns: dict[int, CampaignContent] = field(default_factory=dict)
    # Test sends by delivery id: the campaign as it was when each test was asked for.
    campaign_tests: dict[int, CampaignContent] = field(default_factory=dict)
    # Confirmation mails to a subscriber not yet confirmed, by delivery id: the name typed with the
    # signup each confirms (the subscriber's row takes it only when the link is followed).
    signup_names: dict[int, str] = field(default_factory=dict)
    invitations: dict[int, InvitationContent] = field(default_factory=dict)
    # (course id, subscriber id) -> the position of the last lesson sent to them in that course,
    # for the campaigns whose text names `lesson_number`.
    lesson_numbers: dict[tuple[int, int], int] = field(default_factory=dict)

    def lesson_number(self, campaign: CampaignContent, subscriber_id: int) -> int | None:
        return self.lesson_numbers.get((campaign.course_id, subscriber_id)) if campaign.course_id else None


def take_over(
    session: Session, delivery_ids: Sequence[int], *, token: str, now: datetime, lease: timedelta, journal_epoch: str = ""
) -> Batch:
    """Move this task's leased rows to `sending` and read what is needed to send them. Rows whose
    token no longer matches (reclaimed, cancelled, or already taken by a duplicate task) are
    simply not returned. Each row keeps `journal_epoch` (the send journal's, "" for none) for the
    next take-over, and each job carries the epoch its row had (DeliveryJob.journal_epoch).

    On PostgreSQL the UPDATE is a data-modifying CTE joined to subscriber and enrollment in the
    same statement, and the ids travel as one array parameter: one round trip and no 500-element
    IN list to render and parse. The previous epoch is a sub-select in its RETURNING, which reads
    the rows as they were before the statement. SQLite cannot nest an UPDATE in WITH: there it is
    a read of the previous epochs, the UPDATE, then the read."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    ids = list(delivery_ids)
    mine = and_(_ids_among(session, Delivery.id, ids), Delivery.state == DeliveryState.LEASED, Delivery.lease_token == token)
    take = (
        update(Delivery)
        .where(mine)
        .values(
            state=DeliveryState.SENDING,
            attempts=Delivery.attempts + 1,
            lease_expires_at=now + lease,
            first_attempt_at=func.coalesce(Delivery.first_attempt_at, bindparam("first_attempt", now, type_=UTCDateTime())),
            journal_epoch=journal_epoch or None,
        )
    )
    if postgresql:
        before = aliased(Delivery)
        previous_epoch = select(before.journal_epoch).where(before.id == Delivery.id).scalar_subquery().label("previous_epoch")
        taken_rows = take.returning(*_JOB_COLUMNS, previous_epoch).cte("taken")
        rows = session.execute(_jobs_of(taken_rows, taken_rows.c.previous_epoch)).all()
        return _batch_of(session, rows)
    previous = {row_id: epoch for row_id, epoch in session.execute(select(Delivery.id, Delivery.journal_epoch).where(mine))}
    taken = session.scalars(take.returning(Delivery.id).execution_options(synchronize_session=False)).all()
    rows = session.execute(_jobs_of(Delivery.__table__).where(Delivery.id.in_(taken))).all() if taken else []
    return _batch_of(session, [(*row[:-1], previous.get(row[0])) for row in rows])


# The delivery columns a DeliveryJob needs, read from the row as take_over leaves it.
_JOB_COLUMNS = (
    Delivery.id,
    Delivery.kind,
    Delivery.template,
    Delivery.attempts,
    Delivery.subscriber_id,
    Delivery.enrollment_id,
    Delivery.lesson_id,
    Delivery.campaign_id,
    Delivery.due_at,
    Delivery.first_attempt_at,
    Delivery.test_campaign_id,
    Delivery.test_address,
    Delivery.invitation_id,
    Delivery.test_lesson_id,
)


def _jobs_of(deliveries: Any, journal_epoch: Any = None) -> Select[Any]:
    """DeliveryJob rows (in DeliveryJob's field order, by id) for `deliveries`: the deliveries
    table itself or the CTE of the rows just taken over, joined to recipient and enrollment.
    `journal_epoch`: the column holding each row's previous journal epoch (default: the row's own)."""
    c = deliveries.c
    return (
        select(
            c.id,
            c.kind,
            c.template,
            c.attempts,
            c.subscriber_id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.status,
            c.enrollment_id,
            Enrollment.status,
            Enrollment.course_id,
            c.lesson_id,
            c.campaign_id,
            c.due_at,
            c.first_attempt_at,
            c.test_campaign_id,
            c.test_address,
            c.invitation_id,
            c.test_lesson_id,
            c.journal_epoch if journal_epoch is None else journal_epoch,  # last: take_over's SQLite path replaces it
        )
        # Outer: an admin invitation's row has no subscriber.
        .outerjoin_from(deliveries, Subscriber, Subscriber.id == c.subscriber_id)
        .outerjoin(Enrollment, Enrollment.id == c.enrollment_id)
        .order_by(c.id)
    )


def _batch_of(session: Session, rows: Sequence[Any]) -> Batch:
    """DeliveryJob rows plus the courses, lessons and campaigns they name, each read once."""
    if not rows:
        return Batch(jobs=[])
    batch = Batch(jobs=[DeliveryJob(*row) for row in rows])
    course_ids = {job.course_id for job in batch.jobs if job.course_id is not None}
    test_lesson_ids = {job.test_lesson_id for job in batch.jobs if job.test_lesson_id is not None}
    if test_lesson_ids:  # a lesson test has no enrollment: its course comes from its lesson
        course_ids |= set(session.scalars(select(Lesson.course_id).where(Lesson.id.in_(test_lesson_ids))))
    if course_ids:
        batch.courses = {
            course.id: CourseHeader(
                course.id, course.slug, course.title, course.sender_name, course.sender_email, course.language,
                course.provider,
            )
            for course in session.scalars(select(Course).where(Course.id.in_(course_ids)))
        }
    lesson_ids = {job.lesson_id for job in batch.jobs if job.lesson_id is not None} | test_lesson_ids
    if lesson_ids:
        batch.lessons = _lesson_contents(session, lesson_ids, batch.courses)
    campaign_ids = {job.campaign_id or job.test_campaign_id for job in batch.jobs} - {None}
    if campaign_ids:
        readers: dict[int, set[int]] = {}
        for job in batch.jobs:
            if job.campaign_id or job.test_campaign_id:
                readers.setdefault(job.campaign_id or job.test_campaign_id, set()).add(job.subscriber_id)  # type: ignore[arg-type]
        _read_campaigns(session, batch, readers)
    invitation_ids = {job.invitation_id for job in batch.jobs} - {None}
    if invitation_ids:
        batch.invitations = {
            i.id: InvitationContent(
                i.id, i.email, i.role, i.link_nonce, i.expires_at, i.accepted_at is None and i.revoked_at is None
            )
            for i in session.scalars(select(AdminInvitation).where(AdminInvitation.id.in_(invitation_ids)))
        }
    unconfirmed = [
        job.delivery_id for job in batch.jobs
        if job.kind == DeliveryKind.TRANSACTIONAL and job.subscriber_status != SubscriberStatus.ACTIVE
    ]
    if unconfirmed:
        batch.signup_names = dict(
            session.execute(
                select(SignupRequest.confirm_delivery_id, SignupRequest.name).where(
                    SignupRequest.confirm_delivery_id.in_(unconfirmed), SignupRequest.name != ""
                )
            ).all()
        )
    test_ids = [job.delivery_id for job in batch.jobs if job.test_campaign_id is not None]
    if test_ids:
        batch.campaign_tests = {
            delivery_id: CampaignContent(
                campaign_id, snapshot.name, snapshot.subject, snapshot.body_markdown,
                snapshot.sender_name, snapshot.sender_email, False, snapshot.preheader,
            )
            for snapshot, delivery_id, campaign_id in session.execute(
                select(CampaignTestSend, Delivery.id, Delivery.test_campaign_id)
                .join(Delivery, Delivery.id == CampaignTestSend.delivery_id)
                .where(CampaignTestSend.delivery_id.in_(test_ids))
            )
        }
    return batch


def _lesson_contents(
    session: Session, lesson_ids: set[int], courses: dict[int, CourseHeader]
) -> dict[int, LessonContent]:
    live = aliased(Lesson)
    lesson_count = (
        select(func.count(live.id))
        .where(live.course_id == Lesson.course_id, live.retired_at.is_(None))
        .scalar_subquery()
    )
    rows = session.execute(select(Lesson, lesson_count).where(Lesson.id.in_(lesson_ids))).all()
    return {
        lesson.id: LessonContent(
            lesson_id=lesson.id,
            course=courses[lesson.course_id],
            position=lesson.position,
            lesson_count=count,
            title=lesson.title,
            body=lesson.body,
            reading_minutes=lesson.reading_minutes,
            retired=lesson.retired_at is not None,
        )
        for lesson, count in rows
    }


def _read_campaigns(session: Session, batch: Batch, readers: dict[int, set[int]]) -> None:
    """Each campaign's content, once; course merge values for the `readers` of each."""
    batch.campaigns = {
        c.id: CampaignContent(
            c.id,
            c.name,
            c.subject,
            c.body_markdown,
            c.sender_name,
            c.sender_email,
            c.status == CampaignStatus.CANCELLED,
            c.preheader or "",
            provider=c.provider,
        )
        for c in session.scalars(select(Campaign).where(Campaign.id.in_(list(readers))))
    }
    _read_course_merge_values(session, batch, readers)


def _names_course_tag(content: CampaignContent) -> tuple[bool, bool]:
    """Whether a campaign's text may name course_title / lesson_number (a cheap test on the words:
    a false yes costs one read, never a wrong value)."""
    text = content.subject + content.preheader + content.body_markdown
    return "course_title" in text, "lesson_number" in text


def _read_course_merge_values(session: Session, batch: Batch, readers: dict[int, set[int]]) -> None:
    """For campaigns whose text names a course merge tag: the audience's course title, and each
    recipient's last lesson sent in it. Nothing is read for a campaign that names neither."""
    for campaign_id, content in list(batch.campaigns.items()):
        wants_title, wants_lesson = _names_course_tag(content)
        if not (wants_title or wants_lesson):
            continue
        slug = (session.get(Campaign, campaign_id).audience or {}).get("course")  # type: ignore[union-attr]
        read = course_merge_values(session, slug, readers.get(campaign_id, set()) if wants_lesson else ())
        if read is not None:
            course, lesson_numbers = read
            batch.campaigns[campaign_id] = replace(content, course_id=course.id, course_title=course.title)
            batch.lesson_numbers.update({(course.id, who): number for who, number in lesson_numbers.items()})


@dataclass
class Outcome:
    """What happened to each row of a batch, recorded in a handful of statements."""

    sent: list[int] = field(default_factory=list)
    retry: list[tuple[int, datetime, str]] = field(default_factory=list)  # id, next due, reason
    failed: list[tuple[int, str]] = field(default_factory=list)
    bounced: list[tuple[int, int, str]] = field(default_factory=list)  # id, subscriber id, reason
    cancelled: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # not attempted: lease about to run out
    # The mail provider sent, retried, failed and bounced rows went through; None: they went through
    # none (rows deferred because every provider of their route was paused or at its limit), and
    # each row keeps the provider it had.
    provider: str | None = None

    def add(self, kind: Settled, delivery_id: int) -> None:
        getattr(self, kind.value).append(delivery_id)


class Settled(StrEnum):
    """The outcomes that are a row id and nothing more, each the name of its list in Outcome:
    `outcome.add(Settled.SENT, 12)`, so a misspelt kind fails at import, not in the send loop."""

    SENT = "sent"
    CANCELLED = "cancelled"
    HELD = "held"
    RELEASED = "released"


if not {kind.value for kind in Settled} <= {f.name for f in fields(Outcome)}:
    raise TypeError("every Settled kind must name a list of Outcome")


def record(session: Session, outcome: Outcome, *, token: str, now: datetime, message_ids: MessageIds) -> None:
    """Write a batch's results. Every statement is guarded by the lease token, so a task that lost
    its lease cannot overwrite what the new holder does."""
    mine = and_(Delivery.lease_token == token, Delivery.state == DeliveryState.SENDING)
    through: dict[str, Any] = {"provider": outcome.provider} if outcome.provider is not None else {}
    if outcome.sent:
        _mark_sent(session, outcome.sent, mine, now=now, message_ids=message_ids, **through)
    _update_each(
        session,
        token,
        [{"row_id": i, "due": due, "error": reason[:1000]} for i, due, reason in outcome.retry],
        state=DeliveryState.PENDING,
        due_at=bindparam("due"),
        last_error=bindparam("error"),
        journal_epoch=None,
        **through,
    )
    settled: dict[tuple[str, str, Any], int] = {}
    settled[(counters.DELIVERIES, DeliveryState.FAILED.value, counters.utc_day(now))] = _update_each(
        session,
        token,
        [{"row_id": i, "error": reason[:1000]} for i, reason in outcome.failed],
        state=DeliveryState.FAILED,
        last_error=bindparam("error"),
        **through,
    )
    if outcome.bounced:
        settled[(counters.DELIVERIES, DeliveryState.BOUNCED.value, counters.utc_day(now))] = _update_each(
            session,
            token,
            [{"row_id": i, "error": reason[:1000]} for i, _, reason in outcome.bounced],
            state=DeliveryState.BOUNCED,
            last_error=bindparam("error"),
            **through,
        )
    counters.add(session, settled)
    if outcome.bounced:
        suppress(session, sorted({s for _, s, _ in outcome.bounced}), now=now)
    for ids, state in (
        (outcome.cancelled, DeliveryState.CANCELLED),
        (outcome.held, DeliveryState.HELD),
        (outcome.released, DeliveryState.PENDING),
    ):
        if ids:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), mine)
                .values(state=state, lease_token=None, lease_expires_at=None, journal_epoch=None)
                .execution_options(synchronize_session=False)
            )


def _mark_sent(
    session: Session, ids: Sequence[int], *guards: ColumnElement[bool], now: datetime, message_ids: MessageIds, **values: Any
) -> None:
    """Rows the relay accepted: sent, with their Message-ID, out of any lease; an enrollment with
    nothing left to send is completed. The day's sent figure and each lesson's grow by the rows
    this changed (course.counters): on PostgreSQL in the same statement (the UPDATE a CTE whose
    RETURNING the counters' upsert groups), so counting costs the send path no round trip;
    elsewhere read back from the UPDATE and added in a second statement."""
    marked = (
        update(Delivery)
        .where(_ids_among(session, Delivery.id, ids), *guards)
        .values(
            state=DeliveryState.SENT,
            sent_at=now,
            last_error=None,
            lease_token=None,
            lease_expires_at=None,
            message_id=_message_id_sql(session, message_ids, ids),
            **values,
        )
        .returning(Delivery.lesson_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        sent = marked.cte("sent")
        day = bindparam("counter_day", counters.utc_day(now), type_=Date)
        shard = bindparam("counter_shard", counters.shard_of_this_thread(), type_=SmallInteger)
        rows = union_all(
            select(literal(counters.DELIVERIES), literal(DeliveryState.SENT.value), day, shard, func.count())
            .select_from(sent)
            .having(func.count() > 0),
            select(literal(counters.LESSON_SENT), cast(sent.c.lesson_id, String), day, shard, func.count())
            .where(sent.c.lesson_id.is_not(None))
            .group_by(sent.c.lesson_id),
        )
        # Core, not the ORM's bulk-insert path: nothing here is an ORM object to synchronise, and
        # that path's bookkeeping per execution was most of recording a group.
        session.connection().execute(counters.upsert_from(select(rows.subquery())))
    else:
        lessons = session.execute(marked.execution_options(synchronize_session=False)).scalars().all()
        counted = counters.tally(counters.DELIVERIES, [DeliveryState.SENT.value] * len(lessons), now)
        counted.update(counters.tally(counters.LESSON_SENT, [lesson for lesson in lessons if lesson is not None], now))
        counters.add(session, counted)
    _complete_finished_enrollments(session, ids, now=now)


def _update_each(session: Session, token: str, params: list[dict[str, Any]], **values: Any) -> int:
    """One guarded UPDATE per parameter set; returns how many rows it changed (a row whose lease
    was lost is not)."""
    if not params:
        return 0
    # Through the Core connection: Session.execute with a list of parameter sets would turn this into
    # an ORM "bulk UPDATE by primary key", which refuses parameter sets without an "id" key.
    return int(session.connection().execute(
        update(Delivery)
        .where(
            Delivery.id == bindparam("row_id"),
            Delivery.lease_token == token,
            Delivery.state == DeliveryState.SENDING,
        )
        .values(lease_token=None, lease_expires_at=None, **values),
        params,
    ).rowcount)


def _complete_finished_enrollments(session: Session, sent_ids: Sequence[int], *, now: datetime) -> None:
    """An active enrollment with no lesson left to send is completed."""
    enrollment_ids = select(Delivery.enrollment_id).where(
        _ids_among(session, Delivery.id, sent_ids), Delivery.lesson_id.is_not(None)
    )
    session.execute(
        update(Enrollment)
        .where(
            Enrollment.id.in_(enrollment_ids),
            Enrollment.status == EnrollmentStatus.ACTIVE,
            ~exists().where(
                Delivery.enrollment_id == Enrollment.id,
                Delivery.lesson_id.is_not(None),
                Delivery.state.in_(UNSETTLED_DELIVERY_STATES),
            ),
        )
        .values(status=EnrollmentStatus.COMPLETED, completed_at=now)
        .execution_options(synchronize_session=False)
    )


# The one Message-ID format: stable per delivery, so a resend after a lost worker carries the same
# Message-ID and the receiving side can tell it is the same message; and opaque, so it reveals
# neither how many deliveries there are nor their order (a row id would: a reader comparing two
# lessons' Message-IDs would learn the list's size and growth). The token is the delivery id
# encrypted with AES under a key derived from the secret: one block, a keyed permutation of ids,
# which the bounce side decrypts back (delivery_of_message_id) instead of searching for it.


@dataclass(frozen=True)
class MessageIds:
    domain: str
    key: bytes  # 16 bytes: message_ids_from_secret

    def for_delivery(self, delivery_id: int) -> str:
        return message_id_for(delivery_id, self)

    def delivery_of(self, message_id: str) -> int | None:
        return delivery_of_message_id(message_id, self)


def message_ids_from_secret(domain: str, secret: str) -> MessageIds:
    import hashlib
    import hmac

    return MessageIds(domain, hmac.new(secret.encode(), b"course message-id v1", hashlib.sha256).digest()[:16])


@functools.lru_cache(maxsize=8)
def _cipher(key: bytes):  # type: ignore[no-untyped-def]
    """The AES cipher of a key, built once (its key schedule is most of encrypting one block)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - one block, a permutation of ids, by design


_encryptors = threading.local()


def _encrypt(key: bytes, blocks: bytes) -> bytes:
    """`blocks` (whole 16-byte blocks) encrypted under `key` by this thread's encryptor of it: ECB
    takes each block alone and gives it back at once, so one context serves every call, and making
    a context per Message-ID cost more than the encryption (a context is not shared by threads)."""
    held: dict[bytes, Any] | None = getattr(_encryptors, "by_key", None)
    if held is None:
        held = _encryptors.by_key = {}
    encryptor = held.get(key)
    if encryptor is None:
        encryptor = held[key] = _cipher(key).encryptor()
    return encryptor.update(blocks)


# base32 (RFC 4648, lower case) of one 16-byte block, 26 characters: the block's 128 bits and two
# zero bits, ten bits (two characters) at a time. base64.b32encode is pure Python here and cost
# twice this; test_message_ids holds the two to the same text.
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_PAIRS = [first + second for first in _BASE32 for second in _BASE32]
_TEN_BIT_SHIFTS = tuple(range(120, -1, -10))


def _base32_block(block: bytes) -> str:
    bits = int.from_bytes(block, "big") << 2
    return "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in _TEN_BIT_SHIFTS])


def _token(block: bytes, domain: str) -> str:
    return f"<{_base32_block(block)}@{domain}>"


# A send computes each Message-ID twice: composing the mail, then recording the row as sent a group
# later. The second is a look-up here (a group is at most a few hundred rows per thread).
@functools.lru_cache(maxsize=8192)
def message_id_for(delivery_id: int, ids: MessageIds) -> str:
    """The Message-ID of a delivery: 26 base32 characters, then the domain."""
    return _token(_encrypt(ids.key, delivery_id.to_bytes(16, "big")), ids.domain)


def message_ids_for(delivery_ids: Sequence[int], ids: MessageIds) -> list[str]:
    """message_id_for of each delivery (those composed lately read from its cache)."""
    return [message_id_for(delivery_id, ids) for delivery_id in delivery_ids]


def delivery_of_message_id(message_id: str, ids: MessageIds) -> int | None:
    """The delivery a Message-ID of ours names, or None: another domain, another shape, or a token
    that decrypts to no id (a forged one does, but for a chance of 2**-64)."""
    import base64
    import binascii

    token, at, domain = message_id.strip().strip("<>").partition("@")
    if not at or domain.lower() != ids.domain.lower() or len(token) != 26:
        return None
    try:
        block = base64.b32decode(token.upper() + "======")
    except (binascii.Error, ValueError):
        return None
    decryptor = _cipher(ids.key).decryptor()
    value = int.from_bytes(decryptor.update(block) + decryptor.finalize(), "big")
    return value if 0 < value < 2**63 else None


def _message_id_sql(session: Session, ids: MessageIds, delivery_ids: Sequence[int]) -> ColumnElement[str]:
    """Each row's Message-ID, for recording a whole batch in one UPDATE. On PostgreSQL two array
    parameters, the row's Message-ID found by its id's place among the ids: the statement's text is
    the same for every batch (a CASE of a few hundred WHENs was rendered and parsed again for each
    one: a sixth of a send worker's samples). Elsewhere a CASE."""
    values = message_ids_for(delivery_ids, ids)
    if session.get_bind().dialect.name == "postgresql":
        id_array = bindparam("message_id_rows", list(delivery_ids), type_=ARRAY(BigInteger))
        value_array = bindparam("message_id_values", values, type_=ARRAY(Text))
        return Grouping(value_array)[func.array_position(id_array, Delivery.id)]  # (…::TEXT[])[i]
    return case(dict(zip(delivery_ids, values, strict=True)), value=Delivery.id)


# --- Previews' reads ------------------------------------------------------------------------------


def read_batch(session: Session, delivery_ids: Sequence[int]) -> Batch:
    """What take_over would read for these rows, without touching them: for a caller that needs
    the email a delivery becomes without sending it (the benchmark sizes a real message this way)."""
    ids = list(delivery_ids)
    rows = session.execute(_jobs_of(Delivery.__table__).where(Delivery.id.in_(ids))).all() if ids else []
    return _batch_of(session, rows)


def course_merge_values(
    session: Session, slug: str | None, subscriber_ids: Iterable[int]
) -> tuple[Course, dict[int, int]] | None:
    """The course named `slug` and, for each of these subscribers, the position of the last lesson
    of it sent to them (absent: none yet). None: no such course. One read each."""
    course = session.scalars(select(Course).where(Course.slug == slug)).first() if slug else None
    if course is None:
        return None
    readers = list(subscriber_ids)
    if not readers:
        return course, {}
    last_sent = (
        select(Delivery.subscriber_id, func.max(Lesson.position))
        .join(Lesson, Lesson.id == Delivery.lesson_id)
        .where(
            Lesson.course_id == course.id,
            Delivery.kind == DeliveryKind.LESSON,
            Delivery.state == DeliveryState.SENT,
            Delivery.subscriber_id.in_(readers),
        )
        .group_by(Delivery.subscriber_id)
    )
    return course, {who: position for who, position in session.execute(last_sent)}


# --- Operators' and the bench's -------------------------------------------------------------------


def requeue_failed(session: Session, *, now: datetime, since: datetime | None = None, campaign_id: int | None = None) -> int:
    """`course retry-failed`: put failed rows back to pending, due now, with a fresh retry window
    (attempts and first attempt cleared), keeping their last error for the record. `since` keeps
    rows whose last attempt fell due at or after it; `campaign_id` one campaign's rows. Rows of an
    address that bounced or unsubscribed since are requeued too: the sender cancels them at send time."""
    conditions = [Delivery.state == DeliveryState.FAILED]
    if since is not None:
        conditions.append(Delivery.due_at >= since)
    if campaign_id is not None:
        conditions.append(Delivery.campaign_id == campaign_id)
    return session.execute(
        update(Delivery)
        .where(*conditions)
        .values(state=DeliveryState.PENDING, due_at=now, attempts=0, first_attempt_at=None, lease_token=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount


def insert_lesson_rows(
    session: Session,
    lesson_id: int,
    enrollments: Select[Any],
    *,
    due_at: datetime,
    state: DeliveryState,
    now: datetime,
) -> int:
    """One row of `lesson_id` per enrollment that `enrollments` (a SELECT of enrollment id and
    subscriber id) yields, all due at `due_at`, in one INSERT … SELECT: how a whole cohort gets the
    same lesson at once (the benchmark's lesson day). A row inserted `sent` counts one attempt,
    sent at its due time. Returns how many rows were written."""
    sent = state == DeliveryState.SENT
    columns, rows = _rows_with_constants(
        enrollments,
        ["enrollment_id", "subscriber_id"],
        kind=literal(DeliveryKind.LESSON.value, String),
        lesson_id=literal(lesson_id, Integer),
        priority=literal(int(DeliveryPriority.BULK), SmallInteger),
        due_at=literal(due_at, UTCDateTime()),
        state=literal(state.value, String),
        attempts=literal(1 if sent else 0, Integer),
        sent_at=literal(due_at if sent else None, UTCDateTime()),
        created_at=literal(now, UTCDateTime()),
    )
    statement = insert(Delivery).from_select(columns, rows).execution_options(preserve_rowcount=True)
    written = int(session.execute(statement).rowcount)
    if sent:  # history the counters must know of, as if each row had been sent at its due time
        day = counters.utc_day(due_at)
        counters.add(session, {(counters.DELIVERIES, DeliveryState.SENT.value, day): written, (counters.LESSON_SENT, str(lesson_id), day): written})
    return written
