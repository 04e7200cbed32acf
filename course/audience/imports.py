"""Importing subscribers from a CSV file: the database shell around course.audience.csv_rows.

The whole import is one transaction, so a file is imported entirely or not at all:

1. Every row is checked in Python (csv_rows) and written to a temporary staging table: with COPY
   on PostgreSQL, in batches of INSERTs on SQLite. Its address's keyed hash is computed here too.
2. One set-based merge then decides every row at once, in SQL: a repeated address is merged into
   its last line (duplicate); an address on the suppression list, or of a subscriber who bounced,
   complained, unsubscribed or was erased, is skipped (suppressed); a known subscriber whose name,
   time zone or tags change is updated, else unchanged; a new address is inserted (accepted),
   pending in opt-in mode and active in confirmed mode.
3. Tags are added, and with a course: opt-in mode gives each reader not yet in it a pending
   enrollment and a confirmation mail through the ledger (bulk priority: throttled like any other
   mail, and no lesson before confirmation); confirmed mode enrolls them at once.
4. The per-row report (line, address, outcome, reason) goes into subscriber_import_rows and the
   counts onto the import's row."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from course.audience.csv_rows import CheckedRow, ImportFileError, ReadProgress, read_rows
from course.audience.enrollment import enroll
from course.audience.suppression import address_hash
from course.ledger import add_account_mail, add_account_mails
from course.models import (
    Course,
    DeliveryPriority,
    EnrollmentStatus,
    ImportRowOutcome,
    ImportStatus,
    Subscriber,
    SubscriberImport,
    SubscriberImportRow,
    SubscriberStatus,
)

MODES = ("opt-in", "confirmed")
SOURCES = ("cli", "web", "api")
# Statuses an import never brings back: the person left, or their address must not be mailed.
SUPPRESSED_STATUSES = (
    SubscriberStatus.BOUNCED, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.ERASED, "complained",
)  # fmt: skip
STAGING_BATCH = 5000
REPORT_COLUMNS = ("line", "email", "outcome", "reason")


@dataclass(frozen=True)
class ImportOptions:
    mode: str = "opt-in"
    course_slug: str | None = None
    tag: str | None = None
    consent: str | None = None
    encoding: str | None = None
    delimiter: str | None = None


def check_options(session: Session, options: ImportOptions) -> Course | None:
    """The course the options name, or ImportFileError saying what is missing."""
    if options.mode not in MODES:
        raise ImportFileError(f"unknown mode {options.mode!r}: opt-in or confirmed")
    if options.mode == "confirmed" and not (options.consent or "").strip():
        raise ImportFileError(
            "confirmed mode needs a consent statement (--consent): say how these people agreed to receive mail"
        )
    course = None
    if options.course_slug:
        course = session.scalars(select(Course).where(Course.slug == options.course_slug)).first()
        if course is None:
            raise ImportFileError(f"unknown course {options.course_slug!r}")
    elif options.mode == "opt-in":
        raise ImportFileError(
            "opt-in mode needs a course (--course SLUG): the confirmation mail asks to join it; "
            "or use --mode confirmed with --consent"
        )
    if options.tag is not None and not (0 < len(options.tag.strip()) <= 64):
        raise ImportFileError(f"the tag {options.tag!r} must be 1 to 64 characters")
    return course


def start_import(
    session: Session, *, filename: str, options: ImportOptions, source: str, actor: str, admin_id: int | None, now: datetime
) -> SubscriberImport:
    """The import's row (queued), after checking its options: who, when, and the consent statement."""
    course = check_options(session, options)
    record = SubscriberImport(
        created_at=now, admin_id=admin_id, actor=actor, source=source, filename=filename[:255], mode=options.mode,
        course_id=course.id if course else None, tag=options.tag.strip() if options.tag else None,
        consent=(options.consent or "").strip() or None, status=ImportStatus.QUEUED, total_rows=0, counts={},
        unknown_columns=[],
    )  # fmt: skip
    session.add(record)
    session.flush()
    return record


