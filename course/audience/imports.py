"""Importing subscribers from a CSV file: the database shell around course.audience.csv_rows.

The whole import is one transaction, so a file is imported entirely or not at all:

1. Every row is checked in Python (csv_rows) and written to a temporary staging table: with COPY
   on PostgreSQL, in batches of INSERTs on SQLite. Its address's keyed hash is computed here too.
2. One set-based merge then decides every row at once, in SQL: a repeated address is merged into
   its last line (duplicate); an address on the suppression list, or of a subscriber who bounced,
   complained, unsubscribed or was erased, is skipped (suppressed); a known subscriber whose name,
   time zone, language or tags change is updated, else unchanged; a new address is inserted (accepted),
   pending in opt-in mode and active in confirmed mode.
3. Tags are added, and with a course: opt-in mode gives each reader not yet in it a pending
   enrollment and a confirmation mail through the ledger (bulk priority: throttled like any other
   mail, and no lesson before confirmation); confirmed mode enrolls them at once.
4. The per-row report (line, address, outcome, reason) goes into subscriber_import_rows and the
   counts onto the import's row."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from course.audience.csv_rows import CheckedRow, ImportFileError, ReadProgress, read_rows
from course.audience.enrollment import enroll
from course.audience.suppression import address_hasher
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
# The import's temporary tables, made in its transaction and dropped at its end.
TEMPORARY_TABLES = ("import_staging", "import_staging_tags", "import_repeated", "import_decided")
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
    if options.tag is not None and not (0 < len(options.tag.strip()) <= 64 and options.tag.isprintable()):
        raise ImportFileError(f"the tag {options.tag!r} must be 1 to 64 printable characters")
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
    extra_tag = " ".join(options.tag.split()) if options.tag else None
    with path.open("rb") as raw:
        rows = read_rows(raw, encoding=options.encoding, delimiter=options.delimiter, progress=progress)
        _create_staging(session)
        _fill_staging(session, rows, secret=secret, on_progress=lambda: on_progress and on_progress(progress.bytes_read, size))
    if progress.rows == 0:
        raise ImportFileError("the file has a header but no rows")
    status = SubscriberStatus.ACTIVE if options.mode == "confirmed" else SubscriberStatus.PENDING
    _merge(session, status=status, now=now, extra_tag=extra_tag, source=f"import:{record.id}")
    if course is not None:
        _enroll(session, course, mode=options.mode, now=now)
    session.execute(
        text(
            "INSERT INTO subscriber_import_rows (import_id, line, email, outcome, reason) "
            "SELECT :import_id, line, email, outcome, reason FROM import_decided"
        ),
        {"import_id": record.id},
    )
    counts = {outcome.value: 0 for outcome in ImportRowOutcome}
    counts.update({outcome: count for outcome, count in session.execute(text("SELECT outcome, count(*) FROM import_decided GROUP BY outcome"))})
    for table in TEMPORARY_TABLES:
        session.execute(text(f"DROP TABLE {table}"))
    record.total_rows = progress.rows
    record.counts = counts
    record.unknown_columns = progress.shape.unknown_columns if progress.shape else []
    return counts


def _create_staging(session: Session) -> None:
    for table in TEMPORARY_TABLES:
        session.execute(text(f"DROP TABLE IF EXISTS {table}"))
    moment = "timestamptz" if session.get_bind().dialect.name == "postgresql" else "timestamp"
    session.execute(
        text(
            "CREATE TEMPORARY TABLE import_staging (line integer NOT NULL, email text NOT NULL, email_key text, "
            f"address_hash text, name text, timezone text, language text, created_at {moment}, outcome text, reason text NOT NULL, "
            "subscriber_id bigint)"
        )
    )
    session.execute(text("CREATE TEMPORARY TABLE import_staging_tags (line integer NOT NULL, tag text NOT NULL)"))


def _staging_values(rows: Iterable[CheckedRow], secret: str) -> Iterator[tuple[tuple[Any, ...], list[tuple[int, str]]]]:
    address_hash = address_hasher(secret)
    for row in rows:
        if row.problem:
            yield (row.line, row.email, None, None, None, None, None, None, ImportRowOutcome.REJECTED.value, row.problem), []
        else:
            values = (
                row.line, row.email, row.email_key, address_hash(row.email), row.name, row.timezone, row.language,
                row.created_at, None, "",
            )  # fmt: skip
            yield values, [(row.line, tag) for tag in row.tags]


STAGING_COLUMNS = "line, email, email_key, address_hash, name, timezone, language, created_at, outcome, reason"
# COPY's text format: fields split by tabs, NULL as \N, and in a field a backslash, tab, line feed
# or carriage return escaped.
COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_isoformat = lru_cache(maxsize=4096)(datetime.isoformat)  # a list's signup dates repeat


def _copy_field(value: Any) -> str:
    if value is None:
        return COPY_NULL
    return (value.isoformat() if isinstance(value, datetime) else str(value)).translate(_COPY_ESCAPES)


def _staging_lines(rows: Iterable[CheckedRow], secret: str) -> Iterator[tuple[str, list[tuple[int, str]]]]:
    """_staging_values as lines of COPY's text format. A checked row's only free text is its
    address and name (its zone, language and hash are known words, its date a moment), so it is
    written by one f-string when neither holds a character to escape: for a million rows, a
    second less than psycopg's write_row. Any other row goes field by field."""
    for values, tags in _staging_values(rows, secret):
        line, email, email_key, hashed, name, zone, language, created, outcome, _ = values
        if outcome is None and not _NEEDS_ESCAPE.search(f"{email}{name}"):
            moment = COPY_NULL if created is None else _isoformat(created)
            yield f"{line}\t{email}\t{email_key}\t{hashed}\t{name}\t{zone}\t{language}\t{moment}\t{COPY_NULL}\t\n", tags
        else:
            yield "\t".join(map(_copy_field, values)) + "\n", tags


