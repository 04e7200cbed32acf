"""The sender against a real SMTP server, on PostgreSQL and SQLite: each delivery goes out once
however often its task runs, SMTP failures land in the ledger as retries, failures or bounces,
nothing is lost when the server is down, a stop that comes in after the claim still wins, one
connection carries many messages, and a batch stops before its lease runs out."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session as SMTPSession
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.audience.enrollment import enroll, get_or_create_subscriber, pause, resume, unsubscribe
from course.delivery.links import signer_from_settings
from course.devtools.mailsink import start_controller
from course.models import (
    Delivery,
    DeliveryState,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from course.delivery.render import Renderer
from course.ledger import message_ids_from_secret
from course.delivery.sending import Sender
from course.settings import Settings
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from tests.support.pipeline_fixtures import enroll_people, make_course
from tests.support.smtp_server import RecordingSMTPServer, _RecordingHandler

Task = tuple[list[int], str, bool]


class _PeerRecordingHandler(_RecordingHandler):
    async def handle_RCPT(
        self, server: SMTP, session: SMTPSession, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        self.recording_server.peers.append(session.peer)  # type: ignore[attr-defined]
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class ConnectionCountingSMTPServer(RecordingSMTPServer):
    """RecordingSMTPServer that also notes the client address (host, port) of every RCPT: one
    distinct peer per TCP connection the sender opened."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.peers: list[tuple[str, int]] = []

    def start(self) -> None:
        self._controller = start_controller(_PeerRecordingHandler(self), self.host, self._requested_port)

    @property
    def connections(self) -> int:
        return len(set(self.peers))


@pytest.fixture
def smtp_server() -> Iterator[ConnectionCountingSMTPServer]:
    with ConnectionCountingSMTPServer() as server:
        yield server


@pytest.fixture
def make_sender(settings: Settings, sessions: sessionmaker[Session], clock: ManualClock) -> Iterator[Callable[..., Sender]]:
    transports: list[SMTPTransport] = []

    def build(transport: SMTPTransport | None = None, **setting_overrides: object) -> Sender:
        transport = transport or SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
        transports.append(transport)
        return Sender(
            settings.model_copy(update=setting_overrides),
            sessions=sessions,
            transport=transport,
            renderer=Renderer(settings.templates_dir),
            signer=signer_from_settings(settings),
            clock=clock,
        )

    yield build
    for transport in transports:
        transport.close()


def dispatch(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock) -> list[Task]:
    tasks: list[Task] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token, urgent)))
    return tasks


def one_task(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock) -> tuple[list[int], str]:
    tasks = dispatch(sessions, settings, clock)
    assert len(tasks) == 1, tasks
    ids, token, urgent = tasks[0]
    assert not urgent  # lessons ride the bulk queue
    return ids, token


def setup_course(sessions: sessionmaker[Session], clock: ManualClock, addresses: list[str], *, lessons: int = 3) -> int:
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=lessons)
        enroll_people(session, course, addresses, now=clock.now())
        return course.id


def rows_by_address(sessions: sessionmaker[Session]) -> dict[str, list[Delivery]]:
    found: dict[str, list[Delivery]] = {}
    with sessions() as session:
        for address, row in session.execute(
            select(Subscriber.email, Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id).order_by(Delivery.id)
        ):
            found.setdefault(address, []).append(row)
    return found


def first_rows(sessions: sessionmaker[Session], ids: list[int]) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)))


def assert_backed_off(row: Delivery, now: datetime, attempts: int = 1, base: float = 60.0) -> None:
    ceiling = base * 2 ** (attempts - 1)
    assert row.state == DeliveryState.PENDING
    assert row.attempts == attempts
    assert row.lease_token is None and row.lease_expires_at is None
    assert now + timedelta(seconds=ceiling / 2) <= row.due_at <= now + timedelta(seconds=ceiling), (row.due_at, now)


PEOPLE = ["ann@example.org", "ben@example.org", "cy@example.org"]


