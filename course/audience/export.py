"""Exporting subscribers as CSV, streamed: the rows are read by keyset (id > last id) a chunk at a
time and written out as they come, so a million rows cost the process one chunk of memory. Every
cell a spreadsheet would run as a formula (=, +, -, @, tab, CR) is neutralised with a leading
apostrophe, the OWASP advice for CSV injection."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session

from course.models import Course, Enrollment, Subscriber, SubscriberStatus, SubscriberTag

EXPORT_COLUMNS = ("email", "name", "timezone", "status", "tags", "created_at", "confirmed_at")
CHUNK_ROWS = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportFilterError(ValueError):
    """A filter naming something that does not exist: the message names it."""


@dataclass(frozen=True)
class ExportFilter:
    status: str | None = None
    tag: str | None = None
    course_slug: str | None = None


def neutralise(cell: Any) -> str:
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def check_filter(session: Session, wanted: ExportFilter) -> int | None:
    """The course id the filter names; ExportFilterError for an unknown status or course."""
    statuses = [status.value for status in SubscriberStatus]
    if wanted.status and wanted.status not in statuses:
        raise ExportFilterError(f"unknown status {wanted.status!r}: one of {', '.join(statuses)}")
    if not wanted.course_slug:
        return None
    course_id = session.scalars(select(Course.id).where(Course.slug == wanted.course_slug)).first()
    if course_id is None:
        raise ExportFilterError(f"unknown course {wanted.course_slug!r}")
    return course_id


def _selection(wanted: ExportFilter, course_id: int | None) -> Select[Any]:
    columns = Subscriber.__table__.c
    statement = select(columns.id, columns.email, columns.name, columns.timezone, columns.status, columns.created_at, columns.confirmed_at)
    if wanted.status:
        statement = statement.where(columns.status == wanted.status)
    else:
        statement = statement.where(columns.status != SubscriberStatus.ERASED.value)
    if wanted.tag:
        statement = statement.where(exists().where(SubscriberTag.subscriber_id == columns.id, SubscriberTag.tag == wanted.tag))
    if course_id is not None:
        statement = statement.where(exists().where(Enrollment.subscriber_id == columns.id, Enrollment.course_id == course_id))
    return statement.order_by(columns.id)


def export_csv(session: Session, wanted: ExportFilter) -> Iterator[str]:
    """The filter's subscribers as CSV text, one chunk of rows per piece."""
    course_id = check_filter(session, wanted)
    statement = _selection(wanted, course_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    yield _take(buffer)
    last_id = 0
    while True:
        rows = session.execute(statement.where(Subscriber.__table__.c.id > last_id).limit(CHUNK_ROWS)).all()
        if not rows:
            return
        tags: dict[int, list[str]] = defaultdict(list)
        for subscriber_id, tag in session.execute(
            select(SubscriberTag.subscriber_id, SubscriberTag.tag)
            .where(SubscriberTag.subscriber_id.in_([row.id for row in rows]))
            .order_by(SubscriberTag.subscriber_id, SubscriberTag.tag)
        ):
            tags[subscriber_id].append(tag)
        for row in rows:
            writer.writerow(
                [neutralise(value) for value in (
                    row.email, row.name, row.timezone, row.status, ";".join(tags[row.id]),
                    _iso(row.created_at), _iso(row.confirmed_at),
                )]
            )  # fmt: skip
        yield _take(buffer)
        last_id = rows[-1].id


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
