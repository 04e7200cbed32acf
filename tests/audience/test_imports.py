"""CSV import on PostgreSQL (COPY + set-based merge) and SQLite: outcomes per row, suppression,
opt-in confirmations through the ledger, hostile files, and all-or-nothing."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.audience.csv_rows import ImportFileError, detect_encoding
from course.audience.enrollment import get_or_create_subscriber
from course.audience.export import ExportFilter, export_csv
from course.audience.imports import ImportOptions, report_csv, report_rows, run_import, start_import
from course.audience.suppression import suppress_address
from course.clock import ManualClock
from course.models import (
    Delivery,
    DeliveryPriority,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberImport,
    SubscriberStatus,
    SubscriberTag,
    SuppressionReason,
)
from tests.support.pipeline_fixtures import make_course

SECRET = "test-secret"


def _import(
    sessions: sessionmaker[Session], tmp_path: Path, content: bytes | str, clock: ManualClock, **options: str
) -> tuple[int, dict[str, int]]:
    path = tmp_path / "list.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    chosen = ImportOptions(**options)  # type: ignore[arg-type]
    with sessions.begin() as session:
        record = start_import(session, filename=path.name, options=chosen, source="cli", actor="cli", admin_id=None, now=clock.now())
        counts = run_import(session, record, path, options=chosen, secret=SECRET, now=clock.now())
        return record.id, counts


def _report(sessions: sessionmaker[Session], import_id: int) -> dict[int, tuple[str, str, str]]:
    with sessions.begin() as session:
        return {row.line: (row.email, row.outcome, row.reason) for row in report_rows(session, import_id)}


def test_outcomes_per_row(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    with sessions.begin() as session:
        make_course(session, now=clock.now())
        known = get_or_create_subscriber(session, "known@example.org", name="Kim", now=clock.now())
        same = get_or_create_subscriber(session, "same@example.org", name="Sam", now=clock.now())
        session.add(SubscriberTag(subscriber_id=same.id, tag="vip"))
        bounced = get_or_create_subscriber(session, "gone@example.org", now=clock.now())
        bounced.status = SubscriberStatus.BOUNCED
        suppress_address(session, secret=SECRET, email="Listed@Example.org", reason=SuppressionReason.MANUAL, now=clock.now())
        known_id = known.id
    csv_text = (
        "Email Address,First Name,timezone,tags,favourite colour\n"
        "new@example.org,Nia,Europe/Berlin,a;b,blue\n"  # line 2: accepted
        "KNOWN@example.org,Kimberly,,,\n"  # 3: updated (name)
        "same@example.org,Sam,,vip,\n"  # 4: unchanged
        "not-an-address,Bob,,,\n"  # 5: rejected
        "zone@example.org,Zed,Mars/Olympus,,\n"  # 6: rejected, unknown zone
        "gone@example.org,,,,\n"  # 7: suppressed (bounced)
        "listed@example.org,,,,\n"  # 8: suppressed (on the list)
        "new@example.org,Nia,,c,\n"  # 9: duplicate of line 2 -> 2 is the duplicate, 9 kept
    )
    import_id, counts = _import(sessions, tmp_path, csv_text, clock, mode="confirmed", consent="signed up at the fair 2025")
    report = _report(sessions, import_id)
    assert report[2][1:] == ("duplicate", "the same address as line 9")
    assert report[9][1] == "accepted"
    assert report[3][1:] == ("updated", "new name")
    assert report[4][1] == "unchanged"
    assert report[5][1] == "rejected" and "invalid email address" in report[5][2]
    assert report[6][1:] == ("rejected", "unknown time zone 'Mars/Olympus'")
    assert report[7][1:] == ("suppressed", "the subscriber is bounced")
    assert report[8][1:] == ("suppressed", "on the suppression list (manual)")
    assert counts == {"accepted": 1, "updated": 1, "unchanged": 1, "rejected": 2, "duplicate": 1, "suppressed": 2}
    with sessions.begin() as session:
        new = session.scalars(select(Subscriber).where(Subscriber.email == "new@example.org")).one()
        assert (new.name, new.timezone, new.status) == ("Nia", "Europe/Berlin", SubscriberStatus.ACTIVE)
        assert set(session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == new.id))) == {"a", "b", "c"}
        assert session.get(Subscriber, known_id).name == "Kimberly"  # type: ignore[union-attr]
        record = session.get(SubscriberImport, import_id)
        assert record is not None and record.unknown_columns == ["favourite colour"]
        assert record.consent == "signed up at the fair 2025" and record.total_rows == 8
        assert session.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.email == "listed@example.org")) == 0
        lines = "".join(report_csv(report_rows(session, import_id))).splitlines()
    assert lines[0] == "line,email,outcome,reason" and len(lines) == 9


def test_opt_in_queues_bulk_confirmations_and_no_lesson(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    with sessions.begin() as session:
        make_course(session, now=clock.now(), slug="bread")
    _, counts = _import(sessions, tmp_path, "email\nann@example.org\nbob@example.org\n", clock, course_slug="bread")
    assert counts["accepted"] == 2
    with sessions.begin() as session:
        assert set(session.scalars(select(Subscriber.status))) == {SubscriberStatus.PENDING}
        assert set(session.scalars(select(Enrollment.status))) == {EnrollmentStatus.PENDING}
        rows = session.execute(select(Delivery.template, Delivery.priority, Delivery.lesson_id)).all()
    assert sorted(rows) == [("confirm", int(DeliveryPriority.BULK), None)] * 2


def test_confirmed_mode_needs_consent_and_opt_in_a_course(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    with pytest.raises(ImportFileError, match="consent"):
        _import(sessions, tmp_path, "email\nann@example.org\n", clock, mode="confirmed")
    with pytest.raises(ImportFileError, match="needs a course"):
        _import(sessions, tmp_path, "email\nann@example.org\n", clock)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name,city\nAnn,Paris\n", "no email column"),
        (b"email\n", "no rows"),
        (b"", "empty"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 40, "binary"),
    ],
)
def test_malformed_file_is_one_error_and_imports_nothing(
    sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock, content: bytes, message: str
) -> None:
    with pytest.raises(ImportFileError, match=message):
        _import(sessions, tmp_path, content, clock, mode="confirmed", consent="yes")
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(SubscriberImport)) == 0


def test_hostile_rows_get_their_own_reasons(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    content = (
        b"email;name\r\n"
        b"ok@example.org;Ok\r\n"  # 2
        b"nul@example.org;A\x00B\r\n"  # 3
        b'big@example.org;"' + b"x" * (10 * 1024 * 1024) + b'"\r\n'  # 4: a 10 MB field
        b"latin@example.org;Ren\xe9\r\n"  # 5: Latin-1 in a UTF-8 file
        b"utf@example.org;J\xc3\xbcrgen\r\n"  # 6
        b"=cmd|' /C calc'!A0;Eve\r\n"  # 7: formula injection as an address
        b"eve@example.org;=HYPERLINK(1)\r\n"  # 8: and as a name
        b"back\\slash@example.org;Bo\r\n"  # 9: characters COPY's text format escapes: a backslash,
        b'tab@example.org;"Ann\tLee"\r\n'  # 10: a tab,
        b'"line\nbreak@example.org";Cy\r\n'  # 11: a line break in a quoted field
    )
    import_id, counts = _import(sessions, tmp_path, content, clock, mode="confirmed", consent="yes")
    report = _report(sessions, import_id)
    assert report[3][1:] == ("rejected", "the line holds a NUL byte")
    assert report[4][1] == "rejected" and "10,485,760 characters long" in report[4][2]
    assert report[5][1] == "rejected" and "mixes encodings" in report[5][2]
    assert report[7][1] == "rejected" and report[8][1] == "rejected"
    assert report[9] == ("back\\slash@example.org", "rejected", "invalid email address 'back\\\\slash@example.org'")
    assert report[11][:2] == ("line\N{REPLACEMENT CHARACTER}break@example.org", "rejected")
    assert counts["accepted"] == 3
    with sessions.begin() as session:
        assert set(session.scalars(select(Subscriber.name))) == {"Ok", "Jürgen", "Ann Lee"}
        exported = "".join(report_csv(report_rows(session, import_id)))
    assert "\n7,'=cmd|' /C calc'!A0,rejected," in exported.replace("\r\n", "\n")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "cp1252"])
def test_encodings_of_spreadsheet_exports(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock, encoding: str) -> None:
    content = "email\tname\r\nrene@example.org\tRené\r\n".encode(encoding)
    assert detect_encoding(content).replace("-sig", "") in (encoding.replace("-sig", ""), "utf-16")
    _import(sessions, tmp_path, content, clock, mode="confirmed", consent="yes")
    with sessions.begin() as session:
        assert session.scalars(select(Subscriber.name)).one() == "René"


def test_export_neutralises_formulas_and_filters(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        for address, name in (("a@example.org", "Ann"), ("b@example.org", "Bob")):
            get_or_create_subscriber(session, address, name=name, now=clock.now())
        tagged = get_or_create_subscriber(session, "c@example.org", now=clock.now())
        tagged.name = "=1+2"  # stored before names were checked
        session.add(SubscriberTag(subscriber_id=tagged.id, tag="vip"))
    with sessions.begin() as session:
        everyone = "".join(export_csv(session, ExportFilter())).splitlines()
        vip = "".join(export_csv(session, ExportFilter(tag="vip"))).splitlines()
    assert everyone[0] == "email,name,timezone,status,tags,created_at,confirmed_at" and len(everyone) == 4
    assert len(vip) == 2 and vip[1].startswith("c@example.org,'=1+2,UTC,active,vip,")


def test_bom_header_and_semicolons(tmp_path: Path) -> None:
    assert detect_encoding(codecs.BOM_UTF8 + b"email\n") == "utf-8-sig"


def test_the_imports_own_tag_is_an_update_once(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    """--tag reaches every reader of the file, known or new, in one statement: a known reader
    without it is updated ("new tags"), and the same file again changes nothing."""
    with sessions.begin() as session:
        known_id = get_or_create_subscriber(session, "kim@example.org", name="Kim", now=clock.now()).id
    csv_text = "email,name\nkim@example.org,Kim\nnew@example.org,Nia\nnew@example.org,\n"
    options = {"mode": "confirmed", "consent": "the fair", "tag": " fair  2025 "}
    first_id, first = _import(sessions, tmp_path, csv_text, clock, **options)
    assert first == {"accepted": 1, "updated": 1, "unchanged": 0, "rejected": 0, "duplicate": 1, "suppressed": 0}
    assert _report(sessions, first_id)[2][1:] == ("updated", "new tags")
    assert _report(sessions, first_id)[3][1:] == ("duplicate", "the same address as line 4")
    _, again = _import(sessions, tmp_path, csv_text, clock, **options)
    assert again == {"accepted": 0, "updated": 0, "unchanged": 2, "rejected": 0, "duplicate": 1, "suppressed": 0}
    with sessions.begin() as session:
        new = session.scalars(select(Subscriber).where(Subscriber.email == "new@example.org")).one()
        assert new.name == "Nia"  # the kept line left the name empty: the duplicate's is merged in
        tagged = session.execute(select(SubscriberTag.subscriber_id, SubscriberTag.tag).order_by(SubscriberTag.subscriber_id)).all()
    assert tagged == [(known_id, "fair 2025"), (new.id, "fair 2025")]


def test_a_signup_during_the_import_wins_its_address(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    """An address decided as new but signed up meanwhile by another transaction (which the
    import's INSERT waited for) is not inserted twice (ON CONFLICT DO NOTHING): its row then
    belongs to that subscriber. The decided table is built here as the merge leaves it, with the
    signup already in place, which is what the import's INSERT meets after the wait."""
    from sqlalchemy import text

    from course.audience.imports import _insert_new

    with sessions.begin() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        race_id = get_or_create_subscriber(session, "race@example.org", name="Ray", now=clock.now()).id
        new_id = "nextval(pg_get_serial_sequence('subscribers', 'id'))" if postgres else "NULL"
        session.execute(text("DROP TABLE IF EXISTS import_decided"))
        session.execute(
            text(
                "CREATE TEMPORARY TABLE import_decided AS SELECT line, email, email_key, name, timezone, language, created_at, "
                f"'accepted' AS outcome, '' AS reason, {new_id} AS subscriber_id FROM (SELECT 2 AS line, "
                "'first@example.org' AS email, 'first@example.org' AS email_key, 'Fay' AS name, '' AS timezone, 'de' AS language, "
                f"CAST(NULL AS {'timestamptz' if postgres else 'timestamp'}) AS created_at UNION ALL SELECT 3, 'Race@example.org', 'race@example.org', 'Rae', '', '', NULL) AS rows"
            )
        )
        _insert_new(session, status=SubscriberStatus.ACTIVE, now=clock.now(), postgres=postgres)
        decided = dict(session.execute(text("SELECT email_key, subscriber_id FROM import_decided")).all())
        by_address = {s.email.lower(): s for s in session.scalars(select(Subscriber))}
        assert set(by_address) == {"first@example.org", "race@example.org"}
        assert decided == {"first@example.org": by_address["first@example.org"].id, "race@example.org": race_id}
        assert by_address["race@example.org"].name == "Ray"  # the signup's row, untouched
        assert by_address["first@example.org"].status == SubscriberStatus.ACTIVE
        session.execute(text("DROP TABLE import_decided"))


def test_an_import_tag_that_is_no_tag_is_one_error(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    with pytest.raises(ImportFileError, match="printable"):
        _import(sessions, tmp_path, "email\nann@example.org\n", clock, mode="confirmed", consent="yes", tag="a\x07b")
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_the_language_column_is_kept_and_the_import_named_as_the_source(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    with sessions.begin() as session:
        get_or_create_subscriber(session, "known@example.org", name="Kim", now=clock.now(), language="en", source="form")
        get_or_create_subscriber(session, "same@example.org", name="Sam", now=clock.now(), language="de")
    content = "email,name,language\nnew@example.org,Neu,DE\nknown@example.org,Kim,fr\nsame@example.org,Sam,de\nbare@example.org,,\n"
    import_id, counts = _import(sessions, tmp_path, content, clock, mode="confirmed", consent="they asked at our stand")
    assert (counts["accepted"], counts["updated"], counts["unchanged"]) == (2, 1, 1)
    assert _report(sessions, import_id)[3] == ("known@example.org", "updated", "new language")
    with sessions() as session:
        people = {row.email: (row.language, row.source) for row in session.scalars(select(Subscriber))}
    assert people == {
        "new@example.org": ("de", f"import:{import_id}"), "bare@example.org": (None, f"import:{import_id}"),
        "known@example.org": ("fr", "form"), "same@example.org": ("de", None),  # a known one keeps their source
    }  # fmt: skip


def test_repeated_addresses_merge_what_each_line_gives_and_tag_once(sessions: sessionmaker[Session], tmp_path: Path, clock: ManualClock) -> None:
    """A new address on several lines becomes one subscriber: the last line is kept, what it leaves
    empty comes from the latest earlier line that gives it, a line that gives nothing leaves it
    empty (never NULL), and each tag of any of the lines, the import's own included, is written
    once."""
    with sessions.begin() as session:
        known = get_or_create_subscriber(session, "kim@example.org", name="Kim", now=clock.now()).id
        session.add(SubscriberTag(subscriber_id=known, tag="vip"))
    content = (
        "email,name,timezone,tags\n"
        "bare@example.org,,,fair\n"
        "BARE@example.org,,,fair;fair 2025\n"
        "nia@example.org,Nia,Asia/Tokyo,\n"
        "nia@example.org,,,met\n"
        "kim@example.org,,,vip;met\n"
        "kim@example.org,,,fair\n"
        "solo@example.org,Sol,,met;met\n"
    )
    import_id, counts = _import(sessions, tmp_path, content, clock, mode="confirmed", consent="asked in person", tag="fair")
    assert counts == {"accepted": 3, "updated": 1, "unchanged": 0, "rejected": 0, "duplicate": 3, "suppressed": 0}
    with sessions() as session:
        people = {row.email.lower(): (row.name, row.timezone) for row in session.scalars(select(Subscriber))}
        tags = sorted((email.lower(), tag) for email, tag in session.execute(
            select(Subscriber.email, SubscriberTag.tag).join(SubscriberTag, SubscriberTag.subscriber_id == Subscriber.id)
        ))  # fmt: skip
    assert people == {
        "bare@example.org": ("", "UTC"), "nia@example.org": ("Nia", "Asia/Tokyo"), "kim@example.org": ("Kim", "UTC"),
        "solo@example.org": ("Sol", "UTC"),
    }  # fmt: skip
    assert tags == [
        ("bare@example.org", "fair"), ("bare@example.org", "fair 2025"), ("kim@example.org", "fair"), ("kim@example.org", "met"),
        ("kim@example.org", "vip"), ("nia@example.org", "fair"), ("nia@example.org", "met"), ("solo@example.org", "fair"),
        ("solo@example.org", "met"),
    ]  # fmt: skip
    assert _report(sessions, import_id)[2][1:] == ("duplicate", "the same address as line 3")
