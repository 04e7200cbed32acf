"""Who a campaign goes to. An Audience is a small value (stored as JSON on the campaign): every
active subscriber, or those with any / all of some tags, or the enrollees of a course (active,
finished, or at lesson N or later), minus some excluded tags. `recipients` turns it into one
SELECT of subscriber ids, which the count and the fan-out's INSERT … SELECT both use, so the
number the admin sees before scheduling is the number of rows the fan-out writes.

Only active subscribers are ever included: pending (unconfirmed), unsubscribed and bounced
(suppressed) addresses are out by the first condition, whatever else the audience says. An unknown
tag or course is an error, never an empty send."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from course.campaigns.refusals import InputRefused
from course.models import (
    Course,
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Lesson,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
)

MAX_TAGS = 20  # per list: an audience is a few conditions, not a subscriber list
_TAG = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")


class AudienceError(InputRefused):
    """An audience that cannot be sent to: the message names the tag, course or rule."""

    def __init__(self, message: str) -> None:
        super().__init__(message, {"audience": message})


def normalize_tag(raw: str) -> str:
    tag = raw.strip().lower()
    if not _TAG.fullmatch(tag):
        raise InputRefused(f"invalid tag {raw!r}: use 1-64 of a-z, 0-9, '_', '.', ':', '-'")
    return tag


class CourseStage(enum.StrEnum):
    ANY = "any"  # enrolled and confirmed, in whatever state but unsubscribed
    ACTIVE = "active"  # still receiving lessons (or paused)
    FINISHED = "finished"  # received every lesson


_STAGE_STATES = {
    CourseStage.ANY: (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED, EnrollmentStatus.COMPLETED),
    CourseStage.ACTIVE: (EnrollmentStatus.ACTIVE, EnrollmentStatus.PAUSED),
    CourseStage.FINISHED: (EnrollmentStatus.COMPLETED,),
}


@dataclass(frozen=True)
class Audience:
    tags_any: tuple[str, ...] = ()  # has at least one of these
    tags_all: tuple[str, ...] = ()  # has every one of these
    course: str | None = None  # enrolled in this course (slug)…
    course_stage: CourseStage = CourseStage.ANY  # …at this stage…
    min_lesson: int | None = None  # …and has been sent lesson N or a later one
    exclude_tags: tuple[str, ...] = field(default=())  # has none of these

    @property
    def is_everyone(self) -> bool:
        return not (self.tags_any or self.tags_all or self.course or self.exclude_tags)

    def to_json(self) -> dict[str, Any]:
        return {
            "tags_any": list(self.tags_any),
            "tags_all": list(self.tags_all),
            "course": self.course,
            "course_stage": self.course_stage.value,
            "min_lesson": self.min_lesson,
            "exclude_tags": list(self.exclude_tags),
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> Audience:
        stored = stored or {}
        return cls(
            tags_any=tuple(stored.get("tags_any") or ()),
            tags_all=tuple(stored.get("tags_all") or ()),
            course=stored.get("course"),
            course_stage=CourseStage(stored.get("course_stage") or CourseStage.ANY),
            min_lesson=stored.get("min_lesson"),
            exclude_tags=tuple(stored.get("exclude_tags") or ()),
        )

    def describe(self) -> str:
        """One line for people: 'active subscribers tagged bakers or rye, enrolled in x, not tagged y'."""
        narrowed = self.summary()
        return "every active subscriber" if narrowed == "everyone" else "active subscribers " + narrowed

    def summary(self) -> str:
        """The short form for a list: 'tagged bakers or rye, enrolled in x, not tagged y', or 'everyone'."""
        parts = []
        if self.tags_any:
            parts.append("tagged " + " or ".join(self.tags_any))
        if self.tags_all:
            parts.append("tagged " + " and ".join(self.tags_all))
        if self.course:
            stage = {CourseStage.ANY: "enrolled in", CourseStage.ACTIVE: "taking", CourseStage.FINISHED: "who finished"}
            parts.append(f"{stage[self.course_stage]} {self.course}")
            if self.min_lesson:
                parts.append(f"at lesson {self.min_lesson} or later")
        if self.exclude_tags:
            parts.append("not tagged " + " or ".join(self.exclude_tags))
        return ", ".join(parts) if parts else "everyone"


def _tag_list(raw: str | list[str] | tuple[str, ...], what: str) -> tuple[str, ...]:
    items = raw.replace(",", " ").split() if isinstance(raw, str) else [item for item in raw if item.strip()]
    if len(items) > MAX_TAGS:
        raise AudienceError(f"{what}: at most {MAX_TAGS} tags")
    try:
        return tuple(dict.fromkeys(normalize_tag(item) for item in items))
    except InputRefused as exc:
        raise AudienceError(f"{what}: {exc}") from None


def build_audience(
    *,
    tags_any: str | list[str] = "",
    tags_all: str | list[str] = "",
    course: str = "",
    course_stage: str = "any",
    min_lesson: int | str | None = None,
    exclude_tags: str | list[str] = "",
) -> Audience:
    """Pure: form or JSON fields (tags as lists or space/comma separated) -> an Audience."""
    try:
        stage = CourseStage(course_stage or "any")
    except ValueError:
        raise AudienceError(f"unknown course stage {course_stage!r}: use any, active or finished") from None
    lesson: int | None = None
    if min_lesson not in (None, ""):
        try:
            lesson = int(min_lesson)  # type: ignore[arg-type]
        except ValueError:
            raise AudienceError(f"lesson {min_lesson!r} is not a number") from None
        if not 1 <= lesson <= 1000:
            raise AudienceError("the lesson number must be between 1 and 1000")
    slug = course.strip() or None
    if slug is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,99}", slug):
        raise AudienceError(f"no course {slug[:100]!r}")
    if lesson and not slug:
        raise AudienceError("a lesson number needs a course")
    audience = Audience(
        tags_any=_tag_list(tags_any, "any of the tags"),
        tags_all=_tag_list(tags_all, "all of the tags"),
        course=slug,
        course_stage=stage,
        min_lesson=lesson if lesson and lesson > 1 else None,
        exclude_tags=_tag_list(exclude_tags, "excluded tags"),
    )
    overlap = set(audience.exclude_tags) & (set(audience.tags_any) | set(audience.tags_all))
    if overlap:
        raise AudienceError(f"the tag {sorted(overlap)[0]!r} is both wanted and excluded")
    return audience


def check_audience(session: Session, audience: Audience) -> int | None:
    """Every tag and the course must exist. Returns the course's id (None without a course)."""
    wanted = {*audience.tags_any, *audience.tags_all, *audience.exclude_tags}
    if wanted:
        known = set(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.tag.in_(wanted)).distinct()))
        unknown = sorted(wanted - known)
        if unknown:
            raise AudienceError(f"no subscriber has the tag {unknown[0]!r}")
    if audience.course is None:
        return None
    course_id = session.scalar(select(Course.id).where(Course.slug == audience.course))
    if course_id is None:
        raise AudienceError(f"no course {audience.course!r}")
    return course_id


