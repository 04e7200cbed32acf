"""What #11 changed in the sender and the transport, against a real (misbehaving) SMTP server on
PostgreSQL and SQLite: a reply lost after DATA is an unknown outcome, retried only after back-off;
no SMTP transaction outlives its deadline; outcomes are in the ledger while the task still runs;
failed rows come back with `course retry-failed`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.smtp import (
    DeadlineReached,
    SMTPConfig,
    SMTPTransport,
    TransientSendError,
    UnknownOutcome,
)
from course.ledger import requeue_failed
from course.models import Delivery, DeliveryState
from course.settings import Settings
from tests.support.fault_stack import FaultySMTPServer
from tests.support.pipeline_fixtures import enroll_people, make_course

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <delivery.1@x>\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[FaultySMTPServer]:
    server = FaultySMTPServer(tmp_path / "sink.log")
    server.start()
    yield server
    server.stop()


def transport_for(server: FaultySMTPServer, **timeouts: float) -> SMTPTransport:
    return SMTPTransport(SMTPConfig(server.host, server.port, **{"timeout": 5, **timeouts}))


def test_no_reply_after_data_is_an_unknown_outcome_and_is_not_sent_again(smtp_server: FaultySMTPServer) -> None:
    smtp_server.hang_after_data(1, seconds=3)
    transport = transport_for(smtp_server, data_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(UnknownOutcome) as raised:
        transport.send("a@example.org", "b@example.org", MESSAGE)
    assert time.monotonic() - started < 2.5  # the DATA time-out, not the command one
    assert "may have been delivered" in raised.value.reason
    assert smtp_server.accepted == 1  # queued once, and not handed over again on a new connection
    transport.send("a@example.org", "c@example.org", MESSAGE)  # the next message opens a fresh connection
    assert smtp_server.accepted == 2
    transport.close()


def test_no_transaction_runs_past_its_deadline(smtp_server: FaultySMTPServer) -> None:
    transport = transport_for(smtp_server)
    transport.send("a@example.org", "b@example.org", MESSAGE)  # connected, warm
    smtp_server.delay_replies(1.5, for_seconds=30)
    started = time.monotonic()
    with pytest.raises(TransientSendError):
        transport.send("a@example.org", "b@example.org", MESSAGE, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 1.2
    with pytest.raises(DeadlineReached):
        transport.send("a@example.org", "b@example.org", MESSAGE, deadline=time.monotonic() - 1)
    transport.close()


@pytest.fixture
def make_sender(settings: Settings, sessions: sessionmaker[Session], clock: ManualClock) -> Iterator[Callable[..., Sender]]:
    transports: list[SMTPTransport] = []

    def build(transport: SMTPTransport | None = None, **overrides: object) -> Sender:
        transport = transport or SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5, data_timeout=0.5))
        transports.append(transport)
        return Sender(
            settings.model_copy(update=overrides), sessions=sessions, transport=transport,
            renderer=Renderer(settings.templates_dir), signer=signer_from_settings(settings), clock=clock,
        )  # fmt: skip

    yield build
    for transport in transports:
        transport.close()


def claim_all(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock) -> tuple[list[int], str]:
    tasks: list[tuple[list[int], str, bool]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    assert len(tasks) == 1, tasks
    return tasks[0][0], tasks[0][1]


def setup_people(sessions: sessionmaker[Session], clock: ManualClock, count: int) -> None:
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=1)
        enroll_people(session, course, [f"p{n}@example.org" for n in range(count)], now=clock.now())


def rows(sessions: sessionmaker[Session], ids: list[int]) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)))


def test_an_unknown_outcome_goes_back_with_back_off_not_at_once(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: FaultySMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_people(sessions, clock, 2)
    smtp_server.hang_after_data(1, seconds=2)
    ids, token = claim_all(sessions, settings, clock)
    report = make_sender().send_claimed(ids, token)
    assert (report.sent, report.retried) == (1, 1)
    first, second = rows(sessions, ids)
    assert first.state == DeliveryState.PENDING and first.attempts == 1
    assert first.due_at >= clock.now() + timedelta(seconds=30)  # half the 60 s base at least
    assert "may have been delivered" in (first.last_error or "")
    assert second.state == DeliveryState.SENT
    assert smtp_server.accepted == 2  # the hung message once, the other once: nothing re-sent at once


def test_outcomes_are_in_the_ledger_while_the_task_still_runs(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: FaultySMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_people(sessions, clock, 5)
    ids, token = claim_all(sessions, settings, clock)
    seen_during_the_task: list[list[str]] = []

    class Watching(SMTPTransport):
        def send(self, sender: str, recipient: str, message: bytes, *, deadline: float | None = None) -> None:
            seen_during_the_task.append([row.state for row in rows(sessions, ids)])
            super().send(sender, recipient, message, deadline=deadline)

    transport = Watching(SMTPConfig(smtp_server.host, smtp_server.port, timeout=5))
    report = make_sender(transport, outcome_group_size=2, outcome_group_seconds=60).send_claimed(ids, token)
    assert report.sent == 5 and report.outcome_writes == 3  # 2 + 2 + 1
    # Before the 3rd message the first two are recorded; before the 5th, four.
    assert seen_during_the_task[2][:2] == [DeliveryState.SENT] * 2 and seen_during_the_task[2][2] == DeliveryState.SENDING
    assert seen_during_the_task[4][:4] == [DeliveryState.SENT] * 4
    assert {row.state for row in rows(sessions, ids)} == {DeliveryState.SENT}


def test_failed_rows_are_requeued_on_purpose(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_people(sessions, clock, 3)
    with sessions.begin() as session:
        ids = list(session.scalars(select(Delivery.id).order_by(Delivery.id)))
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[:2]))
            .values(state=DeliveryState.FAILED, attempts=9, first_attempt_at=clock.now() - timedelta(days=3), last_error="421 for hours")
        )
        session.execute(update(Delivery).where(Delivery.id == ids[0]).values(due_at=clock.now() - timedelta(days=5)))
    clock.advance(timedelta(hours=1))
    with sessions.begin() as session:
        assert requeue_failed(session, now=clock.now(), since=clock.now() - timedelta(days=1)) == 1
    too_old, back, never_failed = rows(sessions, ids)
    assert too_old.state == DeliveryState.FAILED  # its last attempt fell due 5 days ago, before --since
    assert never_failed.state == DeliveryState.PENDING
    assert back.state == DeliveryState.PENDING
    assert back.attempts == 0 and back.first_attempt_at is None and back.due_at == clock.now()
    assert back.last_error == "421 for hours"

    from course.cli.main import app
    from course.settings import get_settings

    monkeypatch.setenv("COURSE_DATABASE_URL", settings.sqlalchemy_url)
    monkeypatch.setenv("COURSE_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    bad = runner.invoke(app, ["retry-failed", "--campaign", "999"])
    assert bad.exit_code == 1 and "no campaign with id 999" in bad.output
    result = runner.invoke(app, ["retry-failed"])
    assert result.exit_code == 0, result.output
    assert "requeued 1 failed deliveries" in result.output
    assert {row.state for row in rows(sessions, ids)} == {DeliveryState.PENDING}