def _fill_staging(session: Session, rows: Iterable[CheckedRow], *, secret: str, on_progress: Callable[[], Any]) -> None:
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        tags: list[tuple[int, str]] = []
        lines: list[str] = []
        with cursor.copy(f"COPY import_staging ({STAGING_COLUMNS}) FROM STDIN") as copy:
            for line, row_tags in _staging_lines(rows, secret):
                lines.append(line)
                tags.extend(row_tags)
                if len(lines) == 10000:
                    copy.write("".join(lines))
                    lines.clear()
                    on_progress()
            copy.write("".join(lines))
        with cursor.copy("COPY import_staging_tags (line, tag) FROM STDIN") as copy:
            for tag_row in tags:
                copy.write_row(tag_row)
        on_progress()
    else:
        staged = _staging_values(rows, secret)
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
    # The indexes are built once the rows are in: faster than keeping them up to date row by row.
    session.execute(text("CREATE UNIQUE INDEX ix_import_staging_line ON import_staging (line)"))
    session.execute(text("CREATE INDEX ix_import_staging_key ON import_staging (email_key)"))
    session.execute(text("CREATE INDEX ix_import_staging_tags_line ON import_staging_tags (line)"))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE import_staging"))
        session.execute(text("ANALYZE import_staging_tags"))


