"""The database schema: subscribers, courses and their lessons, enrollments, campaigns, and the
delivery ledger. The ledger is the source of truth for every email: one row per message to send,
with its due time, state and attempts. Celery only executes what the ledger says is due.

Next to the delivery states live their groups (OPEN_…, QUEUED_…, IN_FLIGHT_…, CLAIMABLE_…,
UNSETTLED_…, FINISHED_…, SETTLED_DELIVERY_STATES) and the priority classes (DeliveryPriority), each
defined here once for every module; only course.ledger writes delivery rows."""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime, time, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    TypeDecorator,
    UniqueConstraint,
    and_,
    func,
    or_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"  # signed up, not yet confirmed (double opt-in)
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"  # from everything
    BOUNCED = "bounced"  # suppressed after a permanent SMTP failure or bounce (course/bounces)
    COMPLAINED = "complained"  # marked a mail as spam (an ARF complaint): suppressed, unsubscribed, never resubscribed
    ERASED = "erased"  # personal data erased on request: never resubscribed


# Addresses that get nothing, not even a confirmation someone else asked for on the form.
SUPPRESSED_SUBSCRIBER_STATUSES = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


class EnrollmentStatus(enum.StrEnum):
    PENDING = "pending"  # waits for the subscriber's confirmation
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    UNSUBSCRIBED = "unsubscribed"


class DeliveryKind(enum.StrEnum):
    LESSON = "lesson"
    CAMPAIGN = "campaign"
    TRANSACTIONAL = "transactional"  # confirmation and account mail, sent ahead of bulk
    CAMPAIGN_TEST = "campaign_test"  # an editor's test send: a campaign as one subscriber gets it, to another address
    ADMIN_INVITATION = "admin_invitation"  # an owner invited someone to the admin: no subscriber, urgent
    LESSON_TEST = "lesson_test"  # an editor's "send me this lesson": a lesson as one reader gets it, to another address


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waits for due_at
    HELD = "held"  # enrollment paused: not due until resumed
    LEASED = "leased"  # claimed by a dispatcher, handed to a send task
    SENDING = "sending"  # taken over by exactly one send task
    SENT = "sent"
    FAILED = "failed"  # gave up after transient errors
    BOUNCED = "bounced"  # permanent SMTP failure
    CANCELLED = "cancelled"  # unsubscribed, lesson retired, or campaign cancelled


# The delivery states grouped by what the code asks of a row, each group defined here once.
# A stop order (unsubscribe, bounce, cancelled campaign, retired lesson) cancels OPEN rows; a row
# already SENDING belongs to its worker, whose send-time check catches it.
OPEN_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.HELD, DeliveryState.LEASED)
# Not yet taken over by a sender: what pausing holds, and where "the next lesson" is found.
QUEUED_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.LEASED)
# Handed to a send task and not yet recorded: the dispatcher's back-pressure measure.
IN_FLIGHT_DELIVERY_STATES = (DeliveryState.LEASED, DeliveryState.SENDING)
# What the dispatcher scans: pending rows, and leased or sending rows whose lease may have run out.
CLAIMABLE_DELIVERY_STATES = (DeliveryState.PENDING, DeliveryState.LEASED, DeliveryState.SENDING)
# Anything that may still be sent: a campaign is done, an enrollment completed, once none is left.
UNSETTLED_DELIVERY_STATES = (*OPEN_DELIVERY_STATES, DeliveryState.SENDING)
# Through SMTP or given up on: scheduling never touches these rows again.
FINISHED_DELIVERY_STATES = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.BOUNCED)
# Nothing more will happen to the row.
SETTLED_DELIVERY_STATES = (*FINISHED_DELIVERY_STATES, DeliveryState.CANCELLED)


