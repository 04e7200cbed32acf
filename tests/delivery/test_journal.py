"""The send journal (course/delivery/journal.py) on a real Redis, and what the sender does with it:
a row the relay accepted under a lease that ran out before its outcome was written is settled as
sent by whoever takes it over, not sent again; a Redis that is away costs no waiting per message
and sends nothing twice more than without the journal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due
from course.delivery.journal import (
    JOURNAL_OFF,
    NoJournal,
    RedisJournal,
    Spool,
    journal_client,
    journal_key,
    judge_durability,
    read_mode,
)
from course.delivery.links import signer_from_settings
from course.delivery.outcomes import GroupWriter
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.ledger import Outcome, message_ids_from_secret, take_over
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
    assert received == {message_ids_from_secret(settings.list_id_domain, settings.secret_key).for_delivery(i) for i in ids if i not in (ids[0], ids[3])}
    with sessions() as session:
        states = {row.id: (row.state, row.message_id) for row in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    assert {state for state, _ in states.values()} == {DeliveryState.SENT}
    assert all(message_id for _, message_id in states.values())
    # Sent this time, the other three are noted too: a third take-over would send nothing.
    assert journal.accepted_among(ids) == set(ids)


# --- trusted only as far as it is durable (issue #24) ----------------------------------------------


@pytest.mark.parametrize(
    ("config", "replicas", "wait", "durable", "words"),
    [
        ({"appendonly": "yes", "appendfsync": "everysec"}, 0, 0, True, "appendfsync everysec"),
        ({"appendonly": "yes", "appendfsync": "always"}, 0, 0, True, "appendfsync always"),
        ({"appendonly": "yes", "appendfsync": "no"}, 0, 0, False, "host crash"),
        ({"appendonly": "no", "appendfsync": "everysec"}, 0, 0, False, "appendonly no"),
        ({"appendonly": "no", "appendfsync": "everysec"}, 1, 1, True, "1 of 1 online replicas (WAIT)"),
        ({"appendonly": "no", "appendfsync": "everysec"}, 0, 1, False, "0 replicas online"),
        ({}, 0, 0, False, "cannot be read"),
    ],
)
def test_the_journal_is_durable_with_a_synced_append_only_file_or_acknowledging_replicas(
    config: dict[str, str], replicas: int, wait: int, durable: bool, words: str
) -> None:
    judged, reason = judge_durability(config, connected_replicas=replicas, wait_replicas=wait)
    assert judged is durable and words in reason


@pytest.mark.parametrize("persistent", [True, False])
def test_the_mode_and_epoch_say_whether_notes_survive_a_redis_crash(tmp_path: Path, persistent: bool) -> None:
    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    try:
        journal = RedisJournal(journal_client(server.url), ttl_seconds=600)
        mode = journal.mode()
        assert mode.durable is persistent and mode.name == ("durable" if persistent else "volatile")
        assert len(mode.epoch) == 32 and journal.mode() == mode  # read once per MODE_REFRESH_SECONDS
        for name in ("durable", "volatile", "off"):  # the metric says which, for the alert
            assert REGISTRY.get_sample_value("course_send_journal_mode", {"mode": name}) == (1 if name == mode.name else 0)
        assert journal.accepted(7) and journal.accepted_among([7]) == {7}
        time.sleep(1.2)  # appendfsync everysec
        server.process.kill()  # type: ignore[union-attr]  # SIGKILL: no shutdown save
        server.process.wait(10)  # type: ignore[union-attr]
        server.start()
        after = read_mode(journal_client(server.url))
        assert (after.epoch == mode.epoch) is persistent  # an emptied Redis has a new epoch
        assert (journal_client(server.url).exists(journal_key(7)) == 1) is persistent  # type: ignore[attr-defined]
    finally:
        server.stop()


def test_no_redis_is_the_journal_off() -> None:
    assert NoJournal().mode() == JOURNAL_OFF and not JOURNAL_OFF.durable


def _sender(settings: Settings, sessions: sessionmaker[Session], clock: ManualClock, journal: object, transport: object) -> Sender:
    return Sender(
        settings, sessions=sessions, transport=transport, renderer=Renderer(settings.templates_dir),  # type: ignore[arg-type]
        signer=signer_from_settings(settings), clock=clock, journal=journal,  # type: ignore[arg-type]
    )  # fmt: skip


def _claim(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock) -> tuple[list[int], str]:
    tasks: list[tuple[list[int], str]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token)))
    assert len(tasks) == 1, tasks
    return tasks[0]


@pytest.mark.parametrize("persistent", [True, False])
def test_outcome_groups_grow_past_the_group_size_only_while_the_journal_is_durable(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    tmp_path: Path, persistent: bool,
) -> None:  # fmt: skip
    """Issue #24: a journal lost with Redis, together with a lost worker, re-sent its whole
    journal-sized group (3-9x the no-journal group). A volatile journal now keeps the small groups."""
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=1)
        enroll_people(session, course, [f"g{n}@example.org" for n in range(6)], now=clock.now())
    settings = settings.model_copy(update={"outcome_group_size": 2, "outcome_group_seconds": 60.0, "send_chunk_size": 500})
    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    try:
        ids, token = _claim(sessions, settings, clock)
        report = _sender(settings, sessions, clock, RedisJournal(journal_client(server.url), ttl_seconds=600), transport).send_claimed(ids, token)
    finally:
        transport.close()
        server.stop()
    assert report.sent == 6 and report.journal == ("durable" if persistent else "volatile")
    assert report.outcome_writes == (1 if persistent else 3)  # one journaled group, or groups of 2


def test_a_take_over_after_the_journal_was_lost_treats_unrecorded_rows_as_of_unknown_outcome(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer, tmp_path: Path
) -> None:
    """Rows taken over under one journal epoch, never recorded, are found after a Redis restart that
    emptied the journal: perhaps accepted, so they take the back-off path, not sent again at once."""
    with sessions.begin() as session:
        course = make_course(session, now=clock.now(), lessons=1)
        enroll_people(session, course, [f"e{n}@example.org" for n in range(3)], now=clock.now())
    settings = settings.model_copy(update={"lease_seconds": 60})
    server = RedisServer(tmp_path)
    server.start()
    transport = SMTPTransport(SMTPConfig(settings.smtp_host, settings.smtp_port, timeout=5))
    try:
        journal = RedisJournal(journal_client(server.url), ttl_seconds=600)
        ids, token = _claim(sessions, settings, clock)
        with sessions.begin() as session:  # a task takes them over, sends, and dies with Redis
            take_over(session, ids, token=token, now=clock.now(), lease=timedelta(seconds=60), journal_epoch=journal.mode().epoch)
        journal.accepted(ids[0])
        server.restart()  # no persistence: the note and the epoch are gone
        clock.advance(timedelta(seconds=61))
        ids_again, token_again = _claim(sessions, settings, clock)
        fresh = RedisJournal(journal_client(server.url), ttl_seconds=600)
        report = _sender(settings, sessions, clock, fresh, transport).send_claimed(ids_again, token_again)
    finally:
        transport.close()
        server.stop()
    assert report.sent == 0 and report.unknown_after_journal_loss == 3 and report.retried == 3
    assert smtp_server.received == []
    with sessions() as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.id.in_(ids))))
    assert {row.state for row in rows} == {DeliveryState.PENDING}
    assert all(row.due_at > clock.now() and "journal" in (row.last_error or "") for row in rows)
    assert {row.journal_epoch for row in rows} == {None}  # recorded: the next take-over compares nothing


def test_an_abandoned_task_keeps_its_accepted_rows_in_the_spool_for_the_take_over(tmp_path: Path) -> None:
    """The database away past the lease: the group that could not be written is kept, on this host,
    where the next take-over (or the dispatcher's give-up) reads it with the journal."""
    spool = Spool(tmp_path / "spool", ttl_seconds=600)
    kept: list[list[int]] = []

    def database_away(group: Outcome) -> None:
        raise OperationalError("UPDATE deliveries", {}, Exception("server closed the connection"))

    writer = GroupWriter(
        write=database_away, give_up_at=time.monotonic() - 1, group_size=10, group_seconds=60,
        on_abandon=lambda group: (kept.append(list(group.sent)), NoJournal(spool).keep(group.sent)),  # type: ignore[func-returns-value]
    )  # fmt: skip
    writer.group.sent.extend([4, 5])
    writer.group.retry.append((6, datetime.now(UTC), "4xx"))
    assert not writer.flush() and writer.abandoned
    assert kept == [[4, 5]]
    assert NoJournal(Spool(tmp_path / "spool", ttl_seconds=600)).accepted_among([3, 4, 5, 6]) == {4, 5}
    assert not list((tmp_path / "spool").glob("*.partial"))


def test_a_replica_acknowledging_the_notes_makes_the_journal_durable_and_its_loss_is_seen(tmp_path: Path) -> None:
    """COURSE_SEND_JOURNAL_WAIT_REPLICAS: a Redis without an append-only file is trusted while a
    replica acknowledges the notes (WAIT every MAX_UNREAD notes); without it, a note fails."""
    primary, replica = RedisServer(tmp_path / "primary"), RedisServer(tmp_path / "replica")
    for server in (primary, replica):
        server.root.mkdir()
        server.start()
    try:
        redis.Redis(port=primary.port).config_set("repl-diskless-sync-delay", 0)  # the first sync at once, not after 5 s
        redis.Redis(port=replica.port).replicaof("127.0.0.1", primary.port)
        client = journal_client(primary.url)
        wait_until_replicas = time.monotonic() + 20
        journal = RedisJournal(client, ttl_seconds=600, wait_replicas=1)
        while not read_mode(client, wait_replicas=1).durable:  # online once its first sync is done
            assert time.monotonic() < wait_until_replicas, "the replica did not come online"
            time.sleep(0.1)
        assert journal.mode().durable and "WAIT" in journal.mode().reason
        # Its first acknowledgement, on a client of its own: the journal's client gives up on a reply
        # after 0.5 s, and a replica on a loaded machine may take longer to answer a WAIT.
        plain = redis.Redis(port=primary.port)
        plain.set("course:test:replicated", "1")
        assert plain.execute_command("WAIT", 1, 5000) == 1
        plain.close()
        assert all(journal.accepted(n) for n in range(RedisJournal.MAX_UNREAD + 1))  # read, acknowledged
        replica.stop()
        answers = [journal.accepted(n) for n in range(100, 100 + RedisJournal.MAX_UNREAD + 1)]
        assert answers[-1] is False  # the WAIT said 0 of 1: the group is written at once
    finally:
        primary.stop()
        replica.stop()
