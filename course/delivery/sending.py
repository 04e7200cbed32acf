"""The sender: batch control only. It takes over a claimed batch, checks each row is still wanted,
has the composer (course.delivery.compose) build each message, hands it to the provider's transport
(one kept-open connection) and records the outcomes, with the provider's name, as they happen, a
small group at a time (course/delivery/outcomes.py), between two messages. Each message the relay
accepts is noted at once in the send journal (course/delivery/journal.py), and rows taken over again
are checked against it: a killed worker or a database blip costs the messages in flight at that
instant, or at most one group when the journal is unavailable.

Failures are handled where they happen:
- a 4xx reply, a time-out or a dropped connection puts the row back to pending with exponential
  back-off and jitter, for retry_window_seconds after the first attempt, then marks it failed with
  the reason;
- no reply after the end of DATA is an unknown outcome: the message may have been delivered, so it
  is never sent again at once, only after the same back-off;
- a 5xx reply marks the row bounced and suppresses the address everywhere;
- a server that cannot be reached at all stops the batch: every row not yet tried waits for its
  back-off, so a dead SMTP server costs one connection attempt per batch, not one per message;
- the batch stops before its lease runs out and releases the rest, so no message is ever sent by
  a task whose rows may already have been reclaimed by another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from course import metrics
from course.clock import Clock, wall_duration
from course.delivery.compose import Composer, TemplateCache
from course.delivery.journal import NoJournal, SendJournal
from course.delivery.links import Signer
from course.delivery.outcomes import GroupWriter
from course.delivery.render import Renderer
from course.delivery.retry import next_attempt
from course.delivery.transports.base import (
    DEFAULT_PROVIDER,
    ConnectionFailed,
    DeadlineReached,
    PermanentSendError,
    TransientSendError,
    Transport,
    UnknownOutcome,
)
from course.ledger import Batch, DeliveryJob, Outcome, record, take_over
from course.models import DeliveryKind, EnrollmentStatus, SubscriberStatus
from course.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class SendReport:
    taken: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # cancelled or held at send time
    released: int = 0
    abandoned: bool = False  # outcomes could not be written before the lease ended
    already_sent: int = 0  # taken over again, found in the send journal: settled as sent, not re-sent
    outcome_writes: int = 0  # groups written
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Deadlines:
    """time.monotonic() values derived from the lease when the rows were taken over."""

    stop_starting: float  # no new message after this
    smtp: float  # no SMTP transaction runs past this
    give_up: float  # outcome writes are retried until this, then the task is abandoned


def _fields(job: DeliveryJob) -> dict[str, object]:
    """Structured fields of a log line about one delivery (for JSON log formatters)."""
    return {"delivery_id": job.delivery_id, "campaign_id": job.campaign_id, "lesson_id": job.lesson_id, "kind": job.kind}


def _about(job: DeliveryJob) -> str:
    where = f"campaign {job.campaign_id}" if job.campaign_id is not None else f"lesson {job.lesson_id}" if job.lesson_id is not None else job.template or job.kind
    return f"delivery {job.delivery_id} ({where}, attempt {job.attempts})"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 3600:
        return f"{seconds} s"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


class Sender:
    def __init__(
        self,
        settings: Settings,
        *,
        sessions: sessionmaker[Session],
        transport: Transport,
        renderer: Renderer,
        signer: Signer,
        clock: Clock,
        provider: str = DEFAULT_PROVIDER,
        journal: SendJournal | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.transport = transport
        self.journal = journal or NoJournal()
        self.provider = provider  # recorded with every outcome that went through `transport`
        self.composer = Composer(settings, renderer=renderer, signer=signer, clock=clock)
        self.clock = clock

    def send_claimed(self, delivery_ids: list[int], token: str) -> SendReport:
        """1. Take the rows over (only those this token still holds).
        2. Derive three deadlines from the lease (wall-clock seconds from now): no new message after
           `stop_at`; no SMTP transaction past `smtp_deadline`; outcome writes retried until
           `give_up_at`. Past the lease another dispatcher may own the rows.
        3. Rows attempted before (attempts > 1) that the send journal holds were accepted by the
           relay under a lease that ran out before their outcome was written: settle them as sent.
        4. Send the others one by one, noting each accepted message in the journal at once and
           recording outcomes in small groups (GroupWriter).
        5. If a group cannot be written before give_up_at, stop: the rows not recorded stay
           `sending` and come back when the lease expires; the journal keeps those already accepted
           from going out again (without it, at most one group is sent twice)."""
        now = self.clock.now()
        lease = wall_duration(self.clock, self.settings.lease_seconds)
        with self.sessions.begin() as session:
            batch = take_over(session, delivery_ids, token=token, now=now, lease=lease)
        report = SendReport(taken=len(batch.jobs))
        if not batch.jobs:
            return report
        lease_seconds = float(self.settings.lease_seconds)
        started = time.monotonic()
        # Stop a safe margin before the lease ends: past it, another dispatcher may own the rows.
        stop_at = now + lease - min(lease / 5, wall_duration(self.clock, 60))
        deadlines = _Deadlines(
            stop_starting=started + lease_seconds - min(lease_seconds / 5, 60.0),
            smtp=started + lease_seconds - min(lease_seconds / 10, 30.0),
            give_up=started + lease_seconds - min(lease_seconds / 20, 5.0),
        )
        writer = GroupWriter(
            write=lambda group: self._record(group, token),
            give_up_at=deadlines.give_up,
            group_size=self.settings.outcome_group_size,
            group_seconds=self.settings.outcome_group_seconds,
            on_write=lambda result: metrics.OUTCOME_WRITES.labels(result).inc(),
            new_group=lambda: Outcome(provider=self.provider),
            journaled_group_size=max(self.settings.outcome_group_size, self.settings.send_chunk_size),
            journaled_group_seconds=max(self.settings.outcome_group_seconds, self.settings.outcome_journaled_group_seconds),
        )
        retaken = [job.delivery_id for job in batch.jobs if job.attempts > 1]
        already_sent = self.journal.accepted_among(retaken) if retaken else set()
        everything = Outcome(provider=self.provider)
        self._send_batch(batch, stop_at, deadlines, writer, everything, already_sent)
        if not writer.abandoned:
            writer.flush()
        report.already_sent = len(already_sent)
        report.sent = len(everything.sent)
        report.retried = len(everything.retry)
        report.failed = len(everything.failed)
        report.bounced = len(everything.bounced)
        report.skipped = len(everything.cancelled) + len(everything.held)
        report.released = len(everything.released)
        report.abandoned = writer.abandoned
        report.outcome_writes = writer.statements
        report.errors = [reason for _, _, reason in everything.retry[:3]] + [r for _, r in everything.failed[:3]]
        return report

    def _record(self, group: Outcome, token: str) -> None:
        with self.sessions.begin() as session:
            record(session, group, token=token, now=self.clock.now(), message_id_domain=self.settings.list_id_domain)

    def _send_batch(
        self, batch: Batch, stop_at: datetime, deadlines: _Deadlines, writer: GroupWriter, everything: Outcome, already_sent: set[int]
    ) -> None:
        def note(kind: str, item: object, *, journaled: bool = True) -> bool:
            getattr(writer.group, kind).append(item)
            getattr(everything, kind).append(item)
            return writer.added(journaled=journaled)

        templates = TemplateCache()  # each lesson rendered and its CSS inlined once per batch
        accepted = metrics.SMTP_REPLIES.labels("2xx")  # the metrics of the success path, looked up once
        latencies: dict[str, Any] = {}
        sendable = []
        for job in batch.jobs:
            if job.delivery_id in already_sent:
                # The relay accepted it under an earlier lease whose outcome was never written (a
                # lost worker, a database away past the lease): it is sent, whatever changed since.
                log.info("%s was accepted before its worker was lost (send journal): settled as sent, not sent again", _about(job), extra=_fields(job))
                note("sent", job.delivery_id)
                continue
            verdict = _still_wanted(job, batch)
            if verdict == "cancel":
                note("cancelled", job.delivery_id)
            elif verdict == "hold":
                note("held", job.delivery_id)
            else:
                sendable.append(job)
        for position, job in enumerate(sendable):
            if writer.abandoned:
                log.warning("outcomes not written: %d deliveries left to the lease", len(sendable) - position)
                return
            if self.clock.now() >= stop_at or time.monotonic() >= deadlines.stop_starting:
                for waiting in sendable[position:]:
                    writer.group.released.append(waiting.delivery_id)
                    everything.released.append(waiting.delivery_id)
                log.warning("lease nearly over: released %d deliveries unsent", len(sendable) - position)
                return
            try:
                composed = self.composer.delivery(job, batch, templates)
                self.transport.send(
                    composed.envelope_from, job.test_address or job.email, composed.message_bytes(), deadline=deadlines.smtp
                )
            except DeadlineReached:
                for waiting in sendable[position:]:
                    writer.group.released.append(waiting.delivery_id)
                    everything.released.append(waiting.delivery_id)
                return
            except PermanentSendError as exc:
                metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
                if job.kind in (DeliveryKind.CAMPAIGN_TEST, DeliveryKind.LESSON_TEST, DeliveryKind.ADMIN_INVITATION):
                    # The test (or invited) address refused it: that says nothing about any subscriber.
                    log.warning("%s test address refused it: %s", _about(job), exc.reason, extra=_fields(job))
                    note("failed", (job.delivery_id, f"test address refused it: {exc.reason}"))
                else:
                    log.warning("%s bounced: %s", _about(job), exc.reason, extra=_fields(job))
                    note("bounced", (job.delivery_id, job.subscriber_id, exc.reason))
            except ConnectionFailed as exc:
                # The server is down: nothing else in this batch can go either.
                metrics.SMTP_REPLIES.labels("unreachable").inc()
                for waiting in sendable[position:]:
                    self._retry_or_fail(writer.group, waiting, exc.reason, also=everything)
                log.warning("provider %s unreachable, %d deliveries wait: %s", self.provider, len(sendable) - position, exc.reason)
                return
            except UnknownOutcome as exc:
                # Perhaps delivered: back-off like a 4xx, never again at once (the same Message-ID
                # lets the receiving side see a repeat for what it is).
                metrics.SMTP_REPLIES.labels("unknown").inc()
                log.warning("%s unknown outcome: %s", _about(job), exc.reason, extra=_fields(job))
                self._retry_or_fail(writer.group, job, exc.reason, also=everything)
                writer.added()
            except TransientSendError as exc:
                metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
                log.info("%s will be retried: %s", _about(job), exc.reason, extra=_fields(job))
                self._retry_or_fail(writer.group, job, exc.reason, also=everything)
                writer.added()
            except Exception as exc:  # a rendering bug must not lose the rest of the batch
                log.exception("cannot build %s", _about(job), extra=_fields(job))
                self._retry_or_fail(writer.group, job, f"cannot build message: {exc!r}", also=everything)
                writer.added()
            else:
                # Noted before anything else: from here until its group is written, only the
                # journal keeps this message from being sent again by whoever retakes the row.
                journaled = self.journal.accepted(job.delivery_id)
                accepted.inc()
                if job.due_at is not None:
                    latency = latencies.get(job.kind)
                    if latency is None:
                        latency = latencies[job.kind] = metrics.SEND_LATENCY.labels(job.kind)
                    latency.observe(max((self.clock.now() - job.due_at).total_seconds(), 0.0) / self.clock.speed)
                note("sent", job.delivery_id, journaled=journaled)

    def _retry_or_fail(self, outcome: Outcome, job: DeliveryJob, reason: str, *, also: Outcome | None = None) -> None:
        """Transient failure: back-off with jitter, until retry_window_seconds after the first
        attempt; then the row fails with the reason (`course retry-failed` can requeue it)."""
        now = self.clock.now()
        due = next_attempt(
            job.attempts,
            now=now,
            first_attempt_at=job.first_attempt_at,
            window=wall_duration(self.clock, self.settings.retry_window_seconds),
            base_seconds=self.settings.retry_base_seconds,
            max_seconds=self.settings.retry_max_seconds,
            speed=self.clock.speed,
        )
        for target in (outcome, also):
            if target is None:
                continue
            if due is None:
                span = _span(now - (job.first_attempt_at or now))
                target.failed.append((job.delivery_id, f"gave up after {job.attempts} attempts in {span}: {reason}"))
            else:
                target.retry.append((job.delivery_id, due, reason))


def _still_wanted(job: DeliveryJob, batch: Batch) -> str:
    """Checked at send time, after the row was claimed: a stop that came in between still wins."""
    if job.kind == DeliveryKind.CAMPAIGN_TEST:
        # An editor asked for it just now, for whichever campaign state: only a deleted campaign stops it.
        return "send" if (job.test_campaign_id or 0) in batch.campaigns else "cancel"
    if job.kind == DeliveryKind.LESSON_TEST:
        # An editor asked for it just now: only a deleted lesson stops it (a retired one still shows).
        return "send" if (job.test_lesson_id or 0) in batch.lessons else "cancel"
    if job.kind == DeliveryKind.ADMIN_INVITATION:
        # Revoked or accepted meanwhile: its link would be dead, so it is not sent. (A re-send
        # cancels the old row; the nonce in the row's link is read now, so it is always the newest.)
        invitation = batch.invitations.get(job.invitation_id or 0)
        return "send" if invitation is not None and invitation.live else "cancel"
    if job.subscriber_status != SubscriberStatus.ACTIVE and job.kind != DeliveryKind.TRANSACTIONAL:
        return "cancel"
    if job.kind == DeliveryKind.LESSON:
        if job.enrollment_status == EnrollmentStatus.PAUSED:
            return "hold"
        if job.enrollment_status != EnrollmentStatus.ACTIVE:
            return "cancel"
        lesson = batch.lessons.get(job.lesson_id or 0)
        if lesson is None or lesson.retired:
            return "cancel"
    if job.kind == DeliveryKind.CAMPAIGN:
        campaign = batch.campaigns.get(job.campaign_id or 0)
        if campaign is None or campaign.cancelled:
            return "cancel"
    return "send"