def _merge(session: Session, *, status: SubscriberStatus, now: datetime, extra_tag: str | None, source: str) -> None:
    """The set-based merge (the module's step 2). At a million rows every pass that rewrites the
    staging table costs seconds, so the outcome of every row is decided by one query into a new
    table (import_decided); the statements after it each touch only the rows they concern."""
    postgres = session.get_bind().dialect.name == "postgresql"
    run = lambda sql, **params: session.execute(text(sql), params)  # noqa: E731
    if postgres:
        # The decision's estimated cost (its tag look-ups, which a new address never runs) makes
        # PostgreSQL compile it to machine code: half a second spent before the first row.
        run("SET LOCAL jit = off")
    # The addresses written on more than one line, each with its last line (the one kept): a few
    # rows, which the steps below read instead of grouping the million staged rows again.
    run(
        "CREATE TEMPORARY TABLE import_repeated AS SELECT email_key, max(line) AS last_line FROM import_staging "
        "WHERE outcome IS NULL GROUP BY email_key HAVING count(*) > 1"
    )
    # Merged duplicates: what a line leaves empty comes from the latest earlier line of the same
    # address that gives it (so the kept, last line gets it). Touches only the repeated addresses.
    columns = ("name", "timezone", "language")
    earlier = (
        "coalesce((SELECT d.{0} FROM import_staging AS d WHERE d.email_key = import_staging.email_key AND d.outcome IS NULL "
        "AND d.line < import_staging.line AND d.{0} <> '' ORDER BY d.line DESC LIMIT 1), '')"
    )
    run(
        "UPDATE import_staging SET "
        + ", ".join(f"{column} = CASE WHEN {column} = '' THEN {earlier.format(column)} ELSE {column} END" for column in columns)
        + " WHERE outcome IS NULL AND (" + " OR ".join(f"{column} = ''" for column in columns) + ") "
        "AND email_key IN (SELECT email_key FROM import_repeated)"
    )
    left = ", ".join(repr(str(state)) for state in SUPPRESSED_STATUSES)
    changed_name = "(st.name <> '' AND st.name <> s.name)"
    changed_zone = "(st.timezone <> '' AND st.timezone <> s.timezone)"
    changed_language = "(st.language <> '' AND (s.language IS NULL OR st.language <> s.language))"
    new_tag = (
        "EXISTS (SELECT 1 FROM import_staging_tags AS t WHERE t.line = st.line AND NOT EXISTS "
        "(SELECT 1 FROM subscriber_tags AS x WHERE x.subscriber_id = s.id AND x.tag = t.tag))"
    )
    if extra_tag is not None:
        new_tag = f"({new_tag} OR NOT EXISTS (SELECT 1 FROM subscriber_tags AS x WHERE x.subscriber_id = s.id AND x.tag = :extra_tag))"
    # Every row's outcome, in the order the report gives them: rejected by its checks; a
    # duplicate of a later line; on the suppression list; new (accepted); a subscriber who left
    # (suppressed); updated; unchanged. New rows take their subscriber's id from the sequence
    # here on PostgreSQL, so no second pass has to look them up by address; in address order, so
    # the INSERT below appends to the primary key and to the address's index alike.
    new_id = "nextval(pg_get_serial_sequence('subscribers', 'id'))" if postgres else "NULL"
    run(
        "CREATE TEMPORARY TABLE import_decided AS "
        "SELECT line, email, email_key, name, timezone, language, created_at, outcome, reason, "
        f"CASE WHEN outcome = 'accepted' THEN {new_id} ELSE known_id END AS subscriber_id, "
        "outcome = 'accepted' AS new_subscriber FROM ("
        "SELECT st.line, st.email, st.email_key, st.name, st.timezone, st.language, st.created_at, CASE "
        "WHEN st.outcome IS NOT NULL THEN st.outcome "
        "WHEN st.line < kept.last_line THEN 'duplicate' "
        "WHEN sp.reason IS NOT NULL THEN 'suppressed' "
        "WHEN s.id IS NULL THEN 'accepted' "
        f"WHEN s.status IN ({left}) THEN 'suppressed' "
        f"WHEN {changed_name} OR {changed_zone} OR {changed_language} OR {new_tag} THEN 'updated' "
        "ELSE 'unchanged' END AS outcome, CASE "
        "WHEN st.outcome IS NOT NULL THEN st.reason "
        "WHEN st.line < kept.last_line THEN 'the same address as line ' || kept.last_line "
        "WHEN sp.reason IS NOT NULL THEN 'on the suppression list (' || sp.reason || ')' "
        f"WHEN s.status IN ({left}) THEN 'the subscriber is ' || s.status "
        "ELSE '' END AS reason, "
        "CASE WHEN st.outcome IS NULL AND (kept.last_line IS NULL OR st.line = kept.last_line) AND sp.reason IS NULL "
        "THEN s.id END AS known_id "
        "FROM import_staging AS st "
        "LEFT JOIN import_repeated AS kept ON kept.email_key = st.email_key AND st.outcome IS NULL "
        "LEFT JOIN suppressions AS sp ON sp.address_hash = st.address_hash AND st.outcome IS NULL "
        "LEFT JOIN subscribers AS s ON lower(s.email) = st.email_key AND st.outcome IS NULL "
        "ORDER BY st.email_key"
        # OFFSET 0 keeps PostgreSQL from inlining the inner query, which would evaluate the outcome
        # (and its tag look-ups) twice per row: once for the column, once for the id's CASE.
        f"{' OFFSET 0' if postgres else ''}) AS decided",
        extra_tag=extra_tag,
    )  # fmt: skip
    if postgres:
        run("ANALYZE import_decided")
    # What changed, said on the (few) updated rows, before the subscribers and their tags change.
    run(
        "UPDATE import_decided SET reason = 'new ' || trim("
        f"CASE WHEN {changed_name} THEN 'name ' ELSE '' END || CASE WHEN {changed_zone} THEN 'time zone ' ELSE '' END || "
        f"CASE WHEN {changed_language} THEN 'language ' ELSE '' END || "
        f"CASE WHEN {new_tag} THEN 'tags' ELSE '' END) "
        "FROM import_decided AS st JOIN subscribers AS s ON s.id = st.subscriber_id "
        "WHERE import_decided.line = st.line AND st.outcome = 'updated'",
        extra_tag=extra_tag,
    )  # fmt: skip
    run(
        "UPDATE subscribers SET "
        "name = CASE WHEN st.name <> '' THEN st.name ELSE subscribers.name END, "
        "timezone = CASE WHEN st.timezone <> '' THEN st.timezone ELSE subscribers.timezone END, "
        "language = CASE WHEN st.language <> '' THEN st.language ELSE subscribers.language END "
        "FROM import_decided AS st WHERE st.subscriber_id = subscribers.id AND st.outcome = 'updated'"
    )
    all_new = _insert_new(session, status=status, now=now, postgres=postgres, source=source)
    # Duplicates carry their tags to the line they were merged into.
    run(
        "UPDATE import_decided SET subscriber_id = kept.subscriber_id, new_subscriber = kept.new_subscriber "
        "FROM import_decided AS kept WHERE import_decided.outcome = 'duplicate' AND kept.email_key = import_decided.email_key "
        "AND kept.outcome IN ('accepted', 'updated', 'unchanged')"
    )
    # The tags. A subscriber this import created has none yet, so theirs go in without a conflict
    # check (each tag once: the import's own first, then the file's others); when a signup took an
    # accepted address meanwhile (all_new false), that row's subscriber may have tags, and every
    # insert checks. Known subscribers' tags are added where missing.
    fresh = "" if all_new else " ON CONFLICT DO NOTHING"
    if extra_tag is not None:  # the import's own tag (--tag): every reader of the file gets it
        run(
            f"INSERT INTO subscriber_tags (subscriber_id, tag) SELECT subscriber_id, :extra_tag FROM import_decided WHERE outcome = 'accepted'{fresh}",
            extra_tag=extra_tag,
        )
        run(
            "INSERT INTO subscriber_tags (subscriber_id, tag) SELECT subscriber_id, :extra_tag FROM import_decided "
            "WHERE outcome IN ('updated', 'unchanged') ON CONFLICT DO NOTHING",
            extra_tag=extra_tag,
        )
    file_tags = (
        "INSERT INTO subscriber_tags (subscriber_id, tag) SELECT DISTINCT d.subscriber_id, t.tag "
        "FROM import_staging_tags AS t JOIN import_decided AS d ON d.line = t.line "
        "WHERE d.subscriber_id IS NOT NULL AND d.outcome IN ('accepted', 'updated', 'unchanged', 'duplicate') "
    )
    # In subscriber order: the tags' primary key and the foreign key's look-ups then walk their
    # indexes once instead of jumping about them (the DISTINCT leaves its rows in hash order).
    own = " AND t.tag <> :extra_tag" if extra_tag is not None else ""
    run(file_tags + f"AND d.new_subscriber{own} ORDER BY d.subscriber_id{fresh}", extra_tag=extra_tag)
    run(file_tags + "AND NOT d.new_subscriber ORDER BY d.subscriber_id ON CONFLICT DO NOTHING")