def run_import(
    session: Session,
    record: SubscriberImport,
    path: Path,
    *,
    options: ImportOptions,
    secret: str,
    now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Import the file at `path` for `record` inside the caller's transaction (see the module's
    steps). Returns the counts per outcome; ImportFileError for a malformed file (the caller rolls
    back). `on_progress(bytes_read, file_size)` is called while the rows are read."""
    course = check_options(session, options)
    size = path.stat().st_size
    progress = ReadProgress()
    extra_tags = (options.tag.strip(),) if options.tag else ()
    with path.open("rb") as raw:
        rows = read_rows(raw, encoding=options.encoding, delimiter=options.delimiter, extra_tags=extra_tags, progress=progress)
        _create_staging(session)
        _fill_staging(session, rows, secret=secret, on_progress=lambda: on_progress and on_progress(progress.bytes_read, size))
    if progress.rows == 0:
        raise ImportFileError("the file has a header but no rows")
    status = SubscriberStatus.ACTIVE if options.mode == "confirmed" else SubscriberStatus.PENDING
    _merge(session, status=status, now=now)
    if course is not None:
        _enroll(session, course, mode=options.mode, now=now)
    session.execute(
        text(
            "INSERT INTO subscriber_import_rows (import_id, line, email, outcome, reason) "
            "SELECT :import_id, line, email, outcome, reason FROM import_staging"
        ),
        {"import_id": record.id},
    )
    counts = {outcome.value: 0 for outcome in ImportRowOutcome}
    counts.update({outcome: count for outcome, count in session.execute(text("SELECT outcome, count(*) FROM import_staging GROUP BY outcome"))})
    session.execute(text("DROP TABLE import_staging"))
    session.execute(text("DROP TABLE import_staging_tags"))
    record.total_rows = progress.rows
    record.counts = counts
    record.unknown_columns = progress.shape.unknown_columns if progress.shape else []
    return counts


def _create_staging(session: Session) -> None:
    session.execute(text("DROP TABLE IF EXISTS import_staging"))
    session.execute(text("DROP TABLE IF EXISTS import_staging_tags"))
    moment = "timestamptz" if session.get_bind().dialect.name == "postgresql" else "timestamp"
    session.execute(
        text(
            "CREATE TEMPORARY TABLE import_staging (line integer PRIMARY KEY, email text NOT NULL, email_key text, "
            f"address_hash text, name text, timezone text, created_at {moment}, outcome text, reason text NOT NULL, "
            "subscriber_id bigint)"
        )
    )
    session.execute(text("CREATE TEMPORARY TABLE import_staging_tags (line integer NOT NULL, tag text NOT NULL)"))


def _staging_values(rows: Iterable[CheckedRow], secret: str) -> Iterator[tuple[tuple[Any, ...], list[tuple[int, str]]]]:
    for row in rows:
        if row.problem:
            yield (row.line, row.email, None, None, None, None, None, ImportRowOutcome.REJECTED.value, row.problem), []
        else:
            values = (
                row.line, row.email, row.email_key, address_hash(secret, row.email), row.name, row.timezone,
                row.created_at, None, "",
            )  # fmt: skip
            yield values, [(row.line, tag) for tag in row.tags]


STAGING_COLUMNS = "line, email, email_key, address_hash, name, timezone, created_at, outcome, reason"


def _fill_staging(session: Session, rows: Iterable[CheckedRow], *, secret: str, on_progress: Callable[[], Any]) -> None:
    staged = _staging_values(rows, secret)
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        tags: list[tuple[int, str]] = []
        with cursor.copy(f"COPY import_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:
            for count, (values, row_tags) in enumerate(staged):
                copy.write_row(values)
                tags.extend(row_tags)
                if count % 10000 == 0:
                    on_progress()
        with cursor.copy("COPY import_staging_tags (line, tag) FROM STDIN") as copy:
            for tag_row in tags:
                copy.write_row(tag_row)
        on_progress()
        session.execute(text("ANALYZE import_staging"))
    else:
        names = [name.strip() for name in STAGING_COLUMNS.split(",")]
        statement = text(f"INSERT INTO import_staging ({STAGING_COLUMNS}) VALUES ({', '.join(':' + n for n in names)})")
        batch: list[dict[str, Any]] = []
        tag_batch: list[dict[str, Any]] = []
        for values, row_tags in staged:
            row = dict(zip(names, values, strict=True))
            if row["created_at"] is not None:
                row["created_at"] = row["created_at"].replace(tzinfo=None)
            batch.append(row)
            tag_batch.extend({"line": line, "tag": tag} for line, tag in row_tags)
            if len(batch) >= STAGING_BATCH:
                session.execute(statement, batch)
                batch.clear()
                on_progress()
        if batch:
            session.execute(statement, batch)
        if tag_batch:
            session.execute(text("INSERT INTO import_staging_tags (line, tag) VALUES (:line, :tag)"), tag_batch)
        on_progress()
    session.execute(text("CREATE INDEX ix_import_staging_key ON import_staging (email_key)"))
    session.execute(text("CREATE INDEX ix_import_staging_tags_line ON import_staging_tags (line)"))


def _merge(session: Session, *, status: SubscriberStatus, now: datetime) -> None:
    """The set-based merge (the module's step 2): a handful of statements over the whole file."""
    postgres = session.get_bind().dialect.name == "postgresql"
    run = lambda sql, **params: session.execute(text(sql), params)  # noqa: E731
    # A repeated address: every line but the last is a duplicate merged into the last.
    run(
        "UPDATE import_staging SET outcome = 'duplicate', reason = 'the same address as line ' || kept.last_line "
        "FROM (SELECT line AS dup_line, max(line) OVER (PARTITION BY email_key) AS last_line FROM import_staging "
        "WHERE outcome IS NULL) AS kept WHERE import_staging.line = kept.dup_line AND kept.dup_line < kept.last_line"
    )
    # Merged: what the kept line leaves empty comes from the latest duplicate that gives it.
    for column in ("name", "timezone"):
        run(
            f"UPDATE import_staging SET {column} = (SELECT d.{column} FROM import_staging AS d "
            "WHERE d.email_key = import_staging.email_key AND d.outcome = 'duplicate' "
            f"AND d.{column} <> '' ORDER BY d.line DESC LIMIT 1) "
            f"WHERE outcome IS NULL AND {column} = '' AND email_key IN "
            f"(SELECT email_key FROM import_staging WHERE outcome = 'duplicate' AND {column} <> '')"
        )
    run(
        "UPDATE import_staging SET subscriber_id = s.id FROM subscribers AS s "
        "WHERE lower(s.email) = import_staging.email_key AND import_staging.outcome IS NULL"
    )
    run(
        "UPDATE import_staging SET outcome = 'suppressed', reason = 'on the suppression list (' || sp.reason || ')' "
        "FROM suppressions AS sp WHERE sp.address_hash = import_staging.address_hash AND import_staging.outcome IS NULL"
    )
    run(
        "UPDATE import_staging SET outcome = 'suppressed', reason = 'the subscriber is ' || s.status "
        "FROM subscribers AS s WHERE s.id = import_staging.subscriber_id AND import_staging.outcome IS NULL "
        f"AND s.status IN ({', '.join(repr(str(state)) for state in SUPPRESSED_STATUSES)})"
    )
    # Known subscribers: a new name or zone, or a tag they do not have yet, is an update.
    new_tag = (
        "EXISTS (SELECT 1 FROM import_staging_tags AS t WHERE t.line = import_staging.line AND NOT EXISTS "
        "(SELECT 1 FROM subscriber_tags AS st WHERE st.subscriber_id = import_staging.subscriber_id AND st.tag = t.tag))"
    )
    run(
        "UPDATE import_staging SET outcome = 'updated', reason = 'new ' || trim("
        "CASE WHEN import_staging.name <> '' AND import_staging.name <> s.name THEN 'name ' ELSE '' END || "
        "CASE WHEN import_staging.timezone <> '' AND import_staging.timezone <> s.timezone THEN 'time zone ' ELSE '' END || "
        f"CASE WHEN {new_tag} THEN 'tags' ELSE '' END) "
        "FROM subscribers AS s WHERE s.id = import_staging.subscriber_id AND import_staging.outcome IS NULL AND ("
        "(import_staging.name <> '' AND import_staging.name <> s.name) OR "
        f"(import_staging.timezone <> '' AND import_staging.timezone <> s.timezone) OR {new_tag})"
    )
    run("UPDATE import_staging SET outcome = 'unchanged' WHERE outcome IS NULL AND subscriber_id IS NOT NULL")
    run(
        "UPDATE subscribers SET "
        "name = CASE WHEN st.name <> '' THEN st.name ELSE subscribers.name END, "
        "timezone = CASE WHEN st.timezone <> '' THEN st.timezone ELSE subscribers.timezone END "
        "FROM import_staging AS st WHERE st.subscriber_id = subscribers.id AND st.outcome = 'updated'"
    )
    # New addresses. ON CONFLICT: a signup of the same address meanwhile wins, and the row is then known.
    created = "coalesce(created_at, :now)" if postgres else "coalesce(created_at, :naive_now)"
    confirmed = ":now" if status == SubscriberStatus.ACTIVE else "NULL"
    if not postgres:
        confirmed = ":naive_now" if status == SubscriberStatus.ACTIVE else "NULL"
    run(
        "INSERT INTO subscribers (email, name, timezone, status, created_at, confirmed_at) "
        f"SELECT email, name, CASE WHEN timezone <> '' THEN timezone ELSE 'UTC' END, :status, {created}, {confirmed} "
        "FROM import_staging WHERE outcome IS NULL ORDER BY line ON CONFLICT DO NOTHING",
        status=str(status), now=now, naive_now=now.replace(tzinfo=None),
    )  # fmt: skip
    run(
        "UPDATE import_staging SET outcome = 'accepted', subscriber_id = s.id FROM subscribers AS s "
        "WHERE lower(s.email) = import_staging.email_key AND import_staging.outcome IS NULL"
    )
    # Duplicates carry their tags to the line they were merged into.
    run(
        "UPDATE import_staging SET subscriber_id = kept.subscriber_id FROM import_staging AS kept "
        "WHERE import_staging.outcome = 'duplicate' AND kept.email_key = import_staging.email_key "
        "AND kept.outcome IN ('accepted', 'updated', 'unchanged')"
    )
    run(
        "INSERT INTO subscriber_tags (subscriber_id, tag) SELECT DISTINCT s.subscriber_id, t.tag "
        "FROM import_staging_tags AS t JOIN import_staging AS s ON s.line = t.line "
        "WHERE s.subscriber_id IS NOT NULL AND s.outcome IN ('accepted', 'updated', 'unchanged', 'duplicate') "
        "ON CONFLICT DO NOTHING"
    )


def _enroll(session: Session, course: Course, *, mode: str, now: datetime) -> None:
    """Readers of the file not yet in `course` join it: pending with a confirmation mail (opt-in),
    or at once (confirmed). Someone who left or finished the course is not enrolled again."""
    subscriber_ids = session.scalars(
        text(
            "SELECT st.subscriber_id FROM import_staging AS st WHERE st.outcome IN ('accepted', 'updated', 'unchanged') "
            "AND NOT EXISTS (SELECT 1 FROM enrollments AS e WHERE e.subscriber_id = st.subscriber_id AND e.course_id = :course) "
            "ORDER BY st.line"
        ),
        {"course": course.id},
    ).all()
    if not subscriber_ids:
        return
    if mode == "confirmed":
        for subscriber_id in subscriber_ids:
            subscriber = session.get(Subscriber, subscriber_id)
            assert subscriber is not None
            if subscriber.status == SubscriberStatus.PENDING:
                subscriber.status, subscriber.confirmed_at = SubscriberStatus.ACTIVE, now
            enroll(session, subscriber, course, now=now)
        return
    pairs: list[tuple[int, int]] = []
    statement = insert(_enrollments()).returning(_enrollments().c.id, _enrollments().c.subscriber_id)
    for start in range(0, len(subscriber_ids), STAGING_BATCH):
        chunk = subscriber_ids[start : start + STAGING_BATCH]
        values = [
            {"subscriber_id": sid, "course_id": course.id, "status": str(EnrollmentStatus.PENDING), "enrolled_at": now} for sid in chunk
        ]
        pairs.extend((subscriber_id, enrollment_id) for enrollment_id, subscriber_id in session.execute(statement, values))
    if session.get_bind().dialect.name == "postgresql":
        add_account_mails(session, pairs, template="confirm", now=now, priority=DeliveryPriority.BULK)
    else:
        for subscriber_id, enrollment_id in pairs:
            add_account_mail(
                session, subscriber_id=subscriber_id, enrollment_id=enrollment_id, template="confirm", now=now,
                priority=DeliveryPriority.BULK,
            )  # fmt: skip


def _enrollments() -> Any:
    from course.models import Enrollment

    return Enrollment.__table__


def report_rows(session: Session, import_id: int) -> Iterator[SubscriberImportRow]:
    """The per-row report in line order, read in chunks (a million rows in constant memory)."""
    last_line = 0
    while True:
        chunk = session.scalars(
            select(SubscriberImportRow)
            .where(SubscriberImportRow.import_id == import_id, SubscriberImportRow.line > last_line)
            .order_by(SubscriberImportRow.line)
            .limit(STAGING_BATCH)
        ).all()
        if not chunk:
            return
        yield from chunk
        last_line = chunk[-1].line


def report_csv(rows: Iterable[SubscriberImportRow]) -> Iterator[str]:
    """The report as CSV text, a chunk per few hundred rows; cells neutralised like any export."""
    from course.audience.export import neutralise

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    for count, row in enumerate(rows, 1):
        writer.writerow((row.line, neutralise(row.email), row.outcome, neutralise(row.reason)))
        if count % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def summary_line(counts: dict[str, int]) -> str:
    """What `course subscribers import` prints, and the admin page shows."""
    return (
        f"{counts.get('accepted', 0):,} accepted, {counts.get('updated', 0):,} updated, "
        f"{counts.get('unchanged', 0):,} unchanged, {counts.get('rejected', 0):,} rejected, "
        f"{counts.get('duplicate', 0):,} duplicates merged, {counts.get('suppressed', 0):,} suppressed"
    )


def mark(session: Session, import_id: int, **values: Any) -> None:
    session.execute(update(SubscriberImport).where(SubscriberImport.id == import_id).values(**values))


def forget_report(session: Session, import_id: int) -> None:
    session.execute(delete(SubscriberImportRow).where(SubscriberImportRow.import_id == import_id))


def process(
    sessions: Any,
    import_id: int,
    path: Path,
    *,
    options: ImportOptions,
    secret: str,
    now: datetime,
    on_progress: Callable[[int, int], None] | None = None,
) -> SubscriberImport:
    """Run a queued import to its end, as the admin's upload task does: the rows in one
    transaction, the import's state and progress (a share of the file read) in short ones beside
    it, so the page can follow. A malformed file leaves the import failed, with its message, and
    nothing imported."""
    with sessions.begin() as session:
        mark(session, import_id, status=ImportStatus.RUNNING, counts={"percent": 0})
    last_percent = [0]

    def progressed(done: int, total: int) -> None:
        if on_progress:
            on_progress(done, total)
        percent = min(99, done * 100 // max(total, 1))
        if percent >= last_percent[0] + 5:
            last_percent[0] = percent
            with sessions.begin() as progress_session:
                mark(progress_session, import_id, counts={"percent": percent})

    try:
        with sessions.begin() as session:
            record = session.get(SubscriberImport, import_id)
            assert record is not None, "queued by start_import"
            counts = run_import(session, record, path, options=options, secret=secret, now=now, on_progress=progressed)
            record.status, record.finished_at, record.counts = ImportStatus.DONE, now, counts
    except ImportFileError as exc:
        with sessions.begin() as session:
            mark(session, import_id, status=ImportStatus.FAILED, error=str(exc), finished_at=now, counts={})
    with sessions.begin() as session:
        record = session.get(SubscriberImport, import_id)
        assert record is not None
        session.expunge(record)
        return record
