"""The admin's view of its readers: a filtered, searched list of subscribers read page by page, one
subscriber's page (details, tags, enrollments with progress, a timeline), and what an admin does
to them (unsubscribe, resubscribe with a reason, bulk actions on a filter's result).

1. A filter (`SubscriberFilter`) is parsed from query parameters by a pure function, so the admin's
   bookmarkable URL, the API's query and the CLI read it the same way; each bad value is one
   message naming its field.
2. The list is read newest first in keyset order (`id < cursor`), never OFFSET: page 1,000 costs
   what page 1 does. The cursor is the last id shown.
3. Search is case-insensitive substring (so also prefix) matching on address and name: ILIKE, which
   pg_trgm's GIN indexes serve on PostgreSQL (migration 0015); SQLite scans.
4. A bulk action applies to every subscriber the filter matches (not the visible page), set-based,
   and is idempotent: a tag already there, an enrolment already running or an address already
   unsubscribed is left as it is, and only what changed is recorded as an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Mapping
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, literal, or_, select, text, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.audience.enrollment import enroll, enroll_new, stopped_values, unsubscribe
from course.audience.events import events_of, record_event, record_events
from course.audience.preferences import EnrollmentView, enrollment_views
from course.audience.schedule import parse_timezone
from course.i18n import SUPPORTED_LANGUAGES
from course.ledger import cancel_subscriber_rows
from course.models import (
    Campaign,
    Course,
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
    SubscriberTag,
    subscriber_rows,
)

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_QUERY_CHARS = 200
MAX_TAG_CHARS = 64
MAX_REASON_CHARS = 500
# A bulk action is run in the request up to this many subscribers (settings.bulk_inline_limit); a
# larger one is refused here and run as a bulk job by the worker (course.audience.bulk_jobs).
BULK_INLINE_LIMIT = 10_000
# Never resubscribed, whatever the reason given: they asked not to be mailed, in the strongest terms.
NEVER_RESUBSCRIBED = (SubscriberStatus.COMPLAINED, SubscriberStatus.ERASED)
STATUSES = tuple(status.value for status in SubscriberStatus)
NO_LANGUAGE = "none"  # the language filter's value for subscribers whose language is not known


class DirectoryError(ValueError):
    """Refused input or a refused action: the message names what is wrong, fit to show an admin."""

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


@dataclass(frozen=True)
class SubscriberFilter:
    """Which subscribers: every field empty matches everyone."""

    q: str = ""  # part of the address or name
    status: str = ""
    tag: str = ""
    course: str = ""  # a course slug: enrolled in it
    lesson: int | None = None  # with `course`: has been sent this lesson or a later one
    signed_up_from: date | None = None
    signed_up_to: date | None = None  # inclusive
    timezone: str = ""
    language: str = ""  # a language code (course.i18n), or "none": not known

    def query_string(self, **extra: str) -> str:
        """This filter as the query of a bookmarkable URL (the empty fields left out)."""
        values = {
            "q": self.q, "status": self.status, "tag": self.tag, "course": self.course,
            "lesson": str(self.lesson) if self.lesson else "",
            "from": self.signed_up_from.isoformat() if self.signed_up_from else "",
            "to": self.signed_up_to.isoformat() if self.signed_up_to else "",
            "timezone": self.timezone, "language": self.language, **extra,
        }  # fmt: skip
        return urlencode({name: value for name, value in values.items() if value})

    @property
    def is_everyone(self) -> bool:
        return self == SubscriberFilter()


def _date(raw: str, name: str, errors: dict[str, str]) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = f"{raw[:40]!r} is not a date: use YYYY-MM-DD"
        return None


def parse_filter(params: Mapping[str, str]) -> SubscriberFilter:
    """A filter from query parameters (q, status, tag, course, lesson, from, to, timezone, language); raises
    DirectoryError with a message per bad field. Pure: known courses and tags are not checked here
    (an unknown one matches nobody, as a search would)."""
    errors: dict[str, str] = {}
    q = " ".join(params.get("q", "").split())
    if len(q) > MAX_QUERY_CHARS:
        errors["q"] = f"a search is at most {MAX_QUERY_CHARS} characters"
    status = params.get("status", "").strip().lower()
    if status and status not in STATUSES:
        errors["status"] = f"unknown status {status[:40]!r}: one of {', '.join(STATUSES)}"
    tag = params.get("tag", "").strip()
    if len(tag) > MAX_TAG_CHARS:
        errors["tag"] = f"a tag is at most {MAX_TAG_CHARS} characters"
    course = params.get("course", "").strip()
    lesson: int | None = None
    if raw_lesson := params.get("lesson", "").strip():
        if not raw_lesson.isdigit() or not 1 <= int(raw_lesson) <= 10_000:
            errors["lesson"] = "a lesson is a number from 1"
        elif not course:
            errors["lesson"] = "a lesson needs a course"
        else:
            lesson = int(raw_lesson)
    signed_up_from = _date(params.get("from", "").strip(), "from", errors)
    signed_up_to = _date(params.get("to", "").strip(), "to", errors)
    if signed_up_from and signed_up_to and signed_up_to < signed_up_from:
        errors["to"] = "the end date is before the start date"
    zone = params.get("timezone", "").strip()
    if zone:
        try:
            zone = parse_timezone(zone).key
        except ValueError:
            errors["timezone"] = f"unknown time zone {zone[:64]!r}"
    language = params.get("language", "").strip().lower()
    if language and language not in (*SUPPORTED_LANGUAGES, NO_LANGUAGE):
        errors["language"] = f"unknown language {language[:20]!r}: one of {', '.join(SUPPORTED_LANGUAGES)} or {NO_LANGUAGE}"
    if errors:
        raise DirectoryError("; ".join(f"{name}: {message}" for name, message in errors.items()), fields=errors)
    return SubscriberFilter(
        q=q, status=status, tag=tag, course=course, lesson=lesson, signed_up_from=signed_up_from,
        signed_up_to=signed_up_to, timezone=zone, language=language,
    )  # fmt: skip


def parse_cursor(raw: str) -> int | None:
    """The keyset cursor of a page: the last id of the page before it (empty: the first page)."""
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise DirectoryError(f"cursor {raw[:40]!r} is not one this list gave out", fields={"cursor": "not a cursor of this list"})
    return int(raw)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


def filter_conditions(chosen: SubscriberFilter) -> list[ColumnElement[bool]]:
    """The WHERE conditions of a filter, on `subscribers` (each tag, course or lesson one EXISTS)."""
    conditions: list[ColumnElement[bool]] = []
    if chosen.q:
        pattern = _like_pattern(chosen.q)
        conditions.append(or_(Subscriber.email.ilike(pattern, escape="\\"), Subscriber.name.ilike(pattern, escape="\\")))
    if chosen.status:
        conditions.append(Subscriber.status == chosen.status)
    if chosen.tag:
        conditions.append(exists().where(SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag == chosen.tag))
    if chosen.course:
        enrolled = (
            select(Enrollment.id)
            .join(Course, Course.id == Enrollment.course_id)
            .where(Enrollment.subscriber_id == Subscriber.id, Course.slug == chosen.course)
        )
        conditions.append(enrolled.exists())
        if chosen.lesson:
            reached = (
                select(Delivery.id)
                .join(Lesson, Lesson.id == Delivery.lesson_id)
                .join(Course, Course.id == Lesson.course_id)
                .where(
                    Delivery.subscriber_id == Subscriber.id, Delivery.state == DeliveryState.SENT,
                    Course.slug == chosen.course, Lesson.position >= chosen.lesson,
                )  # fmt: skip
            )
            conditions.append(reached.exists())
    if chosen.signed_up_from:
        conditions.append(Subscriber.created_at >= _midnight(chosen.signed_up_from))
    if chosen.signed_up_to:
        conditions.append(Subscriber.created_at < _midnight(chosen.signed_up_to + timedelta(days=1)))
    if chosen.timezone:
        conditions.append(Subscriber.timezone == chosen.timezone)
    if chosen.language == NO_LANGUAGE:
        conditions.append(Subscriber.language.is_(None))
    elif chosen.language:
        conditions.append(Subscriber.language == chosen.language)
    return conditions


def matching_ids(chosen: SubscriberFilter) -> Select[Any]:
    """One column of the ids of every subscriber the filter matches (what a bulk action acts on)."""
    return select(Subscriber.id).where(*filter_conditions(chosen))


# --- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriberListing:
    id: int
    email: str
    name: str
    status: str
    timezone: str
    created_at: datetime
    tags: tuple[str, ...]
    language: str | None = None


@dataclass(frozen=True)
class SubscriberPage:
    subscribers: list[SubscriberListing]
    next_cursor: str | None  # None: this is the last page


def list_subscribers(session: Session, chosen: SubscriberFilter, *, cursor: int | None = None, limit: int = PAGE_SIZE) -> SubscriberPage:
    """One page of the filter's subscribers, newest first, after `cursor` (keyset: `id < cursor`),
    and the cursor of the next page. Two statements: the page (limit + 1 rows, to know whether
    another page follows) and the page's tags."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = select(Subscriber).where(*filter_conditions(chosen))
    if cursor is not None:
        query = query.where(Subscriber.id < cursor)
    rows = list(session.scalars(query.order_by(Subscriber.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    tags: dict[int, list[str]] = {}
    if rows:
        for subscriber_id, tag in session.execute(
            select(SubscriberTag.subscriber_id, SubscriberTag.tag)
            .where(SubscriberTag.subscriber_id.in_([row.id for row in rows]))
            .order_by(SubscriberTag.tag)
        ):
            tags.setdefault(subscriber_id, []).append(tag)
    return SubscriberPage(
        subscribers=[
            SubscriberListing(
                id=row.id, email=row.email, name=row.name, status=row.status, timezone=row.timezone,
                created_at=row.created_at, tags=tuple(tags.get(row.id, ())), language=row.language,
            )  # fmt: skip
            for row in rows
        ],
        next_cursor=str(rows[-1].id) if more else None,
    )


def count_matching(session: Session, chosen: SubscriberFilter, *, at_most: int | None = None) -> int:
    """How many subscribers the filter matches; with `at_most`, counting stops past it (the result
    is then at_most + 1: "more than at_most")."""
    ids = matching_ids(chosen)
    if at_most is not None:
        ids = ids.limit(at_most + 1)
    return session.scalar(select(func.count()).select_from(ids.subquery())) or 0


# --- one subscriber ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a subscriber's timeline: an event of the record, or a delivery of the ledger."""

    at: datetime
    kind: str  # an event's kind, or "delivery"
    summary: str
    actor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubscriberDetail:
    id: int
    email: str
    name: str
    status: str
    timezone: str
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    tags: tuple[str, ...]
    enrollments: list[EnrollmentView]
    timeline: list[TimelineEntry]  # oldest first
    language: str | None = None
    source: str | None = None  # form, api, import:<id>, admin, cli

    @property
    def may_resubscribe(self) -> bool:
        return self.status not in (*NEVER_RESUBSCRIBED, SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)

    @property
    def may_unsubscribe(self) -> bool:
        return self.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING)


def _describe_event(kind: str, detail: dict[str, Any], course_titles: dict[int, str]) -> str:
    course = course_titles.get(detail.get("course_id") or 0, "")
    about = f" ({course})" if course else ""
    reason = f": {detail['reason']}" if detail.get("reason") else ""
    match kind:
        case SubscriberEventKind.SIGNED_UP:
            source = f" via {detail['source']}" if detail.get("source") else ""
            return f"Signed up{about}{source}"
        case SubscriberEventKind.CONFIRMED:
            return f"Confirmed{about}"
        case SubscriberEventKind.ENROLLED:
            return f"Enrolled{about}"
        case SubscriberEventKind.PREFERENCES_CHANGED:
            changes = [f"time zone {detail['timezone']}" for _ in [0] if "timezone" in detail]
            if "send_time" in detail:
                changes.append(f"send time {detail['send_time'] or 'the course’s'}{about}")
            return "Changed preferences: " + (", ".join(changes) or "settings")
        case SubscriberEventKind.PAUSED:
            return f"Paused{about}"
        case SubscriberEventKind.RESUMED:
            return f"Resumed{about}"
        case SubscriberEventKind.UNSUBSCRIBED:
            return f"Unsubscribed from {course or 'everything'}{reason}"
        case SubscriberEventKind.RESUBSCRIBED:
            return f"Resubscribed{reason}" if detail.get("reason") else f"Resubscribed (from the {detail.get('source', 'admin')})"
        case SubscriberEventKind.BOUNCED:
            return "Bounced: the address is suppressed"
        case SubscriberEventKind.TAG_ADDED:
            return f"Tag added: {detail.get('tag', '')}"
        case SubscriberEventKind.TAG_REMOVED:
            return f"Tag removed: {detail.get('tag', '')}"
    return kind.replace("_", " ").capitalize()


def _delivery_entries(session: Session, subscriber_id: int) -> list[TimelineEntry]:
    """The subscriber's deliveries from the ledger (lesson and campaign titles joined), each at its
    sending time (else its due time), with its state and the SMTP answer of its last attempt."""
    rows = session.execute(
        select(
            Delivery.kind, Delivery.state, Delivery.due_at, Delivery.sent_at, Delivery.last_error, Delivery.template,
            Delivery.attempts, Lesson.title, Lesson.position, Course.title, Campaign.name, Campaign.subject,
        )
        .outerjoin(Lesson, Lesson.id == Delivery.lesson_id)
        .outerjoin(Course, Course.id == Lesson.course_id)
        .outerjoin(Campaign, Campaign.id == Delivery.campaign_id)
        .where(subscriber_rows(Delivery, lambda column: column == subscriber_id))
    ).all()
    entries = []
    for kind, state, due_at, sent_at, last_error, template, attempts, lesson, position, course, campaign, subject in rows:
        if lesson is not None:
            what = f"Lesson {position} of {course}: {lesson}"
        elif campaign is not None:
            what = f"Campaign {campaign}: {subject}"
        else:
            what = f"{kind.replace('_', ' ').capitalize()} mail ({template or kind})"
        entries.append(
            TimelineEntry(
                at=sent_at or due_at, kind="delivery", summary=f"{what}: {state}",
                detail={"state": state, "smtp_answer": last_error or "", "attempts": attempts, "due_at": due_at.isoformat()},
            )  # fmt: skip
        )
    return entries


def subscriber_detail(session: Session, subscriber_id: int) -> SubscriberDetail | None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    tags = tuple(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == subscriber_id).order_by(SubscriberTag.tag)))
    course_titles: dict[int, str] = {course_id: title for course_id, title in session.execute(select(Course.id, Course.title))}
    timeline = [
        TimelineEntry(
            at=event.occurred_at, kind=event.kind, summary=_describe_event(event.kind, event.detail or {}, course_titles),
            actor=event.actor, detail=event.detail or {},
        )  # fmt: skip
        for event in events_of(session, subscriber_id)
    ] + _delivery_entries(session, subscriber_id)
    timeline.sort(key=lambda entry: entry.at)  # stable: events keep their order among equal times
    return SubscriberDetail(
        id=subscriber.id, email=subscriber.email, name=subscriber.name, status=subscriber.status, timezone=subscriber.timezone,
        created_at=subscriber.created_at, confirmed_at=subscriber.confirmed_at, unsubscribed_at=subscriber.unsubscribed_at,
        tags=tags, enrollments=enrollment_views(session, subscriber), timeline=timeline, language=subscriber.language,
        source=subscriber.source,
    )  # fmt: skip