class DeliveryPriority(enum.IntEnum):
    """Priority classes of delivery rows (lower goes first). URGENT ones ride the priority queue
    and are claimed even when the pipeline is full, so a confirmation never waits behind a
    newsletter; everything else is BULK."""

    URGENT = 10  # confirmation and other account mail a person is waiting for
    BULK = 100  # lessons and campaigns

    @classmethod
    def is_urgent(cls, priority: Any) -> Any:
        """True for an urgent priority; on a column (Delivery.priority), the SQL condition."""
        return priority < int(cls.BULK)


def in_states_sql(states: tuple[DeliveryState, ...]) -> str:
    """A state group as SQL text, for partial index predicates."""
    return "state IN (" + ", ".join(f"'{state.value}'" for state in states) + ")"


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"  # fanned out into the ledger
    PAUSED = "paused"  # fanned out, its unsent rows held until resumed
    DONE = "done"
    CANCELLED = "cancelled"


class Subscriber(Base):
    __tablename__ = "subscribers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    status: Mapped[str] = mapped_column(String(20), default=SubscriberStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The reader's language (course.i18n's codes): the course's at signup, an import's `language`
    # column, the CLI's --language. NULL: not known.
    language: Mapped[str | None] = mapped_column(String(8))
    # Where the subscriber came from: form, api, import:<id>, admin, cli. NULL: before this was kept.
    source: Mapped[str | None] = mapped_column(String(40))

    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="subscriber")


