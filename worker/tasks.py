"""Celery tasks: thin shells around course.dispatch and course.sending."""

from __future__ import annotations

import logging
from collections import Counter
from functools import lru_cache

from course.audience.signup_requests import BATCH_SIZE as SIGNUP_BATCH_SIZE
from course.audience.signup_requests import SignupLimits, handle_signups
from course.audience.subscriptions import SignupOutcome
from course.clock import get_clock, get_wall_clock
from course.db import session_factory
from course.delivery.dispatch import DispatchReport, dispatch_due
from course.delivery.journal import SendJournal, journal_from_settings
from course.delivery.links import signer_from_settings
from course.delivery.render import Renderer
from course.delivery.sending import Sender, SendReport
from course.delivery.gate import gate_from_settings
from course.delivery.transports.registry import shared_transport
from course.settings import get_settings
from worker.app import app
from worker.config import BULK_QUEUE, PRIORITY_QUEUE

log = logging.getLogger(__name__)

# Signup batches (of SIGNUP_BATCH_SIZE) one dispatch run handles at most before claiming due mail.
SIGNUP_BATCHES_PER_DISPATCH = 20


@lru_cache
def _renderer() -> Renderer:
    settings = get_settings()
    return Renderer(settings.templates_dir, auto_reload=settings.template_reload)


@lru_cache
def _journal() -> SendJournal:
    return journal_from_settings(get_settings())


def sender() -> Sender:
    """The sender for this process: one session factory, renderer and connection per provider,
    reused; each message routed (course/delivery/routing.py) and limited through the gate every
    worker shares (course/delivery/gate.py)."""
    settings = get_settings()
    clock = get_clock(settings)  # one for the whole task
    return Sender(
        settings,
        sessions=session_factory(settings),
        transports=lambda name: shared_transport(settings, name),
        gate=gate_from_settings(settings),
        renderer=_renderer(),
        signer=signer_from_settings(settings),
        clock=clock,
        journal=_journal(),
    )


def enqueue_send(delivery_ids: list[int], token: str, urgent: bool) -> None:
    send_deliveries.apply_async(args=(delivery_ids, token), queue=PRIORITY_QUEUE if urgent else BULK_QUEUE)


def _handle_queued_signups() -> Counter[SignupOutcome]:
    """The signups the web queued, in batches: a burst queues more than one batch between two runs,
    so handle them all now (up to a bound, so due mail is not starved)."""
    settings = get_settings()
    signups: Counter[SignupOutcome] = Counter()
    for _ in range(SIGNUP_BATCHES_PER_DISPATCH):
        handled = handle_signups(
            session_factory(settings), limits=SignupLimits.from_settings(settings),
            now=get_clock(settings).now(), limits_now=get_wall_clock().now(),
        )
        signups += handled
        if sum(handled.values()) < SIGNUP_BATCH_SIZE:
            break
    if signups:
        log.info("handled %d signups: %s", sum(signups.values()), dict(signups))
    return signups


@app.task(name="course.signups", ignore_result=True)
def signups() -> dict[str, int]:
    """Between two dispatcher runs (every signup_interval_seconds): handle the queued signups and
    hand their confirmations to the priority queue at once, so a reader waits about a second for
    the mail, not a whole dispatch interval behind a campaign's claims. An idle run is one query."""
    settings = get_settings()
    handled = sum(_handle_queued_signups().values())
    if not handled:
        return {"signups": 0, "claimed": 0}
    report = dispatch_due(session_factory(settings), settings=settings, clock=get_clock(settings), enqueue=enqueue_send, urgent_only=True)
    return {"signups": handled, "claimed": report.claimed}


@app.task(name="course.dispatch", ignore_result=True)
def dispatch() -> dict[str, int]:
    """Handle the signups the web queued (their confirmation rows are due at once), then claim and
    hand out every due row."""
    settings = get_settings()
    try:
        _handle_queued_signups()
    except Exception:  # noqa: BLE001 - the signups wait for the next run; the due mail must not
        log.exception("handling queued signups failed; dispatching anyway")
    report: DispatchReport = dispatch_due(
        session_factory(settings), settings=settings, clock=get_clock(settings), enqueue=enqueue_send, journal=_journal()
    )
    if report.claimed:
        log.info("dispatched %d deliveries in %d tasks", report.claimed, report.tasks)
    return {"claimed": report.claimed, "tasks": report.tasks}


@app.task(name="course.send", acks_late=True, ignore_result=True)
def send_deliveries(delivery_ids: list[int], token: str) -> dict[str, int]:
    report: SendReport = sender().send_claimed(delivery_ids, token)
    if report.taken:
        log.info(
            "sent %d of %d (retry %d, failed %d, bounced %d, skipped %d, released %d, already sent %d, "
            "unknown after a lost journal %d, waiting for a provider %d; journal %s)",
            report.sent, report.taken, report.retried, report.failed, report.bounced, report.skipped, report.released,
            report.already_sent, report.unknown_after_journal_loss, report.deferred, report.journal,
        )
    for error in report.errors:
        log.warning("delivery error: %s", error)
    return {"taken": report.taken, "sent": report.sent}