def find_by_email(session: Session, email: str) -> int | None:
    return session.scalar(select(Subscriber.id).where(func.lower(Subscriber.email) == email.strip().lower()))


# --- what an admin does to one subscriber --------------------------------------------------------


def _reason(raw: str, *, required: bool) -> str:
    reason = " ".join(raw.split())
    if required and not reason:
        raise DirectoryError("a resubscribe needs a reason (where the consent comes from)", fields={"reason": "say why: required"})
    if len(reason) > MAX_REASON_CHARS:
        raise DirectoryError(f"a reason is at most {MAX_REASON_CHARS} characters", fields={"reason": "too long"})
    return reason


def reason_text(raw: str) -> str:
    """An optional reason (an unsubscribe's), normalised, or DirectoryError when too long."""
    return _reason(raw, required=False)


def _subscriber(session: Session, subscriber_id: int) -> Subscriber:
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None:
        raise DirectoryError(f"no subscriber with id {subscriber_id}")
    return subscriber


def admin_unsubscribe(session: Session, subscriber_id: int, *, actor: str, reason: str = "", now: datetime) -> bool:
    """Unsubscribe from everything, recorded as done by `actor`. False when they were not
    receiving mail anyway (nothing changes, nothing is recorded)."""
    subscriber = _subscriber(session, subscriber_id)
    reason = _reason(reason, required=False)
    if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return False
    unsubscribe(session, subscriber, course_id=None, now=now, actor=actor, reason=reason)
    return True