def test_due_lessons_go_out_once_and_are_recorded(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE)
    ids, token = one_task(sessions, settings, clock)
    report = make_sender().send_claimed(ids, token)
    assert (report.taken, report.sent) == (3, 3)
    received = smtp_server.received
    assert sorted(mail.envelope_to[0] for mail in received) == PEOPLE
    assert {mail.message["subject"] for mail in received} == {"Lesson 1 of 3: bread part 1"}
    for row in first_rows(sessions, ids):
        assert row.state == DeliveryState.SENT and row.sent_at == clock.now() and row.attempts == 1
        assert row.message_id == message_ids_from_secret(settings.list_id_domain, settings.secret_key).for_delivery(row.id)
        assert row.lease_token is None
    assert {mail.message["message-id"] for mail in received} == {row.message_id for row in first_rows(sessions, ids)}


def test_a_duplicated_task_sends_nothing_twice(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE)
    ids, token = one_task(sessions, settings, clock)
    sender = make_sender()
    assert sender.send_claimed(ids, token).sent == 3
    again = sender.send_claimed(ids, token)
    assert (again.taken, again.sent) == (0, 0)
    assert len(smtp_server.received) == 3
    assert {row.state for row in first_rows(sessions, ids)} == {DeliveryState.SENT}


def test_a_duplicated_task_running_concurrently_sends_each_once(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    people = [f"reader{n}@example.org" for n in range(8)]
    setup_course(sessions, clock, people)
    ids, token = one_task(sessions, settings, clock)
    senders = [make_sender(), make_sender()]  # two worker processes, each with its own connection
    barrier = threading.Barrier(2, timeout=10)
    reports = []
    errors: list[BaseException] = []

    def run(sender: Sender) -> None:
        try:
            barrier.wait()
            reports.append(sender.send_claimed(ids, token))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sum(report.sent for report in reports) == len(people)
    assert Counter(mail.envelope_to[0] for mail in smtp_server.received) == Counter(people)
    assert {row.state for row in first_rows(sessions, ids)} == {DeliveryState.SENT}


def test_a_4xx_reply_puts_the_row_back_with_back_off(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE[:2])
    smtp_server.fail_next(451, "4.3.2 Try again later")  # the first message only
    ids, token = one_task(sessions, settings, clock)
    sender = make_sender()
    report = sender.send_claimed(ids, token)
    assert (report.sent, report.retried) == (1, 1)
    failed, sent = first_rows(sessions, ids)
    assert_backed_off(failed, clock.now())
    assert "451" in (failed.last_error or "") and "Try again later" in (failed.last_error or "")
    assert sent.state == DeliveryState.SENT
    assert [mail.envelope_to for mail in smtp_server.received] == [[PEOPLE[1]]]
    # Nothing before the back-off; then it goes, over the same connection.
    assert dispatch(sessions, settings, clock) == []
    clock.set(failed.due_at)
    ids, token = one_task(sessions, settings, clock)
    assert ids == [failed.id]
    assert sender.send_claimed(ids, token).sent == 1
    assert [mail.envelope_to for mail in smtp_server.received] == [[PEOPLE[1]], [PEOPLE[0]]]
    assert first_rows(sessions, ids)[0].state == DeliveryState.SENT
    assert smtp_server.connections == 1


def test_after_the_retry_window_the_row_fails_with_the_reason(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    """Transient failures are retried for retry_window_seconds after the first attempt (here 150 s:
    back-offs of 60 and 120 s fit in it, the third would not), whatever the number of attempts."""
    setup_course(sessions, clock, PEOPLE[:1])
    sender = make_sender(retry_window_seconds=150, max_attempts=1)
    smtp_server.fail_next(452, "4.2.2 Mailbox full", times=3, at="RCPT")
    first_attempt = clock.now()
    for attempt in (1, 2, 3):
        ids, token = one_task(sessions, settings, clock)
        sender.send_claimed(ids, token)
        [row] = first_rows(sessions, ids)
        assert row.attempts == attempt
        assert row.first_attempt_at == first_attempt
        if row.state == DeliveryState.FAILED:
            break
        assert_backed_off(row, clock.now(), attempts=attempt)
        clock.set(row.due_at)
    assert row.state == DeliveryState.FAILED
    assert row.last_error is not None and row.last_error.startswith(f"gave up after {row.attempts} attempts in ")
    assert "452" in row.last_error and "Mailbox full" in row.last_error
    assert smtp_server.received == []
    clock.advance(timedelta(days=1))
    assert all(ids != [row.id] for ids, _, _ in dispatch(sessions, settings, clock))


def test_a_5xx_on_rcpt_bounces_and_suppresses_only_that_address(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    bad, good = "bounce-ann@example.org", "ok@example.org"
    with sessions.begin() as session:
        first = make_course(session, now=clock.now(), slug="bread", lessons=3)
        second = make_course(session, now=clock.now(), slug="cheese", lessons=2)
        enroll_people(session, first, [bad, good], now=clock.now())
        # The second course starts later, so its rows are still pending when the bounce comes.
        enroll(session, get_or_create_subscriber(session, bad, now=clock.now()), second, now=clock.now() + timedelta(hours=1))
    smtp_server.reject_recipient("bounce-*@example.org", 550, "5.1.1 No such user")
    ids, token = one_task(sessions, settings, clock)
    report = make_sender().send_claimed(ids, token)
    assert (report.sent, report.bounced) == (1, 1)
    rows = rows_by_address(sessions)
    bounced, *rest = rows[bad]
    assert bounced.state == DeliveryState.BOUNCED
    assert "550" in (bounced.last_error or "") and "No such user" in (bounced.last_error or "")
    assert len(rest) == 4 and {row.state for row in rest} == {DeliveryState.CANCELLED}
    assert [row.state for row in rows[good]] == [DeliveryState.SENT, DeliveryState.PENDING, DeliveryState.PENDING]
    with sessions() as session:
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        suppressed_at = session.scalar(select(Subscriber.unsubscribed_at).where(Subscriber.email == bad))
    assert statuses == {bad: SubscriberStatus.BOUNCED, good: SubscriberStatus.ACTIVE}
    assert suppressed_at == clock.now()
    assert [mail.envelope_to for mail in smtp_server.received] == [[good]]
    # Weeks later, only the good address still gets mail.
    for _ in range(3):
        clock.advance(timedelta(days=1))
        for ids, token, _ in dispatch(sessions, settings, clock):
            make_sender().send_claimed(ids, token)
    assert {mail.envelope_to[0] for mail in smtp_server.received} == {good}


def test_smtp_server_down_keeps_every_row_with_back_off(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE)
    port = smtp_server.port
    smtp_server.stop()
    ids, token = one_task(sessions, settings, clock)
    report = make_sender().send_claimed(ids, token)
    assert (report.sent, report.retried, report.failed) == (0, 3, 0)
    rows = first_rows(sessions, ids)
    for row in rows:
        assert_backed_off(row, clock.now())
        assert f"127.0.0.1:{port}" in (row.last_error or "")
    assert f"127.0.0.1:{port}" in report.errors[0]
    # The server comes back on the same port: every message goes, none twice.
    with ConnectionCountingSMTPServer(port=port) as revived:
        clock.set(max(row.due_at for row in rows))
        ids, token = one_task(sessions, settings, clock)
        assert sorted(ids) == sorted(row.id for row in rows)
        assert make_sender().send_claimed(ids, token).sent == 3
        assert sorted(mail.envelope_to[0] for mail in revived.received) == PEOPLE


class _AfterFirstMessage(SMTPTransport):
    """A real transport that runs `hook` once, right after its first message is accepted."""

    def __init__(self, config: SMTPConfig, hook: Callable[[], None]) -> None:
        super().__init__(config)
        self.hook: Callable[[], None] | None = hook

    def send(self, sender: str, recipient: str, message: bytes, *, deadline: float | None = None) -> None:
        super().send(sender, recipient, message, deadline=deadline)
        if self.hook is not None:
            hook, self.hook = self.hook, None
            hook()


def test_server_gone_mid_batch_keeps_the_rest(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE)
    ids, token = one_task(sessions, settings, clock)
    transport = _AfterFirstMessage(SMTPConfig(smtp_server.host, smtp_server.port, timeout=5), smtp_server.stop)
    report = make_sender(transport).send_claimed(ids, token)
    assert (report.sent, report.retried) == (1, 2)
    sent, *waiting = first_rows(sessions, ids)
    assert sent.state == DeliveryState.SENT
    for row in waiting:
        assert_backed_off(row, clock.now())
        assert f"{smtp_server.host}:" in (row.last_error or "")


@pytest.mark.parametrize("stop", ["unsubscribe", "pause"])
def test_a_stop_after_the_claim_wins(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender], stop: str
) -> None:
    course_id = setup_course(sessions, clock, PEOPLE)
    ids, token = one_task(sessions, settings, clock)
    with sessions.begin() as session:  # the web app, between the dispatcher's claim and the send
        subscriber = session.scalars(select(Subscriber).where(Subscriber.email == PEOPLE[0])).one()
        if stop == "unsubscribe":
            unsubscribe(session, subscriber, course_id=course_id, now=clock.now())
        else:
            pause(session, session.scalars(select(Enrollment).where(Enrollment.subscriber_id == subscriber.id)).one(), now=clock.now())
    report = make_sender().send_claimed(ids, token)
    assert (report.taken, report.sent) == (2, 2)
    assert sorted(mail.envelope_to[0] for mail in smtp_server.received) == PEOPLE[1:]
    stopped = rows_by_address(sessions)[PEOPLE[0]]
    expected = DeliveryState.CANCELLED if stop == "unsubscribe" else DeliveryState.HELD
    assert {row.state for row in stopped} == {expected}


@pytest.mark.parametrize(
    ("change", "expected"),
    [("subscriber-unsubscribed", DeliveryState.CANCELLED), ("enrollment-paused", DeliveryState.HELD),
     ("subscriber-bounced", DeliveryState.CANCELLED), ("enrollment-unsubscribed", DeliveryState.CANCELLED)],
)  # fmt: skip
def test_the_sender_rechecks_status_at_send_time(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer,
    make_sender: Callable[..., Sender], change: str, expected: str,
) -> None:
    """A status change whose row update has not happened (or raced the claim): the sender's own
    check at take-over time still keeps the message from going."""
    setup_course(sessions, clock, PEOPLE)
    ids, token = one_task(sessions, settings, clock)
    with sessions.begin() as session:
        subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email == PEOPLE[0]))
        kind, value = change.split("-")
        if kind == "subscriber":
            session.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(status=value))
        else:
            session.execute(update(Enrollment).where(Enrollment.subscriber_id == subscriber_id).values(status=value))
    report = make_sender().send_claimed(ids, token)
    assert (report.taken, report.sent, report.skipped) == (3, 2, 1)
    assert sorted(mail.envelope_to[0] for mail in smtp_server.received) == PEOPLE[1:]
    [row] = [row for row in first_rows(sessions, ids) if row.subscriber_id == subscriber_id]
    assert row.state == expected and row.lease_token is None