def _insert_new(session: Session, *, status: SubscriberStatus, now: datetime, postgres: bool, source: str | None = None) -> bool:
    """The accepted rows become subscribers. ON CONFLICT: a signup of the same address meanwhile
    wins, and the row then belongs to that subscriber. True when every accepted row became a new
    subscriber (no signup took one of their addresses)."""
    confirmed = status == SubscriberStatus.ACTIVE
    if not postgres:
        now = now.replace(tzinfo=None)
    values = (
        "SELECT {id}email, name, CASE WHEN timezone <> '' THEN timezone ELSE 'UTC' END, :status, coalesce(created_at, :now), "
        f"{':now' if confirmed else 'NULL'}, NULLIF(language, ''), :source FROM import_decided WHERE outcome = 'accepted' "
        # PostgreSQL: as the decided table holds them, which is the order of the ids the decision
        # gave (the addresses' order), so the primary key and the address's index both grow at
        # their end without a sort of a million rows first (a temporary table is never scanned
        # from the middle). SQLite numbers them here, in the file's order.
        f"{'' if postgres else 'ORDER BY line '}ON CONFLICT DO NOTHING"
    )
    columns = "email, name, timezone, status, created_at, confirmed_at, language, source"
    parameters = {"status": str(status), "now": now, "source": source}
    if postgres:
        statement = f"INSERT INTO subscribers (id, {columns}) " + values.format(id="subscriber_id, ")
        lookup = "s.id <> import_decided.subscriber_id"  # the few rows a concurrent signup took
    else:
        statement = f"INSERT INTO subscribers ({columns}) " + values.format(id="")
        lookup = "import_decided.subscriber_id IS NULL"
    inserted = session.execute(text(statement), parameters).rowcount  # type: ignore[attr-defined]
    accepted = session.scalar(text("SELECT count(*) FROM import_decided WHERE outcome = 'accepted'"))
    if postgres and inserted == accepted:
        return True
    session.execute(
        text(
            "UPDATE import_decided SET subscriber_id = s.id FROM subscribers AS s WHERE import_decided.outcome = 'accepted' "
            f"AND lower(s.email) = import_decided.email_key AND {lookup}"
        )
    )
    return inserted == accepted


def _enroll(session: Session, course: Course, *, mode: str, now: datetime) -> None:
    """Readers of the file not yet in `course` join it: pending with a confirmation mail (opt-in),
    or at once (confirmed). Someone who left or finished the course is not enrolled again."""
    subscriber_ids = session.scalars(
        text(
            "SELECT st.subscriber_id FROM import_decided AS st WHERE st.outcome IN ('accepted', 'updated', 'unchanged') "
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
