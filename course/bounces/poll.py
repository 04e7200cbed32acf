"""Drain a mailbox into the recording function: each message parsed and recorded in its own
transaction, so one that cannot be read or recorded costs only itself."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from course.bounces.mailbox import Mailbox
from course.bounces.parse import parse_report
from course.bounces.record import Action, Applied, BounceOptions, record_report

log = logging.getLogger(__name__)


@dataclass
class PollReport:
    read: int = 0
    actions: Counter[str] = field(default_factory=Counter)  # Action value -> messages
    applied: list[Applied] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "<key>: <why>", one per message not recorded


def poll(
    mailbox: Mailbox,
    sessions: sessionmaker[Session],
    *,
    options: BounceOptions,
    now: Callable[[], datetime],
    progress: Callable[[PollReport], None] | None = None,
) -> PollReport:
    """1. Read each message the mailbox holds.
    2. Parse it (pure) and record it in a transaction of its own.
    3. Acknowledge it to the mailbox once recorded (or found to need nothing).
    `progress` is called after each message (the CLI's progress bar)."""
    report = PollReport()
    for message in mailbox.messages():
        report.read += 1
        try:
            parsed = parse_report(message.raw)
            with sessions.begin() as session:
                applied = record_report(session, parsed, options=options, source=mailbox.source, now=now())
        except Exception as error:  # one bad message must not stop the rest; it stays in the mailbox
            log.exception("bounce message %s could not be recorded", message.key)
            report.errors.append(f"{message.key}: {error!r}")
            if progress is not None:
                progress(report)
            continue
        report.actions[applied.action] += 1
        report.applied.append(applied)
        if applied.action in (Action.SUPPRESSED, Action.COMPLAINED, Action.COUNTED):
            log.info("bounce %s (%s): %s subscriber %s, delivery %s", message.key, applied.verdict, applied.action, applied.subscriber_id, applied.delivery_id)
        mailbox.done(message.key)
        if progress is not None:
            progress(report)
    return report
