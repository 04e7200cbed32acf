"""Several providers through the sender, against real aiosmtpd servers, on PostgreSQL and SQLite,
with the gate on a real Redis: routing by course and From domain, the provider recorded with each
row, a provider that refuses connections or answers 421 paused while its rows wait or take the
fallback, and a per-second limit measured at the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from course.clock import ManualClock
from course.delivery.dispatch import dispatch_due, in_flight_cap
from course.delivery.gate import PausePolicy, RedisGate
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.delivery.sending import Sender
from course.delivery.transports.registry import TransportRegistry
from course.models import Course, Delivery, DeliveryState
from course.settings import ProviderSettings, Settings
from tests.support.pipeline_fixtures import enroll_people, make_course
from tests.support.smtp_server import RecordingSMTPServer

PEOPLE = [f"reader{n}@example.org" for n in range(6)]


@pytest.fixture
def bulk_server() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def gate(redis_url: str) -> Iterator[RedisGate]:
    client = redis.Redis.from_url(redis_url)
    yield RedisGate(client, PausePolicy(pause_seconds=30, pause_max_seconds=300, failures_to_pause=3))
    client.close()


@pytest.fixture
def make_sender(sessions: sessionmaker[Session], clock: ManualClock, gate: RedisGate) -> Iterator[Callable[[Settings], Sender]]:
    registries: list[TransportRegistry] = []

    def build(settings: Settings) -> Sender:
        registry = TransportRegistry(settings.provider_settings)
        registries.append(registry)
        return Sender(
            settings, sessions=sessions, transports=registry.get, gate=gate,
            renderer=Renderer(settings.templates_dir), signer=signer_from_settings(settings), clock=clock,
        )  # fmt: skip

    yield build
    for registry in registries:
        registry.close()


def with_bulk(settings: Settings, server: RecordingSMTPServer | None, **provider: object) -> Settings:
    port = server.port if server is not None else _closed_port()
    return settings.model_copy(update={"providers": {"bulk": ProviderSettings(host="127.0.0.1", port=port, timeout=5, connect_timeout=2, **provider)}})


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the probe is closed


def claim(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock) -> list[tuple[list[int], str]]:
    tasks: list[tuple[list[int], str]] = []
    dispatch_due(sessions, settings=settings, clock=clock, enqueue=lambda ids, token, urgent: tasks.append((ids, token)))
    return tasks


def course_for(sessions: sessionmaker[Session], clock: ManualClock, *, provider: str | None = None, sender_email: str | None = None) -> None:
    with sessions.begin() as session:
        course = make_course(session, now=clock.now())
        course.provider = provider
        if sender_email:
            course.sender_email = sender_email
        enroll_people(session, course, PEOPLE, now=clock.now())


def rows(sessions: sessionmaker[Session], ids: list[int]) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)))


def send_all(sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, sender: Sender) -> list[int]:
    ids: list[int] = []
    for chunk, token in claim(sessions, settings, clock):
        sender.send_claimed(chunk, token)
        ids += chunk
    return ids


def test_a_course_naming_a_provider_sends_through_it_and_the_row_records_it(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    bulk_server: RecordingSMTPServer, make_sender: Callable[[Settings], Sender],
) -> None:
    settings = with_bulk(settings, bulk_server)
    course_for(sessions, clock, provider="bulk")
    ids = send_all(sessions, settings, clock, make_sender(settings))
    assert len(bulk_server.received) == len(PEOPLE) and smtp_server.received == []
    assert {(row.state, row.provider) for row in rows(sessions, ids)} == {(DeliveryState.SENT, "bulk")}


def test_the_from_domain_routes_and_other_mail_takes_the_fallback(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    bulk_server: RecordingSMTPServer, make_sender: Callable[[Settings], Sender],
) -> None:
    settings = with_bulk(settings, bulk_server, from_domains=("news.example.net",))
    course_for(sessions, clock, sender_email="lessons@news.example.net")
    ids = send_all(sessions, settings, clock, make_sender(settings))
    assert len(bulk_server.received) == len(PEOPLE)
    assert {row.provider for row in rows(sessions, ids)} == {"bulk"}
    with sessions.begin() as session:
        session.execute(update(Course).values(sender_email="lessons@elsewhere.example"))
    clock.advance(timedelta(days=1))
    ids = send_all(sessions, settings, clock, make_sender(settings))
    assert len(smtp_server.received) == len(PEOPLE)
    assert {row.provider for row in rows(sessions, ids)} == {"default"}


def test_an_unreachable_provider_is_paused_for_every_worker_and_its_mail_takes_the_fallback(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender], gate: RedisGate,
) -> None:
    settings = with_bulk(settings, None)  # nothing listens on its port
    course_for(sessions, clock, provider="bulk")
    ids = send_all(sessions, settings, clock, make_sender(settings))
    # One refused connection paused it; every message went through `default` instead.
    assert len(smtp_server.received) == len(PEOPLE)
    assert {(row.state, row.provider) for row in rows(sessions, ids)} == {(DeliveryState.SENT, "default")}
    health = gate.health("bulk")
    assert health.paused_until is not None and "cannot connect" in health.reason
    assert gate.acquire("bulk", settings.provider_settings["bulk"], urgent=True, max_wait=1).paused


def test_with_no_fallback_the_rows_of_a_paused_provider_wait_in_the_database(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender],
) -> None:
    settings = with_bulk(settings, None).model_copy(update={"provider_fallback": ("bulk",)})
    course_for(sessions, clock)
    sender = make_sender(settings)
    tasks = claim(sessions, settings, clock)
    report = sender.send_claimed(*tasks[0])
    assert report.sent == 0 and report.deferred == len(PEOPLE)
    assert smtp_server.received == []
    for row in rows(sessions, tasks[0][0]):
        # Pending, due when the pause ends (30 s), not failed, nothing lost.
        assert row.state == DeliveryState.PENDING and row.lease_token is None
        assert clock.now() + timedelta(seconds=25) <= row.due_at <= clock.now() + timedelta(seconds=31)
        assert "provider bulk" in (row.last_error or "")


def test_a_421_storm_pauses_the_provider_after_three_and_the_rest_wait(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    bulk_server: RecordingSMTPServer, make_sender: Callable[[Settings], Sender], gate: RedisGate,
) -> None:
    settings = with_bulk(settings, bulk_server).model_copy(update={"provider_fallback": ("bulk",)})
    bulk_server.fail_next(421, "4.7.0 Too many messages, slow down", times=len(PEOPLE), at="RCPT")
    course_for(sessions, clock)
    tasks = claim(sessions, settings, clock)
    report = make_sender(settings).send_claimed(*tasks[0])
    assert (report.retried, report.sent) == (len(PEOPLE), 0)
    assert report.deferred == len(PEOPLE) - 3  # three 421s paused it: the others were not tried
    assert gate.health("bulk").paused_until is not None and "421" in gate.health("bulk").reason
    assert {row.state for row in rows(sessions, tasks[0][0])} == {DeliveryState.PENDING}


def test_the_per_second_limit_holds_at_the_server(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender],
) -> None:
    limited = settings.model_copy(update={"smtp_max_per_second": 4.0})
    course_for(sessions, clock)
    started = time.monotonic()
    send_all(sessions, limited, clock, make_sender(limited))
    elapsed = time.monotonic() - started
    assert len(smtp_server.received) == len(PEOPLE)
    assert elapsed >= (len(PEOPLE) - 1) / 4 - 0.05  # 6 messages at 4/s: 1.25 s at least
    times = sorted(mail.received_at for mail in smtp_server.received)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert sorted(gaps)[len(gaps) // 2] >= 0.2, gaps  # 0.25 s apart, give or take a loaded machine's jitter


def send_in_a_process(settings_json: str, redis_url: str, ids: list[int], token: str) -> int:
    """A send worker process of its own (spawned): its own interpreter, connection and gate
    client, as Celery's would be. Returns how many it sent."""
    from course.clock import SystemClock
    from course.db import make_engine

    settings = Settings.model_validate_json(settings_json)
    engine = make_engine(settings.sqlalchemy_url)
    registry = TransportRegistry(settings.provider_settings)
    client = redis.Redis.from_url(redis_url)
    try:
        sender = Sender(
            settings, sessions=sessionmaker(engine, expire_on_commit=False), transports=registry.get,
            gate=RedisGate(client, PausePolicy()), renderer=Renderer(settings.templates_dir),
            signer=signer_from_settings(settings), clock=SystemClock(),
        )  # fmt: skip
        return sender.send_claimed(ids, token).sent
    finally:
        registry.close()
        client.close()
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # the gate is under test, not the database
def test_the_per_second_limit_holds_for_several_worker_processes_at_once(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer, redis_url: str,
) -> None:
    """Three send processes share 50/s through the gate: the server (in this process, otherwise
    idle) sees at most 50 (+5 %) in any 1 s window, and the 150 messages take 3 s. The full-size
    run is `course bench --scenario throttled` (200/s, 4 Celery workers)."""
    import multiprocessing

    from course.devtools.bench.throttled import max_in_window

    limited = settings.model_copy(update={"smtp_max_per_second": 50.0, "send_chunk_size": 50})
    with sessions.begin() as session:
        course = make_course(session, now=clock.now())
        enroll_people(session, course, [f"many{n}@example.org" for n in range(150)], now=clock.now())
    tasks = claim(sessions, limited, clock)
    assert len(tasks) == 3
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        sent = pool.starmap(send_in_a_process, [(limited.model_dump_json(), redis_url, ids, token) for ids, token in tasks])
    assert sum(sent) == 150
    arrivals = [mail.received_at.timestamp() for mail in smtp_server.received]
    assert len(arrivals) == 150
    assert max_in_window(arrivals) <= 50 * 1.05, sorted(arrivals)
    assert max(arrivals) - min(arrivals) >= 149 / 50 * 0.95


