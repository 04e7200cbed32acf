"""The bounce side run by beat: thin shells around course.bounces. `course.poll_bounces` reads the
IMAP bounce mailbox once (course/bounces/imap.py, poll.py); `course.apply_webhook_events` applies
the provider events the web side stored (course/bounces/webhooks)."""

from __future__ import annotations

import logging

from course.bounces.imap import ImapConfig, ImapMailbox
from course.bounces.mailbox import MailboxError
from course.bounces.poll import poll
from course.bounces.record import BounceOptions
from course.bounces.webhooks.store import apply_pending
from course.clock import get_wall_clock
from course.db import session_factory
from course.settings import get_settings
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name="course.poll_bounces", ignore_result=True)
def poll_bounce_mailbox() -> dict[str, int]:
    """Read the bounce mailbox once; nothing when none is configured. A mailbox that cannot be
    read is logged and tried again at the next interval (its messages wait on the server)."""
    settings = get_settings()
    config = ImapConfig.from_settings(settings)
    if config is None:
        return {}
    try:
        with ImapMailbox(config) as mailbox:
            result = poll(mailbox, session_factory(settings), options=BounceOptions.from_settings(settings), now=get_wall_clock().now)
    except MailboxError as error:
        log.warning("%s", error)
        return {"errors": 1}
    if result.read:
        log.info("bounce mailbox %s: read %d, %s", config.name, result.read, dict(result.actions))
    return {"read": result.read, **{str(action): count for action, count in result.actions.items()}, "errors": len(result.errors)}


@app.task(name="course.apply_webhook_events", ignore_result=True)
def apply_webhook_events() -> dict[str, int]:
    """Apply the bounces and complaints provider webhooks stored (course/bounces/webhooks/store.py):
    each claimed by one worker, recorded through course/bounces/record.py."""
    settings = get_settings()
    outcomes = apply_pending(session_factory(settings), options=BounceOptions.from_settings(settings), now=get_wall_clock().now)
    if outcomes:
        log.info("webhook events applied: %s", dict(outcomes))
    return dict(outcomes)