def test_one_connection_carries_a_batch_and_the_next(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE)
    sender = make_sender()
    ids, token = one_task(sessions, settings, clock)
    assert sender.send_claimed(ids, token).sent == 3
    clock.advance(timedelta(days=1))  # everyone's lesson 2 is due
    ids, token = one_task(sessions, settings, clock)
    assert sender.send_claimed(ids, token).sent == 3
    assert len(smtp_server.received) == 6
    assert len(smtp_server.peers) == 6 and smtp_server.connections == 1


def test_the_batch_stops_before_its_lease_runs_out(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    people = [f"reader{n}@example.org" for n in range(4)]
    setup_course(sessions, clock, people)
    ids, token = one_task(sessions, settings, clock)
    lease = timedelta(seconds=settings.lease_seconds)
    stop_at = clock.now() + lease - min(lease / 5, timedelta(seconds=60))
    # The first message takes so long that the stop margin is reached, the lease still ours.
    transport = _AfterFirstMessage(
        SMTPConfig(smtp_server.host, smtp_server.port, timeout=5), lambda: clock.set(stop_at + timedelta(seconds=1))
    )
    report = make_sender(transport).send_claimed(ids, token)
    assert (report.sent, report.released) == (1, 3)
    assert len(smtp_server.received) == 1
    sent, *released = first_rows(sessions, ids)
    assert sent.state == DeliveryState.SENT
    assert all(row.state == DeliveryState.PENDING and row.lease_token is None for row in released)
    # Released rows are due at once for the next dispatcher run, under a new lease.
    ids, new_token = one_task(sessions, settings, clock)
    assert new_token != token and sorted(ids) == sorted(row.id for row in released)


def test_paused_then_resumed_enrollment_gets_its_lesson(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE[:1])
    ids, token = one_task(sessions, settings, clock)
    with sessions.begin() as session:
        pause(session, session.scalars(select(Enrollment)).one(), now=clock.now())
    assert make_sender().send_claimed(ids, token).taken == 0
    with sessions.begin() as session:
        enrollment = session.scalars(select(Enrollment)).one()
        assert enrollment.status == EnrollmentStatus.PAUSED
        resume(session, enrollment, now=clock.now(), immediately=True)
    ids, token = one_task(sessions, settings, clock)
    assert make_sender().send_claimed(ids, token).sent == 1
    assert smtp_server.received[0].message["subject"] == "Lesson 1 of 3: bread part 1"


def test_every_attempted_row_records_the_provider_it_went_through(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer
) -> None:
    people = [*PEOPLE, "dee@example.org"]
    setup_course(sessions, clock, people)
    ids, token = one_task(sessions, settings, clock)
    with sessions.begin() as session:  # dee pauses after the claim: her row is held, never attempted
        dee = session.scalars(select(Subscriber).where(Subscriber.email == people[3])).one()
        pause(session, session.scalars(select(Enrollment).where(Enrollment.subscriber_id == dee.id)).one(), now=clock.now())
    smtp_server.fail_next(451, "4.3.2 Try again later", at="RCPT")  # ann
    smtp_server.fail_next(550, "5.1.1 No such user", at="RCPT")  # ben
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    sender = Sender(
        settings, sessions=sessions, transport=transport, renderer=Renderer(settings.templates_dir),
        signer=signer_from_settings(settings), clock=clock, provider="relay-b",
    )  # fmt: skip
    try:
        report = sender.send_claimed(ids, token)
    finally:
        transport.close()
    assert (report.taken, report.sent, report.retried, report.bounced) == (3, 1, 1, 1)
    first = {address: rows[0] for address, rows in rows_by_address(sessions).items()}
    assert {address: (row.state, row.provider) for address, row in first.items()} == {
        "ann@example.org": (DeliveryState.PENDING, "relay-b"),
        "ben@example.org": (DeliveryState.BOUNCED, "relay-b"),
        "cy@example.org": (DeliveryState.SENT, "relay-b"),
        "dee@example.org": (DeliveryState.HELD, None),
    }
    # Lessons not yet due were never attempted: no provider.
    assert {row.provider for rows in rows_by_address(sessions).values() for row in rows[1:]} == {None}


def test_the_worker_sends_through_the_default_provider(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: ConnectionCountingSMTPServer, make_sender: Callable[..., Sender]
) -> None:
    setup_course(sessions, clock, PEOPLE[:1])
    ids, token = one_task(sessions, settings, clock)
    assert make_sender().send_claimed(ids, token).sent == 1
    assert {row.provider for row in first_rows(sessions, ids)} == {"default"}