def test_the_dispatcher_hands_out_no_more_than_limited_providers_can_send_soon(settings: Settings) -> None:
    limited = settings.model_copy(update={"smtp_max_per_second": 10.0, "dispatch_interval_seconds": 5.0, "send_chunk_size": 100})
    assert in_flight_cap(limited) == 150  # three intervals at 10/s
    assert in_flight_cap(settings) == settings.dispatch_max_in_flight  # an unlimited provider: no cap


def test_a_campaign_whose_error_rate_passes_the_threshold_is_paused_by_the_system(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender],
) -> None:
    from course.audience.enrollment import get_or_create_subscriber
    from course.campaigns.service import fan_out, resume, schedule_campaign, tag_subscribers
    from course.models import Campaign, CampaignStatus

    strict = settings.model_copy(update={"campaign_max_error_rate": 0.3, "campaign_error_min_rows": 5, "send_chunk_size": 10})
    smtp_server.reject_recipient("gone*@example.org", 550, "5.1.1 No such user")
    with sessions.begin() as session:
        for n in range(20):
            address = f"gone{n}@example.org" if n % 2 else f"here{n}@example.org"
            get_or_create_subscriber(session, address, name="", now=clock.now())
            tag_subscribers(session, address, ["weekly"])
        campaign_id = schedule_campaign(
            session, name="Half dead list", subject="Hello", body_markdown="Hello.", segment_tag="weekly",
            sender_name="The Letter", sender_email="letter@example.org", send_at=clock.now(), now=clock.now(),
        ).id  # fmt: skip
    with sessions.begin() as session:
        fan_out(session, campaign_id, now=clock.now())
    tasks = claim(sessions, strict, clock)
    report = make_sender(strict).send_claimed(*tasks[0])
    assert report.bounced == 5 and report.paused_campaigns  # half of the first 10 bounced: 50 % > 30 %
    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status == CampaignStatus.PAUSED
        assert campaign.paused_reason is not None and "5 of 10 messages bounced or failed" in campaign.paused_reason
        held = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.state == DeliveryState.HELD))
    assert held == 10  # the second chunk, handed out, is held: its take-over finds nothing
    assert make_sender(strict).send_claimed(*tasks[1]).taken == 0
    with sessions.begin() as session:
        resume(session, campaign_id, now=clock.now())
    with sessions() as session:
        assert session.get(Campaign, campaign_id).paused_reason is None  # type: ignore[union-attr]