def admin_resubscribe(session: Session, subscriber_id: int, *, actor: str, reason: str, now: datetime) -> None:
    """Turn an unsubscribed (or bounced) address's mail on again, with a recorded reason; never one
    that complained or was erased. Their courses stay stopped: enrol them again to restart one."""
    subscriber = _subscriber(session, subscriber_id)
    reason = _reason(reason, required=True)
    if subscriber.status in NEVER_RESUBSCRIBED:
        raise DirectoryError(f"{subscriber.email} {subscriber.status}: such an address is never resubscribed")
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        raise DirectoryError(f"{subscriber.email} is {subscriber.status}, not unsubscribed: nothing to resubscribe")
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.unsubscribed_at = None
    subscriber.confirmed_at = subscriber.confirmed_at or now
    record_event(session, subscriber_id, SubscriberEventKind.RESUBSCRIBED, now=now, actor=actor, detail={"reason": reason})


# Every tag name in use, in order, as a loose index scan: each step is one probe of
# ix_subscriber_tags_tag for the next name after the last, so the cost is per tag name, not per
# tagged subscriber (SELECT DISTINCT read all 1.1M rows of a million readers' tags: ~0.5 s).
_TAG_NAMES = text(
    """WITH RECURSIVE names(tag) AS (
        SELECT min(tag) FROM subscriber_tags
        UNION ALL
        SELECT (SELECT min(tag) FROM subscriber_tags WHERE tag > names.tag) FROM names WHERE names.tag IS NOT NULL
    )
    SELECT tag FROM names WHERE tag IS NOT NULL LIMIT :limit"""
)


