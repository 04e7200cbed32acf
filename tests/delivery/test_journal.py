"""The send journal (course/delivery/journal.py) on a real Redis, and what the sender does with it:
a row the relay accepted under a lease that ran out before its outcome was written is settled as
sent by whoever takes it over, not sent again; a Redis that is away costs no waiting per message
and sends nothing twice more than without the journal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.journal import RedisJournal, journal_client, journal_key
from course.delivery.links import signer_from_settings
from course.delivery.outcomes import GroupWriter
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.ledger import Outcome, message_id_for, take_over
from course.models import Delivery, DeliveryState
from course.settings import Settings
from tests.support.fault_stack import RedisServer
from tests.support.pipeline_fixtures import enroll_people, make_course
from tests.support.smtp_server import RecordingSMTPServer


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = journal_client(redis_url)
    yield connection  # type: ignore[misc]
    connection.close()


def test_a_note_is_kept_for_its_time_and_read_back_in_one_go(client: redis.Redis) -> None:
    journal = RedisJournal(client, ttl_seconds=600)
    assert journal.accepted(11) and journal.accepted(13)
    assert journal.accepted_among([11, 12, 13]) == {11, 13}
    journal.accepted(14)  # its reply is read with the next MAX_UNREAD, or not at all: the SET is out
    assert journal.accepted_among([14]) == {14}
    assert 590 < client.ttl(journal_key(11)) <= 600


def test_a_redis_that_is_away_costs_no_waiting_per_message() -> None:
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here
    journal = RedisJournal(journal_client(f"redis://127.0.0.1:{port}/0"), ttl_seconds=60)
    started = time.monotonic()
    assert [journal.accepted(i) for i in range(200)] == [False] * 200
    assert journal.accepted_among([1, 2]) == set()
    assert time.monotonic() - started < 1.0  # one failed connection, then paused


def test_a_note_redis_refuses_is_seen_within_max_unread_notes_and_pauses_the_journal(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        client = journal_client(server.url)
        journal = RedisJournal(client, ttl_seconds=60)
        assert journal.accepted(1)
        client.config_set("maxmemory", 1)  # every write refused from here: "-OOM command not allowed"
        answers = [journal.accepted(n) for n in range(2, 2 + RedisJournal.MAX_UNREAD + 2)]
        assert answers[: RedisJournal.MAX_UNREAD - 1] == [True] * (RedisJournal.MAX_UNREAD - 1)  # replies not read yet
        assert answers[RedisJournal.MAX_UNREAD - 1 :] == [False] * 3  # read: refused, then paused
        client.config_set("maxmemory", 0)
        assert journal.accepted_among([1, 2]) == set()  # paused: reads wait out the pause too
        assert client.exists(journal_key(1)) and not client.exists(journal_key(2))
    finally:
        server.stop()


def test_a_group_holding_an_unjournaled_send_is_written_at_the_group_size() -> None:
    groups: list[list[int]] = []
    writer = GroupWriter(
        write=lambda group: groups.append(list(group.sent)),
        give_up_at=time.monotonic() + 30, group_size=2, journaled_group_size=10, group_seconds=60,
    )  # fmt: skip
    writer.group.sent.append(1)
    assert writer.added(journaled=False)
    writer.group.sent.append(2)
    assert writer.added()
    assert groups == [[1, 2]]  # written at once, in the send loop, before the next message
    writer.group.sent.append(3)
    assert writer.added() and groups == [[1, 2]]  # the next group is journaled again: it may grow


def test_a_journaled_group_grows_to_its_own_size_and_a_send_the_journal_lacks_cuts_it() -> None:
    groups: list[list[int]] = []
    writer = GroupWriter(
        write=lambda group: groups.append(list(group.sent)),
        give_up_at=time.monotonic() + 30, group_size=2, journaled_group_size=5, group_seconds=60,
    )  # fmt: skip
    for delivery_id in (1, 2, 3, 4):
        writer.group.sent.append(delivery_id)
        assert writer.added()
    assert groups == []  # four journaled sends: not yet
    writer.group.sent.append(5)
    assert writer.added(journaled=False)
    assert groups == [[1, 2, 3, 4, 5]]  # one unjournaled: the group bound is group_size again


def test_rows_accepted_before_their_worker_was_lost_are_settled_as_sent_not_sent_again(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer, client: redis.Redis
) -> None:
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=1)
        enroll_people(session, course, [f"p{n}@example.org" for n in range(5)], now=clock.now())
    settings = settings.model_copy(update={"lease_seconds": 60})
    journal = RedisJournal(client, ttl_seconds=600)

    def claim() -> tuple[list[int], str]:
        tasks: list[tuple[list[int], str]] = []
        dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token)))
        assert len(tasks) == 1, tasks
        return tasks[0]

    # A first send task takes the rows over, the relay accepts two of them, and the worker is
    # killed before any outcome is written: the journal alone knows.
    ids, token = claim()
    with sessions.begin() as session:
        take_over(session, ids, token=token, now=clock.now(), lease=timedelta(seconds=60))
    journal.accepted(ids[0])
    journal.accepted(ids[3])
    clock.advance(timedelta(seconds=61))  # the lease runs out; the dispatcher takes the rows back

    ids_again, token_again = claim()
    assert sorted(ids_again) == sorted(ids)
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    sender = Sender(
        settings, sessions=sessions, transport=transport, renderer=Renderer(settings.templates_dir),
        signer=signer_from_settings(settings), clock=clock, journal=journal,
    )  # fmt: skip
    try:
        report = sender.send_claimed(ids_again, token_again)
    finally:
        transport.close()

    assert report.already_sent == 2 and report.sent == 5
    received = {mail.message["Message-ID"] for mail in smtp_server.received}
    assert received == {message_id_for(i, settings.list_id_domain) for i in ids if i not in (ids[0], ids[3])}
    with sessions() as session:
        states = {row.id: (row.state, row.message_id) for row in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    assert {state for state, _ in states.values()} == {DeliveryState.SENT}
    assert all(message_id for _, message_id in states.values())
    # Sent this time, the other three are noted too: a third take-over would send nothing.
    assert journal.accepted_among(ids) == set(ids)
