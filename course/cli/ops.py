"""Commands for operators: `course audit` (the ledger's invariants), `course health` (a container's
health check) and `course metrics` (the workers' Prometheus exporter), plus the heartbeat lines of
`course status`."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from course.cli.errors import CommandError
from course.db import session_factory, transaction
from course.ledger import message_ids_from_secret
from course.ops.health import BEAT, DISPATCHER, describe_heartbeats, read_heartbeats, stale_after, worker_component
from course.settings import get_settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def audit_command(
    sink_log: Annotated[
        Path | None,
        typer.Option("--sink-log", help="what the SMTP server accepted: a file with one Message-ID per line, or a folder of .eml files"),
    ] = None,
    max_due_cycles: Annotated[
        int, typer.Option(min=1, help="dispatcher cycles a due row (or an expired lease) may wait before it is a failure")
    ] = 12,
    allow_duplicates: Annotated[int, typer.Option(min=0, help="extra copies in the sink log to tolerate in all")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the findings as JSON")] = False,
) -> None:
    """Check the delivery ledger's invariants; exit 1 when one fails."""
    from course.ops.audit import audit
    from course.clock import get_clock

    settings = get_settings()
    grace = timedelta(seconds=max_due_cycles * settings.dispatch_interval_seconds)
    clock = get_clock(settings)
    with transaction(settings) as session:
        report = audit(
            session,
            now=clock.now(),
            lease_grace=grace * clock.speed,
            due_grace=grace * clock.speed,
            message_ids=message_ids_from_secret(settings.list_id_domain, settings.secret_key),
            sink_log=sink_log,
            allowed_duplicates=allow_duplicates,
        )
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "ok": report.ok,
                    "duplicates": report.duplicates,
                    "duplicated_ids": report.duplicated_ids,
                    "findings": [{"check": f.check, "ok": f.ok, "detail": f.detail} for f in report.findings],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        for finding in report.findings:
            mark = "[green]ok  [/green]" if finding.ok else "[red]FAIL[/red]"
            console.print(f"{mark} {finding.check}: {finding.detail}", highlight=False, markup=True)
        console.print("audit passed" if report.ok else "[red]audit failed[/red]")
    if not report.ok:
        raise typer.Exit(1)


class Component(StrEnum):
    WEB = "web"
    WORKER = "worker"
    BEAT = "beat"
    DISPATCHER = "dispatcher"


def health_command(
    component: Annotated[Component, typer.Argument(help="web, worker (this host's), beat or dispatcher")],
    url: Annotated[str, typer.Option(help="for web: the address of its /healthz")] = "http://127.0.0.1:8000/healthz",
) -> None:
    """Exit 0 when COMPONENT is alive, 1 when not (for container health checks)."""
    if component == Component.WEB:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - an operator's own URL
                alive = response.status == 200
        except (urllib.error.URLError, OSError) as exc:
            err_console.print(f"error: web: {url} does not answer: {exc}")
            raise typer.Exit(1) from None
        console.print(f"web answers at {url}" if alive else f"web at {url} is not healthy")
        raise typer.Exit(0 if alive else 1)
    settings = get_settings()
    name = {Component.WORKER: worker_component(), Component.BEAT: BEAT, Component.DISPATCHER: DISPATCHER}[component]
    try:
        with transaction(settings) as session:
            rows = {row.component: row for row in read_heartbeats(session)}
    except Exception as exc:  # noqa: BLE001 - a health check answers, it does not crash
        err_console.print(f"error: database: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        raise typer.Exit(1) from None
    row = rows.get(name)
    if row is None:
        err_console.print(f"error: no heartbeat from {name} yet")
        raise typer.Exit(1)
    age = datetime.now(UTC) - row.beat_at
    if age > stale_after(settings, name):
        err_console.print(f"error: {name} last seen {int(age.total_seconds())} s ago")
        raise typer.Exit(1)
    console.print(f"{name} alive ({int(age.total_seconds())} s ago)")


def metrics_command(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 9100,
    ledger: Annotated[bool, typer.Option(help="also serve the ledger gauges (the web app's /metrics has them)")] = False,
) -> None:
    """Serve the workers' metrics (merged from COURSE_METRICS_DIR) for Prometheus to scrape."""
    import os

    settings = get_settings()
    if settings.metrics_dir is None:
        err_console.print("error: set COURSE_METRICS_DIR (the folder `course worker` writes its metrics to)")
        raise typer.Exit(1)
    settings.metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)
    from prometheus_client import start_http_server

    from course.ops.metrics import registry_for

    start_http_server(port, addr=host, registry=registry_for(session_factory(settings) if ledger else None, settings))
    console.print(f"serving metrics on http://{host}:{port}/metrics")
    while True:
        time.sleep(3600)


def print_heartbeats() -> None:
    """The heartbeat lines of `course status`: stale ones in red, as an alarm."""
    settings = get_settings()
    with transaction(settings) as session:
        rows = read_heartbeats(session)
    for status in describe_heartbeats(rows, now=datetime.now(UTC), settings=settings):
        if status.stale:
            console.print(f"[red]ALARM[/red] {status.line}", highlight=False)
        else:
            console.print(status.line, highlight=False)


def prepare_worker_metrics() -> None:
    """Before `course worker` starts Celery: point prometheus_client's multiprocess mode at
    COURSE_METRICS_DIR, emptied of the files of processes that ran before."""
    import os

    settings = get_settings()
    if settings.metrics_dir is None:
        return
    settings.metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in settings.metrics_dir.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)


def _moment(raw: str) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or a span back from now: 90m, 6h, 3d."""
    text = raw.strip()
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since {raw!r}: give an ISO date or time (2026-11-25, 2026-11-25T08:00) or a span such as 6h or 3d") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def retry_failed_command(
    since: Annotated[str | None, typer.Option(help="only rows whose last attempt fell due since: ISO time, or a span back from now (6h, 3d)")] = None,
    campaign: Annotated[int | None, typer.Option(help="only this campaign's rows (its id, as in `course campaign list`)")] = None,
) -> None:
    """Requeue failed deliveries on purpose (after a long relay outage, say): due now, with a fresh
    retry window."""
    from sqlalchemy import select

    from course.clock import get_clock
    from course.ledger import requeue_failed
    from course.models import Campaign

    settings = get_settings()
    moment = _moment(since) if since is not None else None
    with transaction(settings) as session:
        if campaign is not None and session.scalar(select(Campaign.id).where(Campaign.id == campaign)) is None:
            raise CommandError(f"no campaign with id {campaign}")
        requeued = requeue_failed(session, now=get_clock(settings).now(), since=moment, campaign_id=campaign)
    scope = (f" of campaign {campaign}" if campaign is not None else "") + (f" due since {moment.isoformat()}" if moment else "")
    console.print(f"requeued {requeued} failed deliveries{scope}; the dispatcher sends them on its next run")