def test_a_campaign_provider_is_checked_against_the_configured_ones(settings: Settings) -> None:
    from course.campaigns.audience import build_audience
    from course.campaigns.refusals import InputRefused
    from course.campaigns.service import Sender as CampaignSender, check_draft

    fields = dict(
        name="n", subject="s", preheader="", sender="a@example.org", body_markdown="Hi.", audience=build_audience(),
        senders=[CampaignSender("A", "a@example.org")], providers=list(with_bulk(settings, None).provider_settings),
    )
    assert check_draft(provider="bulk", **fields).provider == "bulk"  # type: ignore[arg-type]
    assert check_draft(provider="", **fields).provider is None  # type: ignore[arg-type]
    with pytest.raises(InputRefused) as refused:
        check_draft(provider="nowhere", **fields)  # type: ignore[arg-type]
    assert "provider" in refused.value.fields


def test_a_used_up_daily_quota_keeps_lessons_waiting_but_a_confirmation_still_goes(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender],
) -> None:
    from course.ledger import add_account_mail
    from course.models import Enrollment

    quota = settings.model_copy(update={"smtp_max_per_day": 5})  # bulk may use 4: one is left to urgent mail
    course_for(sessions, clock)
    sender = make_sender(quota)
    ids = send_all(sessions, quota, clock, sender)
    states = [row.state for row in rows(sessions, ids)]
    assert states.count(DeliveryState.SENT) == 4 and states.count(DeliveryState.PENDING) == 2
    waiting = [row for row in rows(sessions, ids) if row.state == DeliveryState.PENDING]
    assert all("max_per_day" in (row.last_error or "") for row in waiting)
    assert all(row.due_at > clock.now() for row in waiting)  # due when the UTC day turns
    with sessions.begin() as session:
        enrollment = session.scalars(select(Enrollment)).first()
        assert enrollment is not None
        add_account_mail(session, subscriber_id=enrollment.subscriber_id, enrollment_id=enrollment.id, template="confirm", now=clock.now())
    urgent = send_all(sessions, quota, clock, sender)
    assert [row.state for row in rows(sessions, urgent)] == [DeliveryState.SENT]
    assert len(smtp_server.received) == 5


