"""Endpoints for the machines that watch the site, not for readers: /healthz (the process answers),
/readyz (the database and the broker answer; heartbeats reported) and /metrics (Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from course.delivery.journal import journal_mode_of
from course.ops.health import broker_answers, database_answers, describe_heartbeats, read_heartbeats
from course.ops.metrics import CONTENT_TYPE, registry_for, render
from course.web.site import Site, get_site

router = APIRouter(include_in_schema=False)
SiteDep = Annotated[Site, Depends(get_site)]


@router.get("/healthz")
def healthz() -> JSONResponse:
    """The process is up and serving: nothing else is checked (a liveness probe)."""
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


def readiness(site: Site) -> tuple[bool, dict[str, object]]:
    problems = [p for p in (database_answers(site.sessions), broker_answers(site.settings)) if p]
    heartbeats: list[dict[str, object]] = []
    alarms: list[str] = []
    if not problems:
        try:
            with site.sessions() as session:
                rows = read_heartbeats(session)
        except Exception as exc:  # noqa: BLE001 - a missing table (not migrated) is "not ready"
            problems.append(f"database: cannot read heartbeats: {type(exc).__name__}")
            rows = []
        for status in describe_heartbeats(rows, now=datetime.now(UTC), settings=site.settings):
            heartbeats.append(
                {
                    "component": status.component,
                    "age_seconds": round(status.age.total_seconds(), 1) if status.age is not None else None,
                    "stale": status.stale,
                    "message": status.line,
                }
            )
            if status.stale:
                alarms.append(status.line)
    journal = journal_mode_of(site.settings)
    body: dict[str, object] = {
        "status": "ready" if not problems else "not ready",
        "database": "ok" if not any(p.startswith("database") for p in problems) else "down",
        "broker": "ok" if not any(p.startswith("broker") for p in problems) else "down",
        "problems": problems,
        "heartbeats": heartbeats,
        "alarms": alarms,
        # Whether the workers' send journal survives a Redis crash (outcome groups stay small if not).
        "send_journal": {"mode": journal.name, "durable": journal.durable, "reason": journal.reason},
    }
    return not problems, body


@router.get("/readyz")
async def readyz(site: SiteDep) -> JSONResponse:
    """200 when the database and the broker answer, else 503. Stale heartbeats ("dispatcher last ran
    4 min ago") are listed under `alarms` without making the web pages unready: a dead beat is an
    operator's alarm, not a reason to take sign-ups offline."""
    ready, body = await run_in_threadpool(readiness, site)
    return JSONResponse(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics")
async def metrics(request: Request, site: SiteDep) -> Response:
    registry = registry_for(site.sessions, site.settings)
    return Response(await run_in_threadpool(render, registry), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
