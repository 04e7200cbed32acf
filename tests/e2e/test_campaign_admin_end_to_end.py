"""Campaigns from the admin's side, on real parts: PostgreSQL, Redis, a real Celery worker and a
real SMTP server. A campaign is composed and scheduled through the admin API, fanned out by the
campaign task and sent by the worker while its progress is read the way the page polls it, until
it is done. A second campaign is paused while the worker is sending it (the server is slowed so
the worker is mid-send), resumed, and the server ends with every message exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.campaigns.service import tag_subscribers
from course.clock import ManualClock
from course.db import make_engine
from course.models import AdminRole, Delivery, DeliveryState, Subscriber
from course.settings import Settings, get_settings
from course.web.app import create_app
from tests.support.admin_fixtures import make_token
from tests.support.services import make_settings
from tests.support.smtp_server import RecordingSMTPServer
from worker.app import app as celery_app
from worker.config import ALL_QUEUES, celery_config

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
CHUNK = 4  # deliveries per send task: many small tasks, so a pause lands between them


@pytest.fixture
def stack(
    tmp_path: Path, smtp_server: RecordingSMTPServer, monkeypatch: pytest.MonkeyPatch, clock: ManualClock,
    pg_database_url: str, redis_url: str,
) -> Iterator[Settings]:  # fmt: skip
    settings = make_settings(
        tmp_path, pg_database_url, smtp_host=smtp_server.host, smtp_port=smtp_server.port, broker_url=redis_url,
        send_chunk_size=CHUNK, base_url="http://testserver",
    )  # fmt: skip
    for name, value in {
        "COURSE_DATABASE_URL": pg_database_url,
        "COURSE_BROKER_URL": redis_url,
        "COURSE_SMTP_HOST": smtp_server.host,
        "COURSE_SMTP_PORT": str(smtp_server.port),
        "COURSE_SECRET_KEY": settings.secret_key,
        "COURSE_BASE_URL": settings.base_url,
        "COURSE_VAR_DIR": str(settings.var_dir),
        "COURSE_SEND_CHUNK_SIZE": str(CHUNK),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    celery_app.conf.update(celery_config(settings, redis_url))
    celery_app._after_fork()
    with start_worker(celery_app, pool="threads", concurrency=2, queues=list(ALL_QUEUES), perform_ping_check=False):
        yield settings


def _readers(sessions: sessionmaker[Session], clock: ManualClock, tag: str, count: int) -> None:
    with sessions.begin() as session:
        for n in range(count):
            session.add(Subscriber(email=f"{tag}{n}@example.org", name=f"Reader {n}", timezone="UTC", status="active", created_at=clock.now()))
        session.flush()
        for n in range(count):
            tag_subscribers(session, f"{tag}{n}@example.org", [tag])


def _start_and_dispatch() -> None:
    """What beat has run every few seconds: the campaign task (fan out due campaigns, mark finished
    ones done) and the dispatcher, run here as beat's worker would run them; the send tasks the
    dispatcher enqueues go through Redis to the real worker."""
    from worker.campaign_tasks import start_and_finish_campaigns
    from worker.tasks import dispatch

    start_and_finish_campaigns()
    dispatch()


def _wait(condition, timeout: float = 60, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _received(smtp: RecordingSMTPServer, subject: str) -> Counter[str]:
    return Counter(address for mail in smtp.received if mail.message["Subject"] == subject for address in mail.envelope_to)


def test_schedule_watch_done_then_pause_and_resume_mid_send_sends_each_once(
    stack: Settings, smtp_server: RecordingSMTPServer, clock: ManualClock
) -> None:
    engine = make_engine(stack.sqlalchemy_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    _readers(sessions, clock, "bakers", 5)
    _readers(sessions, clock, "readers", 60)
    api = TestClient(create_app(stack), base_url="http://testserver", headers={"Authorization": f"Bearer {make_token(sessions, AdminRole.EDITOR, now=clock.now())}"})

    def compose(name: str, subject: str, tag: str) -> int:
        created = api.post("/api/admin/campaigns", json={"name": name, "subject": subject, "sender": "newsletter@example.org", "body_markdown": f"# {subject}\n\nHello.", "audience": {"tags_any": [tag]}})
        assert created.status_code == 201, created.text
        return created.json()["id"]

    # 1. Compose, schedule now, and watch the progress the page polls move to done.
    first = compose("Bakers news", "For bakers", "bakers")
    assert api.post(f"/api/admin/campaigns/{first}/schedule", json={"mode": "now"}).json()["recipients"] == 5
    _start_and_dispatch()
    smtp_server.wait_for(5, timeout=30)

    def done() -> bool:
        _start_and_dispatch()
        return api.get(f"/api/admin/campaigns/{first}").json()["status"] == "done"

    _wait(done, what="the first campaign to be done")
    final = api.get(f"/api/admin/campaigns/{first}/progress").json()
    assert final["sent"] == 5 and final["remaining"] == 0 and final["percent_settled"] == 100
    assert _received(smtp_server, "For bakers") == Counter({f"bakers{n}@example.org": 1 for n in range(5)})

    # 2. A second campaign, paused while the worker is sending it through a slow server.
    smtp_server.data_delay_seconds = 0.05
    second = compose("Readers news", "For readers", "readers")
    api.post(f"/api/admin/campaigns/{second}/schedule", json={"mode": "now"})
    _start_and_dispatch()
    _wait(lambda: sum(_received(smtp_server, "For readers").values()) >= 8, what="the worker to be mid-send")
    paused = api.post(f"/api/admin/campaigns/{second}/pause").json()
    assert paused["status"] == "paused"

    def in_flight() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).where(Delivery.campaign_id == second, Delivery.state.in_([DeliveryState.LEASED, DeliveryState.SENDING]))) or 0

    _wait(lambda: in_flight() == 0, what="the tasks already sending to finish")
    sent_while_paused = sum(_received(smtp_server, "For readers").values())
    assert 8 <= sent_while_paused < 60, sent_while_paused  # it was stopped mid-send
    print(f"paused after {sent_while_paused} of 60")
    _start_and_dispatch()  # beat keeps running during a pause: nothing held goes out
    time.sleep(1.0)
    assert sum(_received(smtp_server, "For readers").values()) == sent_while_paused
    progress = api.get(f"/api/admin/campaigns/{second}/progress").json()
    assert progress["held"] == 60 - sent_while_paused and progress["sent"] == sent_while_paused

    smtp_server.data_delay_seconds = 0.0
    assert api.post(f"/api/admin/campaigns/{second}/resume").json()["status"] == "sending"
    _start_and_dispatch()
    smtp_server.wait_for(5 + 60, timeout=60)
    _wait(lambda: api.get(f"/api/admin/campaigns/{second}/progress").json()["remaining"] == 0, what="every row to settle")
    time.sleep(0.5)  # a duplicate, if there were one, would arrive now
    assert _received(smtp_server, "For readers") == Counter({f"readers{n}@example.org": 1 for n in range(60)})
    assert len(smtp_server.received) == 65
    engine.dispose()