def test_a_provider_whose_connections_are_all_held_makes_the_others_wait(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender], gate: RedisGate,
) -> None:
    one = settings.model_copy(update={"smtp_max_connections": 1})
    assert gate.hold_connection("default", 1, "another-worker", seconds=60)
    course_for(sessions, clock)
    tasks = claim(sessions, one, clock)
    report = make_sender(one).send_claimed(*tasks[0])
    assert report.deferred == len(PEOPLE) and smtp_server.received == []
    assert all("connections are all in use" in (row.last_error or "") for row in rows(sessions, tasks[0][0]))
    gate.release_connection("default", "another-worker")
    clock.advance(timedelta(seconds=10))
    sender = make_sender(one)
    send_all(sessions, one, clock, sender)
    assert len(smtp_server.received) == len(PEOPLE)
    assert gate.usage("default").connections == 0  # given back at the end of the task


def test_time_outs_pause_the_provider_after_three(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, bulk_server: RecordingSMTPServer,
    make_sender: Callable[[Settings], Sender], gate: RedisGate,
) -> None:
    slow = with_bulk(settings, bulk_server, data_timeout=0.2).model_copy(update={"provider_fallback": ("bulk",)})
    bulk_server.data_delay_seconds = 0.6
    course_for(sessions, clock)
    tasks = claim(sessions, slow, clock)
    report = make_sender(slow).send_claimed(*tasks[0])
    assert report.retried == len(PEOPLE) and report.deferred == len(PEOPLE) - 3
    assert gate.health("bulk").paused_until is not None and "no reply" in gate.health("bulk").reason


def test_with_the_gate_away_unlimited_providers_send_and_limited_ones_wait(
    sessions: sessionmaker[Session], settings: Settings, clock: ManualClock, smtp_server: RecordingSMTPServer,
    bulk_server: RecordingSMTPServer,
) -> None:
    from course.delivery.gate import gate_client

    away = RedisGate(gate_client(f"redis://127.0.0.1:{_closed_port()}/0"), PausePolicy())
    renderer, signer = Renderer(settings.templates_dir), signer_from_settings(settings)
    for limited, server in ((False, smtp_server), (True, bulk_server)):
        configured = (
            with_bulk(settings, bulk_server, max_per_second=100.0).model_copy(update={"provider_fallback": ("bulk",)})
            if limited else settings
        )  # fmt: skip
        registry = TransportRegistry(configured.provider_settings)
        with sessions.begin() as session:
            course = make_course(session, now=clock.now(), slug=f"c{int(limited)}")
            course.provider = "bulk" if limited else None
            enroll_people(session, course, [f"{int(limited)}{p}" for p in PEOPLE[:3]], now=clock.now())
        sender = Sender(configured, sessions=sessions, transports=registry.get, gate=away, renderer=renderer, signer=signer, clock=clock)
        for ids, token in claim(sessions, configured, clock):
            report = sender.send_claimed(ids, token)
            if limited:
                assert report.deferred == 3 and report.sent == 0
                assert all("cannot be checked" in (row.last_error or "") for row in rows(sessions, ids))
            else:
                assert report.sent == 3
        registry.close()
    assert len(smtp_server.received) == 3 and bulk_server.received == []
