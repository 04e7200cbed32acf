"""Heartbeats, /healthz, /readyz, /metrics and `course health`, on real databases and Redis."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from course.clock import ManualClock
from course.ops.health import (
    DISPATCHER,
    HeartbeatThread,
    describe_heartbeats,
    read_heartbeats,
    record_heartbeat,
    worker_component,
)
from course.ledger import claim_due
from course.settings import Settings, get_settings
from course.web.app import create_app
from tests.support.ledger_rows import add_rows
from tests.support.services import make_settings

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_heartbeats_are_upserted_and_a_stale_one_is_an_alarm(db: sessionmaker[Session], tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://", dispatch_interval_seconds=5, heartbeat_stale_seconds=60)
    with db.begin() as session:
        record_heartbeat(session, DISPATCHER, now=NOW - timedelta(minutes=4), detail="claimed 10 rows")
        record_heartbeat(session, "worker:a", now=NOW - timedelta(minutes=5))
        record_heartbeat(session, "worker:a", now=NOW - timedelta(seconds=3))  # the same row, refreshed
    with db() as session:
        rows = read_heartbeats(session)
    assert [row.component for row in rows] == [DISPATCHER, "worker:a"]
    statuses = {s.component: s for s in describe_heartbeats(rows, now=NOW, settings=settings)}
    assert statuses[DISPATCHER].stale
    assert statuses[DISPATCHER].line.startswith("dispatcher last ran 4 min ago")
    assert "claimed 10 rows" in statuses[DISPATCHER].line
    assert not statuses["worker:a"].stale
    assert statuses["worker:a"].line.startswith("worker:a last seen 3 s ago")


def test_a_dispatcher_that_never_ran_is_an_alarm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://")
    [status] = describe_heartbeats([], now=NOW, settings=settings)
    assert status.stale and "never run" in status.line


def test_the_heartbeat_thread_writes_and_survives_a_failing_database(db: sessionmaker[Session]) -> None:
    beats = HeartbeatThread(db, "beat", interval=0.05, now=lambda: NOW)
    assert beats.beat_once()
    with db() as session:
        assert [row.component for row in read_heartbeats(session)] == ["beat"]
    from course.db import make_engine

    broken = HeartbeatThread(
        sessionmaker(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")), "beat", interval=0.05, now=lambda: NOW
    )
    assert broken.beat_once() is False  # logged, not raised


@pytest.fixture
def ops_settings(tmp_path: Path, pg_database_url: str, redis_url: str) -> Settings:
    return make_settings(tmp_path, pg_database_url, broker_url=redis_url)


def test_healthz_readyz_and_metrics(ops_settings: Settings, clock: ManualClock) -> None:
    from course.db import session_factory

    sessions = session_factory(ops_settings)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        add_rows(session, now, [timedelta(seconds=-30), timedelta(seconds=-30), timedelta(hours=1)])
        claim_due(session, now=now, limit=1, lease=timedelta(minutes=5))
        record_heartbeat(session, DISPATCHER, now=now - timedelta(minutes=4))
        record_heartbeat(session, worker_component("w1"), now=now)
    with TestClient(create_app(ops_settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["database"] == "ok" and body["broker"] == "ok"
        assert body["alarms"] == [line for line in body["alarms"] if line.startswith("dispatcher last ran 4 min ago")]
        assert len(body["alarms"]) == 1
        assert [h["component"] for h in body["heartbeats"]] == [DISPATCHER, "worker:w1"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
    assert 'course_deliveries{kind="transactional",state="pending"} 2.0' in text
    assert 'course_deliveries{kind="transactional",state="leased"} 1.0' in text
    assert "course_deliveries_in_flight 1.0" in text
    lag = float(next(line for line in text.splitlines() if line.startswith("course_dispatch_lag_seconds ")).split()[1])
    assert 29 <= lag < 120
    assert 'course_queue_depth{queue="bulk"} 0.0' in text
    assert 'course_heartbeat_age_seconds{component="dispatcher"}' in text
    assert "course_smtp_replies_total" in text or "# HELP course_smtp_replies_total" in text
    assert "# TYPE course_send_latency_seconds histogram" in text


def test_readyz_is_503_when_the_broker_or_the_database_is_down(tmp_path: Path, pg_database_url: str) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(make_settings(tmp_path, pg_database_url, broker_url=dead_redis))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["broker"] == "down" and ready.json()["database"] == "ok"
        assert client.get("/healthz").status_code == 200  # the process itself is fine
    dead_database = f"postgresql+psycopg://root@127.0.0.1:{free_port()}/none"
    with TestClient(create_app(make_settings(tmp_path, dead_database, broker_url="memory://"))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "down"


def test_course_health_and_status_report_heartbeats(
    pg_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from course.cli.main import app
    from course.db import make_engine

    monkeypatch.setenv("COURSE_DATABASE_URL", pg_database_url)
    monkeypatch.setenv("COURSE_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    runner = CliRunner()
    missing = runner.invoke(app, ["health", "worker"])
    assert missing.exit_code == 1 and "no heartbeat" in missing.output
    engine = make_engine(pg_database_url)
    sessions = sessionmaker(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_heartbeat(session, worker_component(), now=now)
        record_heartbeat(session, DISPATCHER, now=now - timedelta(minutes=4))
    engine.dispose()
    alive = runner.invoke(app, ["health", "worker"])
    assert alive.exit_code == 0, alive.output
    stale = runner.invoke(app, ["health", "dispatcher"])
    assert stale.exit_code == 1 and "dispatcher last seen 24" in stale.output  # 240 s, give or take the test's own time
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "ALARM dispatcher last ran 4 min ago" in status.output
    web = runner.invoke(app, ["health", "web", "--url", f"http://127.0.0.1:{free_port()}/healthz"])
    assert web.exit_code == 1 and "does not answer" in web.output


@pytest.mark.parametrize("persistent", [True, False])
def test_readyz_says_whether_the_send_journal_survives_a_redis_crash(tmp_path: Path, pg_database_url: str, persistent: bool) -> None:
    from tests.support.fault_stack import RedisServer

    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    try:
        with TestClient(create_app(make_settings(tmp_path, pg_database_url, broker_url=server.url))) as client:
            body = client.get("/readyz").json()
    finally:
        server.stop()
    journal = body["send_journal"]
    assert journal["durable"] is persistent and journal["mode"] == ("durable" if persistent else "volatile")
    assert ("appendfsync everysec" if persistent else "appendonly no") in journal["reason"]
    assert body["status"] == "ready"  # a volatile journal is slower and less safe, not unready