# Addresses are unique whatever their case: Ann@Example.com and ann@example.com are one person.
Index("uq_subscribers_email_lower", func.lower(Subscriber.email), unique=True)
# The admin's search (course.audience.directory): case-insensitive substring and prefix matches
# (ILIKE '%ann%') served by trigram indexes on PostgreSQL (pg_trgm, migration 0015). SQLite ignores
# the PostgreSQL options and gets plain indexes, which its search (a scan) does not use.
Index("ix_subscribers_email_trgm", Subscriber.email, postgresql_using="gin", postgresql_ops={"email": "gin_trgm_ops"})
Index("ix_subscribers_name_trgm", Subscriber.name, postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"})
# The list's filters by signup date and by status, each read in the list's keyset order (id).
Index("ix_subscribers_created_at", Subscriber.created_at, Subscriber.id)
Index("ix_subscribers_status", Subscriber.status, Subscriber.id)
Index("ix_subscribers_language", Subscriber.language, Subscriber.id)


class SubscriberEventKind(enum.StrEnum):
    """What a subscriber's timeline records (course.audience.events writes them; course.ledger the
    bounces it suppresses). Deliveries are not events: the timeline reads them from the ledger."""

    SIGNED_UP = "signed_up"  # detail: course, source (form, cli, import…)
    CONFIRMED = "confirmed"  # detail: course
    ENROLLED = "enrolled"  # detail: course (an admin's or the CLI's enrolment)
    PREFERENCES_CHANGED = "preferences_changed"  # detail: what changed (time zone, send time)
    PAUSED = "paused"  # detail: course
    RESUMED = "resumed"  # detail: course
    UNSUBSCRIBED = "unsubscribed"  # detail: course (absent: everything), reason
    RESUBSCRIBED = "resubscribed"  # detail: reason (an admin's), or the unsubscribe page's undo
    BOUNCED = "bounced"  # a permanent SMTP failure or a hard bounce report suppressed the address
    SOFT_BOUNCED = "soft_bounced"  # detail: status, reason (a soft bounce counted toward the threshold)
    COMPLAINED = "complained"  # detail: status, reason (an ARF complaint: suppressed and unsubscribed)
    TAG_ADDED = "tag_added"  # detail: tag
    TAG_REMOVED = "tag_removed"  # detail: tag


class SubscriberEvent(Base):
    """The append-only record of what happened to a subscriber, written in the same transaction as
    the change it records. Rows are inserted and never updated; `actor` is the admin (their address,
    or "API token") who did it, None when it was the subscriber or the system."""

    __tablename__ = "subscriber_events"
    __table_args__ = (
        Index("ix_subscriber_events_subscriber", "subscriber_id", "occurred_at", "id"),
        Index("ix_subscriber_events_kind", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(320))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Counter(Base):
    """Figures kept up to date in the transaction that changes what they count (course.counters
    writes them): events of the subscriber record per kind and day, delivery rows settled per
    state and day, lesson rows sent per lesson and day. A figure is the sum of its shards: writers
    in different processes and threads add to different rows, so they do not queue on one row lock."""

    __tablename__ = "counters"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # events, deliveries, lesson_sent
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # an event kind, a state, a lesson id
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # UTC
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class SubscriberTag(Base):
    __tablename__ = "subscriber_tags"
    __table_args__ = (Index("ix_subscriber_tags_tag", "tag", "subscriber_id"),)

    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    days_between_lessons: Mapped[int] = mapped_column(Integer, default=1)
    send_time: Mapped[time] = mapped_column(Time, default=time(9, 0))
    weekday_mask: Mapped[int] = mapped_column(SmallInteger, default=0b1111111)  # bit 0 = Monday
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_email: Mapped[str] = mapped_column(String(320))
    target_words: Mapped[int] = mapped_column(Integer, default=300)
    # The language of the email and page frame around the publisher's words (course.i18n).
    language: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Where it comes from (0017): "files" (content/courses/<slug>.toml, `course import`; read-only in
    # the admin) or "admin" (published from the web admin; `course import` leaves it alone).
    origin: Mapped[str] = mapped_column(String(16), default="files", server_default="files")
    # An admin course made from a blog's feed (0017): polled by beat with a conditional GET (the
    # validators the last answer gave), each new entry appended as an article.
    feed_url: Mapped[str | None] = mapped_column(String(2000))
    feed_etag: Mapped[str | None] = mapped_column(String(300))
    feed_last_modified: Mapped[str | None] = mapped_column(String(100))
    feed_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The mail provider its lessons take first (0020); None: routed by From domain and fallback.
    provider: Mapped[str | None] = mapped_column(String(64))

    lessons: Mapped[list[Lesson]] = relationship(back_populates="course", order_by="Lesson.position")

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(day for day in range(7) if self.weekday_mask & (1 << day))


def weekday_mask(weekdays: frozenset[int]) -> int:
    """How Course.weekday_mask stores a set of weekdays (0 = Monday): bit n set for day n."""
    return sum(1 << day for day in weekdays)


class Lesson(Base):
    __tablename__ = "lessons"
    __table_args__ = (UniqueConstraint("course_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 1-based
    title: Mapped[str] = mapped_column(String(300))
    # {"blocks": [{"heading": str|None, "paragraphs": [str]}],
    #  "references": [{"paragraph": int, "text": str, "start": int, "end": int,
    #                  "guide": key|None, "title": str|None, "url": str|None}]}
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    words: Mapped[int] = mapped_column(Integer)
    reading_minutes: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # gone from the course's content
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    course: Mapped[Course] = relationship(back_populates="lessons")


class CourseArticle(Base):
    """An article a course made in the admin was published from, as uploaded (0017): the source its
    lessons were split from, kept so nothing the publisher gave is lost."""

    __tablename__ = "course_articles"
    __table_args__ = (UniqueConstraint("course_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 1-based, in the course's order
    filename: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)
    entry_id: Mapped[str | None] = mapped_column(String(1000))  # a feed entry's id (its article came from the feed)


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("subscriber_id", "course_id"),
        # A course's readers by state as an index-only scan (the unique key leads on the reader) (0022).
        Index("ix_enrollments_course_status", "course_id", "status"),
        # The funnel's "unsubscribed after lesson n": a GROUP BY over unsubscribed enrollments only (0024).
        Index(
            "ix_enrollments_left_after",
            "course_id",
            "left_after_position",
            postgresql_where=text("status = 'unsubscribed'"),
            sqlite_where=text("status = 'unsubscribed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=EnrollmentStatus.ACTIVE)
    send_time: Mapped[time | None] = mapped_column(Time)  # the subscriber's own choice, else the course's
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set as the enrollment is unsubscribed: the highest lesson position it had been sent (NULL:
    # none), so the funnel groups enrollments instead of probing the ledger once per leaver (0024).
    left_after_position: Mapped[int | None] = mapped_column(Integer)

    subscriber: Mapped[Subscriber] = relationship(back_populates="enrollments")
    course: Mapped[Course] = relationship()


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    body_markdown: Mapped[str] = mapped_column(Text)
    segment_tag: Mapped[str | None] = mapped_column(String(64))  # None: every active subscriber
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_email: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.DRAFT)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added for the web admin (migration 0006).
    preheader: Mapped[str] = mapped_column(String(200), default="", server_default="")
    # course.campaigns.audience.Audience as JSON; None: the older segment_tag rule.
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # "At 09:00 on 10 March in each subscriber's own zone": the wall time; send_at is then when
    # the fan-out runs (the rows carry each zone's moment).
    send_local: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    created_by: Mapped[int | None] = mapped_column(Integer)  # admins.id (no FK: see migration 0006)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The idempotency key of the web form that created it: the same form sent twice makes one draft.
    create_key: Mapped[str | None] = mapped_column(String(64))
    # The mail provider it takes first (0020); None: routed by From domain and fallback.
    provider: Mapped[str | None] = mapped_column(String(64))
    # Why the system paused it (0020: its error rate passed campaign_max_error_rate); None when an
    # editor paused it, or it is not paused.
    paused_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("uq_campaigns_create_key", "create_key", unique=True),)


class Delivery(Base):
    """One email to send. Unique per (recipient, lesson) and per (recipient, campaign), so no path
    through the code can schedule the same lesson or newsletter twice for one person."""

    __tablename__ = "deliveries"
    # Every index below that covers only some kinds of delivery is partial: a lesson row has no entry
    # in the campaign indexes and a campaign row none in the lesson ones. Each send updates a row three
    # times (claim, take-over, sent), and each of those updates writes to every index it belongs to.
    __table_args__ = (
        Index(
            "uq_deliveries_subscriber_lesson",
            "subscriber_id",
            "lesson_id",
            unique=True,
            postgresql_where=text("lesson_id IS NOT NULL"),
            sqlite_where=text("lesson_id IS NOT NULL"),
        ),
        Index(
            "uq_deliveries_subscriber_campaign",
            "subscriber_id",
            "campaign_id",
            unique=True,
            postgresql_where=text("campaign_id IS NOT NULL"),
            sqlite_where=text("campaign_id IS NOT NULL"),
        ),
        # The dispatcher's scan: open rows by priority, then due time. Partial, so sent history costs nothing.
        Index(
            "ix_deliveries_due",
            "priority",
            "due_at",
            postgresql_where=text(in_states_sql(CLAIMABLE_DELIVERY_STATES)),
            sqlite_where=text(in_states_sql(CLAIMABLE_DELIVERY_STATES)),
        ),
        # The dispatcher's back-pressure count: rows handed out whose lease still runs.
        Index(
            "ix_deliveries_in_flight",
            "lease_expires_at",
            postgresql_where=text(in_states_sql(IN_FLIGHT_DELIVERY_STATES)),
            sqlite_where=text(in_states_sql(IN_FLIGHT_DELIVERY_STATES)),
        ),
        Index(
            "ix_deliveries_enrollment",
            "enrollment_id",
            postgresql_where=text("enrollment_id IS NOT NULL"),
            sqlite_where=text("enrollment_id IS NOT NULL"),
        ),
        Index(
            "ix_deliveries_campaign",
            "campaign_id",
            "state",
            postgresql_where=text("campaign_id IS NOT NULL"),
            sqlite_where=text("campaign_id IS NOT NULL"),
        ),
        # A course's next sends (its open lesson rows per lesson) and a lesson's open rows when it
        # changes: nothing else leads on lesson_id (uq_deliveries_subscriber_lesson leads on the
        # subscriber). Open rows only: a row gets an entry when it is inserted and when it is
        # claimed, none when it is taken over or settled, so the send path pays two index
        # insertions a lesson row, not four, and sent history costs nothing (0022).
        Index(
            "ix_deliveries_lesson_open",
            "lesson_id",
            "state",
            postgresql_where=text("lesson_id IS NOT NULL AND " + in_states_sql(OPEN_DELIVERY_STATES)),
            sqlite_where=text("lesson_id IS NOT NULL AND " + in_states_sql(OPEN_DELIVERY_STATES)),
        ),
        # A lesson's queued rows by due time: the admin's "next sends due" reads the first one and
        # counts at most NEXT_SENDS_COUNT_CAP of them, however many are waiting (0024).
        Index(
            "ix_deliveries_lesson_due",
            "lesson_id",
            "due_at",
            postgresql_where=text("lesson_id IS NOT NULL AND " + in_states_sql(QUEUED_DELIVERY_STATES)),
            sqlite_where=text("lesson_id IS NOT NULL AND " + in_states_sql(QUEUED_DELIVERY_STATES)),
        ),
        # A reader's rows that are neither a lesson's nor a campaign's (account mail, test sends):
        # with the two unique indexes above, every row of a subscriber is reached through an index
        # (subscriber_rows below) and lesson and campaign rows, the bulk, never enter this one (0023).
        Index(
            "ix_deliveries_subscriber_other",
            "subscriber_id",
            postgresql_where=text("lesson_id IS NULL AND campaign_id IS NULL"),
            sqlite_where=text("lesson_id IS NULL AND campaign_id IS NULL"),
        ),
        # What needs attention: rows given up on. Few at any time, so the index is tiny (0023).
        Index(
            "ix_deliveries_failed",
            "due_at",
            postgresql_where=text("state = 'failed'"),
            sqlite_where=text("state = 'failed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Every kind of mail goes to a subscriber but an admin invitation (invitation_id, test_address).
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    template: Mapped[str | None] = mapped_column(String(64))  # transactional mail: which template
    priority: Mapped[int] = mapped_column(SmallInteger, default=int(DeliveryPriority.BULK))  # lower goes first
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(20), default=DeliveryState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the first attempt was taken over: transient failures are retried until retry_window_seconds
    # after it. Cleared when the row is requeued by hand.
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))
    # The mail provider (settings.provider_settings name) its last attempt went through.
    provider: Mapped[str | None] = mapped_column(String(64))
    # A test send (kind campaign_test): which campaign, and the address it goes to instead of the
    # subscriber's. Not campaign_id, so a test is never in a campaign's counts and never takes the
    # (subscriber, campaign) slot of the real send. A bare id, like campaigns.created_by (0006).
    test_campaign_id: Mapped[int | None] = mapped_column(Integer)
    test_lesson_id: Mapped[int | None] = mapped_column(Integer)  # a lesson test: the lesson it shows (0017)
    test_address: Mapped[str | None] = mapped_column(String(320))
    # An admin invitation's mail: the invitation whose sign-in link it carries (sent to test_address).
    # A bare id, like test_campaign_id: SQLite would copy the whole table to add a foreign key (0012).
    invitation_id: Mapped[int | None] = mapped_column(Integer)
    # The send journal's epoch when the current attempt was taken over; cleared when its outcome
    # is recorded. A take-over finding another epoch cannot trust the journal about it (migration 0018).
    journal_epoch: Mapped[str | None] = mapped_column(String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


def subscriber_rows(columns: Any, matches: Callable[[Any], Any]) -> Any:
    """The delivery rows whose subscriber_id `matches` (a condition built on the column given), as
    three arms the planner serves with one index each: uq_deliveries_subscriber_lesson,
    uq_deliveries_subscriber_campaign and ix_deliveries_subscriber_other (a BitmapOr). Plain
    `subscriber_id = :id` matches no index's predicate and reads every row of the ledger.
    `columns` is Delivery or a Core table's columns (Delivery.__table__.c, an alias's)."""
    who = matches(columns.subscriber_id)
    return or_(
        and_(who, columns.lesson_id.is_not(None)),
        and_(who, columns.campaign_id.is_not(None)),
        and_(who, columns.lesson_id.is_(None), columns.campaign_id.is_(None)),
    )


class CampaignTestSend(Base):
    """What a test send shows: the campaign's content at the moment the test was asked for, so an
    edit saved before the test goes out does not change it, and its view-in-browser page shows the
    test as it was sent. Written with its delivery row by course.ledger.add_campaign_test."""

    __tablename__ = "campaign_test_sends"

    delivery_id: Mapped[int] = mapped_column(BigId, ForeignKey("deliveries.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(200))
    body_markdown: Mapped[str] = mapped_column(Text)
    sender_name: Mapped[str] = mapped_column(String(200))
    sender_email: Mapped[str] = mapped_column(String(320))


class BounceKind(enum.StrEnum):
    HARD = "hard"  # the address does not work (5.x.x): suppressed at once
    SOFT = "soft"  # a full mailbox, a policy refusal, a give-up after 4.x.x: counted to a threshold
    COMPLAINT = "complaint"  # the reader marked a mail as spam (ARF)
    UNSUBSCRIBE = "unsubscribe"  # mail to the reader's List-Unsubscribe address: not a bounce, stored once like one


class BounceReport(Base):
    """A bounce or complaint that came back after sending (course/bounces), one row per report and
    recipient. `report_key` (the report's Message-ID, or a digest of its bytes, and the recipient)
    is unique: a report read twice changes nothing."""

    __tablename__ = "bounce_reports"
    __table_args__ = (
        Index("ix_bounce_reports_subscriber", "subscriber_id", "kind", "received_at"),
        # Counted per campaign (campaign progress) and per lesson (the course funnel).
        Index("ix_bounce_reports_campaign", "campaign_id", "kind"),
        Index("ix_bounce_reports_lesson", "lesson_id", "kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_key: Mapped[str] = mapped_column(String(200), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    delivery_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("deliveries.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(32), default="")  # the DSN status (5.1.1) or ARF feedback type
    reason: Mapped[str] = mapped_column(String(1000), default="")
    source: Mapped[str] = mapped_column(String(32), default="")  # folder, imap, webhook name
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The reported delivery's campaign or lesson, copied when recorded so the counts need no join
    # through the ledger's rows.
    campaign_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="SET NULL"))
    lesson_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("lessons.id", ondelete="SET NULL"))


class WebhookEvent(Base):
    """A bounce or complaint a provider's webhook reported (course/bounces/webhooks), stored by the
    request that brought it and applied later by a task. Unique by (provider, event_id), the
    provider's own id of the event: a replayed or retried delivery of it stores nothing new."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),
        # The task reads the pending ones, oldest first.
        Index("ix_webhook_events_pending", "applied_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # hard, soft, complaint, subscribe (an SNS subscription to confirm)
    recipient: Mapped[str] = mapped_column(String(320), default="")
    message_id: Mapped[str] = mapped_column(String(300), default="")  # the Message-ID we sent, when the provider names it
    return_path: Mapped[str] = mapped_column(String(320), default="")  # the VERP envelope sender, when named
    status: Mapped[str] = mapped_column(String(32), default="")
    reason: Mapped[str] = mapped_column(String(1000), default="")  # an SNS subscription: its SubscribeURL
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32), default="")  # record.Action, or "error: …"


class RateLimitHit(Base):
    """Fixed-window counters shared by every web process: one row per (scope, key, window), where
    key is an HMAC of the IP address or email address, so the table holds no personal data."""

    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_hits_window_start", "window_start"),)

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "signup-ip", "signup-address"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)


class SignupRequest(Base):
    """A signup as it was made. The web request only inserts this row (the same one statement for
    every address, known or not, so neither the answer nor its timing says anything); a worker
    handles it (course.audience.signup_requests). It stays until the subscriber is purged or the
    retention passes, because the confirmation link confirms exactly these details: a later signup
    for the same address never changes what an earlier link confirms."""

    __tablename__ = "signup_requests"
    __table_args__ = (
        # The worker's queue: rows not handled yet, oldest first.
        Index(
            "ix_signup_requests_unhandled",
            "id",
            postgresql_where=text("handled_at IS NULL"),
            sqlite_where=text("handled_at IS NULL"),
        ),
        Index("ix_signup_requests_confirm_delivery", "confirm_delivery_id", unique=True),
        Index("ix_signup_requests_requested_at", "requested_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(10), default="form", server_default="form")  # form or api
    # The confirmation mail this signup caused, if any: its link names this row's details.
    confirm_delivery_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("deliveries.id", ondelete="CASCADE"))


class Heartbeat(Base):
    """The last sign of life of each long-running part (one row per component): the dispatcher
    writes one after every run, each worker and beat every few seconds. `course status`, the web
    app's /readyz and the containers' health checks read them; a stale one is an alarm."""

    __tablename__ = "heartbeats"

    component: Mapped[str] = mapped_column(String(200), primary_key=True)  # "dispatcher", "worker:host", "beat"
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[str] = mapped_column(Text, default="")


# --- admin accounts (course/accounts) --------------------------------------------------------


class AdminRole(enum.StrEnum):
    """Owners manage admins and tokens; editors compose, schedule, pause and cancel; viewers read."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"


class Admin(Base):
    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id, parameters in the hash
    # A password someone else chose (the one `course admin create` prints): changed at first sign-in.
    password_must_change: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[str] = mapped_column(String(20), default=AdminRole.VIEWER)
    totp_secret: Mapped[str | None] = mapped_column(String(64))  # base32; set = second factor on
    # The 30-second TOTP step of the last code accepted (sign-in or setup): a code at or before it
    # is refused, so a code seen over someone's shoulder cannot be used again within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # cannot sign in; sessions end
    # The IANA zone the admin's pages show times in (UTC on hover); None: UTC until the browser's
    # zone is adopted at sign-in or saved on the account page.
    time_zone: Mapped[str | None] = mapped_column(String(64))


Index("uq_admins_email_lower", func.lower(Admin.email), unique=True)


class AdminRecoveryCode(Base):
    """One-use codes for an admin who lost the TOTP device: stored as argon2 hashes."""

    __tablename__ = "admin_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdminSession(Base):
    """A signed-in browser. The cookie holds a random token; the table holds only its SHA-256, so a
    leaked database signs nobody in. Ends at logout, after idle time, or at the absolute limit."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    admin_id: Mapped[int] = mapped_column(ForeignKey("admins.id", ondelete="CASCADE"), index=True)
    second_factor_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # password ok, TOTP not yet
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdminInvitation(Base):
    """An owner's invitation of a new admin: mailed through the ledger with a signed sign-in link
    naming this row and its current `link_nonce` (a re-send replaces the nonce, so only the newest
    link works). The link works once (accepted_at), until expires_at on the wall clock, and not
    after it is revoked; the admin is made when it is accepted."""

    __tablename__ = "admin_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    link_nonce: Mapped[str] = mapped_column(String(64))
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("admins.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the latest (re-)send
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    admin_id: Mapped[int | None] = mapped_column(ForeignKey("admins.id", ondelete="SET NULL"))  # who it became


class ApiToken(Base):
    """A bearer token for /api/admin/…: shown once, stored as its SHA-256, with a role of its own."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to recognise it
    role: Mapped[str] = mapped_column(String(20))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admins.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- readers' data: CSV imports, the suppression list, the admin audit log (migration 0016) ----


class ImportStatus(enum.StrEnum):
    QUEUED = "queued"  # uploaded, waiting for the task
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # a malformed file: nothing was imported


class SubscriberImport(Base):
    """One CSV import: who ran it and with what consent statement, its counts and its state. The
    per-row report is in subscriber_import_rows."""

    __tablename__ = "subscriber_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    admin_id: Mapped[int | None] = mapped_column(Integer)  # a bare id, like campaigns.created_by
    actor: Mapped[str] = mapped_column(String(320))  # the admin's address, "API token 3" or "cli"
    source: Mapped[str] = mapped_column(String(10))  # cli, web, api
    filename: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(10))  # opt-in, confirmed
    course_id: Mapped[int | None] = mapped_column(Integer)
    tag: Mapped[str | None] = mapped_column(String(64))
    consent: Mapped[str | None] = mapped_column(Text)  # the admin's statement that consent exists
    status: Mapped[str] = mapped_column(String(10), default=ImportStatus.QUEUED)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    unknown_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)


class ImportRowOutcome(enum.StrEnum):
    ACCEPTED = "accepted"  # a new subscriber
    UPDATED = "updated"  # known: name, time zone or tags changed
    UNCHANGED = "unchanged"
    REJECTED = "rejected"  # with its reason
    DUPLICATE = "duplicate"  # the same address again further down: merged into its last line
    SUPPRESSED = "suppressed"  # bounced, complained, unsubscribed or erased: skipped


class SubscriberImportRow(Base):
    __tablename__ = "subscriber_import_rows"

    # subscriber_imports.id, without a foreign key: written only by run_import for the import it
    # has just made, and imports are never deleted; a key checked per row cost a 1M import 5 s
    # (migration 0025).
    import_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)  # the file's line (header = 1)
    email: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(Text, default="")


class SuppressionReason(enum.StrEnum):
    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    ERASED = "erased"


class Suppression(Base):
    """An address that must not be mailed again, kept only as a keyed one-way hash
    (course.audience.suppression.address_hash), so an erased person's address is nowhere in the
    database and still cannot come back through an import or a signup without a fresh opt-in."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    admin_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("uq_suppressions_address_hash", "address_hash", unique=True),)


class AuditEntry(Base):
    """One admin action: who (admin id and label), when (wall clock), from where (IP) and what.
    Append-only: nothing in the admin or the API edits or deletes it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at", "id"), Index("ix_audit_log_action", "action", "at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    admin_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class BulkJobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BulkJob(Base):
    """A bulk action over a filter's result too large to run in the request (course.audience.bulk_jobs):
    the worker applies it in keyset batches of subscriber ids, `last_id` the highest one done, so a
    re-run goes on after the last committed batch. `key` makes a repeated request the same job."""

    __tablename__ = "bulk_jobs"
    __table_args__ = (Index("ix_bulk_jobs_open", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(20))  # tag-add, tag-remove, enrol, unsubscribe
    value: Mapped[str] = mapped_column(String(500), default="")  # the tag, course slug or reason
    filter_query: Mapped[str] = mapped_column(Text, default="")  # SubscriberFilter.query_string()
    state: Mapped[str] = mapped_column(String(10), default=BulkJobState.QUEUED)
    total: Mapped[int] = mapped_column(Integer, default=0)  # matched when the job was started
    done: Mapped[int] = mapped_column(Integer, default=0)  # subscribers gone through
    changed: Mapped[int] = mapped_column(Integer, default=0)  # of which the action changed
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)  # keyset: ids up to this one are done
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(320))  # the admin's address or "API token 3"
    admin_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