def resolve_course(session: Session, audience: Audience) -> int | None:
    """The course's id for the fan-out, which does not re-check tags: a course gone since
    scheduling reaches nobody (id 0 matches no enrollment) rather than everybody."""
    if audience.course is None:
        return None
    return session.scalar(select(Course.id).where(Course.slug == audience.course)) or 0


def recipients(audience: Audience, course_id: int | None) -> Select[Any]:
    """SELECT subscribers.id of everyone the audience reaches: one statement, with one EXISTS per
    condition (each answered from an index: tags by ix_subscriber_tags_tag, enrollments by their
    unique (subscriber, course), lesson progress by the ledger's per-subscriber unique index)."""
    query = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
    if audience.tags_any:
        query = query.where(
            exists().where(SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag.in_(audience.tags_any))
        )
    for tag in audience.tags_all:
        query = query.where(exists().where(SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag == tag))
    if audience.exclude_tags:
        query = query.where(
            ~exists().where(SubscriberTag.subscriber_id == Subscriber.id, SubscriberTag.tag.in_(audience.exclude_tags))
        )
    if course_id is not None:
        query = query.where(
            exists().where(
                Enrollment.subscriber_id == Subscriber.id,
                Enrollment.course_id == course_id,
                Enrollment.status.in_(_STAGE_STATES[audience.course_stage]),
            )
        )
        if audience.min_lesson:
            query = query.where(
                exists().where(
                    Delivery.subscriber_id == Subscriber.id,
                    Delivery.lesson_id == Lesson.id,
                    Lesson.course_id == course_id,
                    Lesson.position >= audience.min_lesson,
                    Delivery.state == DeliveryState.SENT,
                )
            )
    return query


def count_audience(session: Session, audience: Audience) -> int:
    """How many subscribers the audience reaches now (an unknown tag or course raises)."""
    course_id = check_audience(session, audience)
    return session.scalar(select(func.count()).select_from(recipients(audience, course_id).subquery())) or 0


def tag_counts(session: Session) -> list[tuple[str, int]]:
    """Every tag in use with how many active subscribers have it, by tag."""
    return [
        (tag, count)
        for tag, count in session.execute(
            select(SubscriberTag.tag, func.count(Subscriber.id))
            .join(Subscriber, Subscriber.id == SubscriberTag.subscriber_id)
            .where(Subscriber.status == SubscriberStatus.ACTIVE)
            .group_by(SubscriberTag.tag)
            .order_by(SubscriberTag.tag)
        )
    ]