def tag_names(session: Session, *, limit: int = 500) -> list[str]:
    """The tags in use, alphabetically (at most `limit`): the filter form's choices."""
    return list(session.scalars(_TAG_NAMES, {"limit": limit}))


def check_tag(raw: str) -> str:
    tag = raw.strip()
    if not tag or len(tag) > MAX_TAG_CHARS or any(ch.isspace() or not ch.isprintable() for ch in tag):
        raise DirectoryError(
            f"a tag is 1 to {MAX_TAG_CHARS} characters without spaces, like 'readers'", fields={"tag": "not a tag"}
        )
    return tag


def _insert_ignoring_duplicates(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def add_tag(session: Session, ids: Select[Any], tag: str, *, actor: str, now: datetime) -> int:
    """Tag every subscriber of `ids` (a SELECT of ids); returns how many got the tag now."""
    tag = check_tag(tag)
    insert = _insert_ignoring_duplicates(session)
    # WHERE true: SQLite reads "INSERT … SELECT … ON CONFLICT" as a join's ON without it.
    source = select(ids.subquery().c[0], literal(tag, SubscriberTag.tag.type)).where(true())
    added = list(
        session.scalars(
            insert(SubscriberTag).from_select(["subscriber_id", "tag"], source).on_conflict_do_nothing().returning(SubscriberTag.subscriber_id)
        )
    )
    record_events(session, added, SubscriberEventKind.TAG_ADDED, now=now, actor=actor, detail={"tag": tag})
    return len(added)


def remove_tag(session: Session, ids: Select[Any], tag: str, *, actor: str, now: datetime) -> int:
    tag = check_tag(tag)
    removed = list(
        session.scalars(
            delete(SubscriberTag)
            .where(SubscriberTag.tag == tag, SubscriberTag.subscriber_id.in_(ids))
            .returning(SubscriberTag.subscriber_id)
        )
    )
    record_events(session, removed, SubscriberEventKind.TAG_REMOVED, now=now, actor=actor, detail={"tag": tag})
    return len(removed)


def enrol_all(session: Session, ids: Select[Any], course_slug: str, *, actor: str, now: datetime) -> int:
    """Enrol every active subscriber of `ids` who is not in the course yet (or left it): lesson 1
    due now for a new one, a returning one goes on where they stopped. Returns how many."""
    course = session.scalars(select(Course).where(Course.slug == course_slug)).first()
    if course is None:
        raise DirectoryError(f"unknown course {course_slug[:100]!r}", fields={"course": "no such course"})
    running = select(Enrollment.subscriber_id).where(
        Enrollment.course_id == course.id,
        Enrollment.status.in_([EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.COMPLETED]),
    )
    candidates = and_(Subscriber.id.in_(ids), Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id.not_in(running))
    # A reader with a history in the course (an enrollment they left, a lesson in the ledger) goes on
    # where they stopped, one at a time (enroll); the others, nearly everyone in a big bulk job,
    # are enrolled set-based (enroll_new).
    lesson_ids = select(Lesson.id).where(Lesson.course_id == course.id)
    history = or_(
        exists().where(Enrollment.subscriber_id == Subscriber.id, Enrollment.course_id == course.id),
        exists().where(Delivery.subscriber_id == Subscriber.id, Delivery.lesson_id.in_(lesson_ids)),
    )
    returning = session.scalars(select(Subscriber).where(candidates, history).order_by(Subscriber.id)).all()
    fresh = [(row.id, row.timezone) for row in session.execute(select(Subscriber.id, Subscriber.timezone).where(candidates, ~history).order_by(Subscriber.id))]
    for subscriber in returning:
        enroll(session, subscriber, course, now=now)
    enrolled = [subscriber.id for subscriber in returning] + enroll_new(session, course, fresh, now=now)
    record_events(session, enrolled, SubscriberEventKind.ENROLLED, now=now, actor=actor, detail={"course_id": course.id})
    return len(enrolled)


def unsubscribe_all(session: Session, ids: Select[Any], *, actor: str, reason: str = "", now: datetime) -> int:
    """Unsubscribe every receiving (active or pending) subscriber of `ids` from everything, as
    unsubscribe() does one (their enrollments stopped, their open rows cancelled), set-based."""
    reason = _reason(reason, required=False)
    stopped = list(
        session.scalars(
            update(Subscriber)
            .where(Subscriber.id.in_(ids), Subscriber.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]))
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now)
            .returning(Subscriber.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not stopped:
        return 0
    session.execute(
        update(Enrollment)
        .where(Enrollment.subscriber_id.in_(stopped), Enrollment.status != EnrollmentStatus.COMPLETED)
        .values(stopped_values())
        .execution_options(synchronize_session=False)
    )
    cancel_subscriber_rows(session, stopped)
    record_events(
        session, stopped, SubscriberEventKind.UNSUBSCRIBED, now=now, actor=actor, detail={"reason": reason} if reason else None
    )
    return len(stopped)


BULK_ACTIONS = ("tag-add", "tag-remove", "enrol", "unsubscribe")


class TooManyForInline(DirectoryError):
    """The filter matches more subscribers than a request runs: start a bulk job instead."""

    def __init__(self, matched: int, limit: int) -> None:
        super().__init__(f"this filter matches {matched:,} subscribers; a bulk action in the request takes at most {limit:,}")
        self.matched = matched


@dataclass(frozen=True)
class BulkResult:
    action: str
    matched: int
    changed: int


def bulk_action(
    session: Session, chosen: SubscriberFilter, action: str, *, value: str = "", actor: str, now: datetime,
    limit: int = BULK_INLINE_LIMIT,
) -> BulkResult:
    """Apply one action to every subscriber the filter matches (see the module's step 4). `value`
    is the tag, the course slug, or the unsubscribe's reason. Over `limit` subscribers:
    TooManyForInline, and nothing is done."""
    if action not in BULK_ACTIONS:
        raise DirectoryError(f"unknown bulk action {action[:40]!r}: one of {', '.join(BULK_ACTIONS)}", fields={"action": "unknown"})
    matched = count_matching(session, chosen)
    if matched > limit:
        raise TooManyForInline(matched, limit)
    ids = matching_ids(chosen)
    if action == "tag-add":
        changed = add_tag(session, ids, value, actor=actor, now=now)
    elif action == "tag-remove":
        changed = remove_tag(session, ids, value, actor=actor, now=now)
    elif action == "enrol":
        changed = enrol_all(session, ids, value.strip(), actor=actor, now=now)
    else:
        changed = unsubscribe_all(session, ids, actor=actor, reason=value, now=now)
    return BulkResult(action=action, matched=matched, changed=changed)
