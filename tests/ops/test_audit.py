"""`course audit` on real databases: each invariant passes on a healthy ledger and fails, naming
the rows, when it is broken; the sink check counts duplicates by Message-ID and finds lost mail."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from course.ops.audit import LedgerSnapshot, audit, check_sink, read_sink_log
from course.clock import ManualClock
from course.ledger import Outcome, claim_due, message_ids_from_secret, record, take_over
from course.models import Delivery, DeliveryState
from tests.support.ledger_rows import add_rows

DOMAIN = "course.localhost"
IDS = message_ids_from_secret(DOMAIN, "audit-test-secret")
GRACE = timedelta(minutes=1)
LEASE = timedelta(minutes=5)


def run_audit(sessions: sessionmaker[Session], clock: ManualClock, sink_log: Path | None = None, allowed: int = 0):  # type: ignore[no-untyped-def]
    with sessions() as session:
        return audit(
            session, now=clock.now(), lease_grace=GRACE, due_grace=GRACE, message_ids=IDS,
            sink_log=sink_log, allowed_duplicates=allowed,
        )  # fmt: skip


def failed(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f.check: f.detail for f in report.findings if not f.ok}


def send_all(sessions: sessionmaker[Session], clock: ManualClock) -> list[int]:
    with sessions.begin() as session:
        claim = claim_due(session, now=clock.now(), limit=100, lease=LEASE)
    assert claim is not None
    with sessions.begin() as session:
        batch = take_over(session, claim.bulk_ids + claim.urgent_ids, token=claim.token, now=clock.now(), lease=LEASE)
    ids = [job.delivery_id for job in batch.jobs]
    with sessions.begin() as session:
        record(session, Outcome(sent=ids), token=claim.token, now=clock.now(), message_ids=IDS)
    return ids


def test_a_healthy_ledger_passes(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        add_rows(session, clock.now(), [timedelta(0), timedelta(0), timedelta(hours=1)])
    send_all(db, clock)
    report = run_audit(db, clock)
    assert report.ok, report.findings
    assert {f.check for f in report.findings} == {"expired leases", "overdue rows", "row states"}


def test_an_expired_lease_still_held_fails_with_its_row(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ids = add_rows(session, clock.now(), [timedelta(0), timedelta(0)])
        claim_due(session, now=clock.now(), limit=1, lease=LEASE)
    clock.current += LEASE + GRACE / 2
    assert "expired leases" not in failed(run_audit(db, clock))  # within the grace: the dispatcher may be on it
    clock.current += GRACE
    problems = failed(run_audit(db, clock))
    assert "1 rows still leased or sending" in problems["expired leases"]
    assert f"ids {ids[0]}" in problems["expired leases"]
    # The other row has been due all along: overdue too.
    assert f"ids {ids[1]}" in problems["overdue rows"]


def test_rows_inconsistent_with_their_state_fail(db: sessionmaker[Session], clock: ManualClock) -> None:
    with db.begin() as session:
        ids = add_rows(session, clock.now(), [timedelta(hours=1)] * 3)
        session.execute(update(Delivery).where(Delivery.id == ids[0]).values(state=DeliveryState.SENT))
        session.execute(update(Delivery).where(Delivery.id == ids[1]).values(lease_token="stale"))
        session.execute(update(Delivery).where(Delivery.id == ids[2]).values(state=DeliveryState.SENDING))
    report = run_audit(db, clock)
    details = [f.detail for f in report.findings if f.check == "row states" and not f.ok]
    assert any("sent row without sent time or Message-ID" in d and str(ids[0]) in d for d in details), details
    assert any("out of flight still holding a lease" in d and str(ids[1]) in d for d in details), details
    assert any("in flight without a lease" in d and str(ids[2]) in d for d in details), details


def test_sink_log_duplicates_and_lost_mail(db: sessionmaker[Session], clock: ManualClock, tmp_path: Path) -> None:
    with db.begin() as session:
        add_rows(session, clock.now(), [timedelta(0)] * 3)
    sent = send_all(db, clock)
    first, second, third = (IDS.for_delivery(i) for i in sent)
    sink = tmp_path / "sink.log"
    sink.write_text(f"2026-03-05T12:00:00 {first}\n{second}\n{second}\n{third}\n")
    assert failed(run_audit(db, clock, sink)).keys() == {"duplicates"}
    report = run_audit(db, clock, sink, allowed=1)
    assert report.ok and report.duplicates == 1 and report.duplicated_ids == 1

    sink.write_text(f"{first}\n{second}\n")
    problems = failed(run_audit(db, clock, sink))
    assert problems.keys() == {"lost"}
    assert third in problems["lost"]


def test_check_sink_reports_copies_of_rows_not_recorded_sent() -> None:
    snapshot = LedgerSnapshot(now=None, sent_message_ids={"<a@x>"}, unsent_message_ids={"<b@x>": "pending"})  # type: ignore[arg-type]
    findings, extra, duplicated = check_sink(["<a@x>", "<b@x>", "<b@x>", "<z@x>"], snapshot, allowed_duplicates=1)
    by_check = {f.check: f for f in findings}
    assert (extra, duplicated) == (1, 1)
    assert by_check["duplicates"].ok
    assert "1 pending" in by_check["unrecorded"].detail
    assert "1 Message-IDs in the sink log are not in this ledger" in by_check["unknown"].detail


def test_sink_log_reads_a_folder_of_eml_files(tmp_path: Path) -> None:
    (tmp_path / "1.eml").write_bytes(b"Message-ID: <delivery.7@x>\r\nSubject: a\r\n\r\nbody\r\n")
    (tmp_path / "2.eml").write_bytes(b"Subject: no id\r\n\r\nbody\r\n")
    assert read_sink_log(tmp_path) == ["<delivery.7@x>"]


def test_cli_exits_non_zero_when_the_audit_fails(
    pg_database_url: str, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from course.cli.main import app
    from course.db import make_engine
    from course.settings import get_settings

    engine = make_engine(pg_database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        add_rows(session, clock.now(), [timedelta(0)])
    ids = send_all(sessions, clock)
    engine.dispose()
    monkeypatch.setenv("COURSE_DATABASE_URL", pg_database_url)
    monkeypatch.setenv("COURSE_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_SECRET_KEY", "audit-test-secret")  # IDS's: Message-IDs are keyed by the secret
    get_settings.cache_clear()
    sink = tmp_path / "sink.log"
    sink.write_text(IDS.for_delivery(ids[0]) + "\n")
    runner = CliRunner()
    passed = runner.invoke(app, ["audit", "--sink-log", str(sink)])
    assert passed.exit_code == 0, passed.output
    assert "audit passed" in passed.output
    sink.write_text((IDS.for_delivery(ids[0]) + "\n") * 2)
    result = runner.invoke(app, ["audit", "--sink-log", str(sink), "--json"])
    assert result.exit_code == 1, result.output
    assert '"duplicates": 1' in result.output
    missing = runner.invoke(app, ["audit", "--sink-log", str(tmp_path / "nope.log")])
    assert missing.exit_code == 1 and "no sink log" in missing.output
