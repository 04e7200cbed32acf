"""Campaign tasks: thin shells around course.campaigns, started by beat next to the dispatcher.

`course.campaigns` runs every dispatch interval: it fans out each scheduled campaign whose send
time has come (one INSERT … SELECT each, so the dispatcher's next run finds the rows due) and marks
sending campaigns done once nothing of theirs is open. The dispatcher itself knows nothing of
campaigns: to it they are ledger rows like any other."""

from __future__ import annotations

import logging
from typing import Any

from course.campaigns.service import due_campaigns, fan_out, refresh_campaign_status, sending_campaigns
from course.clock import get_clock
from course.db import session_factory
from course.settings import get_settings
from worker.app import app
from worker.config import DISPATCH_QUEUE

log = logging.getLogger(__name__)


@app.task(name="course.fan_out_campaign", ignore_result=True)
def fan_out_campaign(campaign_id: int) -> int:
    """Fan one campaign out into the ledger now (a repeat writes nothing)."""
    settings = get_settings()
    with session_factory(settings).begin() as session:
        written = fan_out(session, campaign_id, now=get_clock(settings).now())
    if written:
        log.info("campaign %d fanned out into %d deliveries", campaign_id, written)
    return written


@app.task(name="course.campaigns", ignore_result=True)
def start_and_finish_campaigns() -> dict[str, int]:
    """1. Fan out every scheduled campaign whose send_at has come, one transaction each, so one
       failing campaign does not hold back the others.
    2. Mark sending campaigns done when no row of theirs is open."""
    settings = get_settings()
    sessions = session_factory(settings)
    clock = get_clock(settings)
    with sessions.begin() as session:
        due = due_campaigns(session, now=clock.now())
    started = 0
    for campaign_id in due:
        try:
            fan_out_campaign(campaign_id)
            started += 1
        except Exception:
            log.exception("cannot fan out campaign %d; the next run tries again", campaign_id)
    finished = 0
    with sessions.begin() as session:
        for campaign_id in sending_campaigns(session):
            finished += refresh_campaign_status(session, campaign_id) == "done"
    return {"started": started, "finished": finished}


@app.on_after_configure.connect
def _schedule_campaigns(sender: Any, **_: Any) -> None:
    # Registered here rather than in worker/config.py so the campaign feature is one file.
    interval = get_settings().dispatch_interval_seconds
    sender.add_periodic_task(
        interval,
        start_and_finish_campaigns.s().set(queue=DISPATCH_QUEUE, expires=interval * 2),
        name="start-and-finish-campaigns",
    )
