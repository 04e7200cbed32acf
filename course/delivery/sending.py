"""The sender: batch control only. It takes over a claimed batch, checks each row is still wanted,
has the composer (course.delivery.compose) build each message, hands it to the provider's transport
(one kept-open connection) and records the outcomes, with the provider's name, as they happen, a
small group at a time (course/delivery/outcomes.py), between two messages. Each message the relay
accepts is noted at once in the send journal (course/delivery/journal.py), and rows taken over again
are checked against it: a killed worker or a database blip costs the messages in flight at that
instant, or at most one small group when the journal is unavailable or would not survive a Redis crash.

Failures are handled where they happen:
- a 4xx reply, a time-out or a dropped connection puts the row back to pending with exponential
  back-off and jitter, for retry_window_seconds after the first attempt, then marks it failed with
  the reason;
- no reply after the end of DATA is an unknown outcome: the message may have been delivered, so it
  is never sent again at once, only after the same back-off;
- a 5xx reply marks the row bounced and suppresses the address everywhere;
- with routing (a gate, course/delivery/gate.py): each message takes the first provider of its
  route (course/delivery/routing.py) that is not paused and has a slot under its limits, which
  every worker shares; a provider that cannot be reached is paused for every worker, and the
  message takes the next provider of its route; when none can take it, it waits in the database
  (pending, due when the earliest pause or limit lifts). A run of 421/454 replies or time-outs
  pauses a provider too. After the batch, a campaign whose rows bounced or failed past
  campaign_max_error_rate is paused by the system (course.campaigns.service.pause_for_errors);
- without a gate (one transport given): a server that cannot be reached at all stops the batch:
  every row not yet tried waits for its back-off, so a dead SMTP server costs one connection
  attempt per batch, not one per message;
- the batch stops before its lease runs out and releases the rest, so no message is ever sent by
  a task whose rows may already have been reclaimed by another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from course.ops import metrics
from course.clock import Clock, wall_duration
from course.delivery.compose import Composer, TemplateCache
from course.delivery.dkim import DkimSigner
from course.delivery.envelope import EnvelopeSender
from course.delivery.gate import Gate, GateUnavailable, Grant, holder_id
from course.delivery.journal import NoJournal, SendJournal
from course.delivery.links import Signer
from course.delivery.outcomes import GroupWriter
from course.delivery.render import Renderer
from course.delivery.retry import next_attempt
from course.delivery.routing import route
from course.delivery.transports.base import (
    DEFAULT_PROVIDER,
    ConnectionFailed,
    DeadlineReached,
    PermanentSendError,
    TransientSendError,
    Transport,
    UnknownOutcome,
)
from course.ledger import Batch, DeliveryJob, Outcome, Settled, message_ids_from_secret, record, take_over
from course.models import DeliveryKind, EnrollmentStatus, SubscriberStatus
from course.settings import ProviderSettings, Settings

log = logging.getLogger(__name__)

# Mail a person is waiting for: may use the share of an hourly or daily quota bulk mail leaves.
URGENT_KINDS = frozenset({DeliveryKind.TRANSACTIONAL, DeliveryKind.CAMPAIGN_TEST, DeliveryKind.LESSON_TEST, DeliveryKind.ADMIN_INVITATION})
# The longest a send loop sleeps for its provider's next slot; a later slot is not taken, and the
# row waits in the database instead (the dispatcher's claims keep this rare: dispatch.py).
MAX_SLOT_WAIT_SECONDS = 2.0
# A provider whose connections are all held elsewhere is asked again after this long.
CONNECTION_WAIT_SECONDS = 5.0
# A provider with no rate or quota is not asked for a slot per message: its pause is read at most
# this often by a task, and what it sent is counted in one call per this long.
LIGHT_RECHECK_SECONDS = 1.0
# After the gate's Redis failed to answer, it is not asked again for this long: a Redis that is
# down must not cost a time-out per message.
GATE_RETRY_SECONDS = 5.0
# Replies that say the provider itself is in trouble (service not available, TLS not available),
# not this message: a run of them pauses the provider.
PROVIDER_TROUBLE_CODES = frozenset({421, 454})


def provider_trouble(exc: TransientSendError) -> bool:
    """Whether a transient failure counts against the provider's health: its trouble codes, and
    failures with no reply code at all (time-outs, dropped connections)."""
    return exc.code is None or exc.code in PROVIDER_TROUBLE_CODES


class _Deferred(Exception):
    """No provider of a message's route can take it now: it waits `wait` seconds in the database."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(reason)
        self.wait = wait
        self.reason = reason


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
    unknown_after_journal_loss: int = 0  # taken over again under a lost journal: back-off, not re-sent at once
    journal: str = "off"  # the send journal's mode (JournalMode.name) when the rows were taken over
    outcome_writes: int = 0  # groups written
    deferred: int = 0  # no provider of their route could take them: wait in the database
    paused_campaigns: list[str] = field(default_factory=list)  # system pauses for errors, with why
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Deadlines:
    """time.monotonic() values derived from the lease when the rows were taken over."""

    stop_at: datetime  # project clock: no new message after this
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
        transport: Transport | None = None,
        renderer: Renderer,
        signer: Signer,
        clock: Clock,
        provider: str = DEFAULT_PROVIDER,
        journal: SendJournal | None = None,
        transports: Callable[[str], Transport] | None = None,
        gate: Gate | None = None,
    ) -> None:
        """Either one `transport` (everything goes through `provider`), or `transports` (a provider
        name's transport) with a `gate`: then each message is routed and limited."""
        if (transports is None) != (gate is None) or (transport is None and transports is None):
            raise TypeError("a Sender takes one transport, or transports by provider name with a gate")
        self.settings = settings
        self.message_ids = message_ids_from_secret(settings.list_id_domain, settings.secret_key)
        self.sessions = sessions
        self.transport = transport
        self.transports = transports
        self.gate = gate
        # This task's view of the providers (time.monotonic() until a pause ends; providers this task
        # saw fail, whose next success clears their failure count; connections it holds).
        self._paused: dict[str, float] = {}
        self._troubled: set[str] = set()
        self._holder = holder_id()
        self._held: set[str] = set()
        self._gate_down_until = 0.0  # time.monotonic(): the gate's Redis is not asked before then
        self._gate_error = ""
        # The light path (providers with no rate or quota): when each pause was last read, and the
        # sends not yet counted in the gate, with when they were last counted.
        self._pause_read_at: dict[str, float] = {}
        self._uncounted: dict[str, int] = {}
        self._counted_at = 0.0
        # Read once per task, not per message: building the providers' settings, the registry's key
        # and a route each cost tens of microseconds (the lesson day showed it).
        self._providers = settings.provider_settings
        self._routes: dict[tuple[str | None, str], tuple[str, ...]] = {}
        self._transport_of: dict[str, Transport] = {}
        self.journal = journal or NoJournal()
        self.provider = provider  # recorded with every outcome that went through `transport`
        self.composer = Composer(settings, renderer=renderer, signer=signer, clock=clock)
        # The two last touches to a composed message: its envelope sender (VERP when a bounce
        # domain is set) and its DKIM signature (when its From domain has a key).
        self.envelope = EnvelopeSender(settings)
        self.dkim = DkimSigner.from_settings(settings)
        self.clock = clock
        self._accepted = metrics.SMTP_REPLIES.labels("2xx")  # the metrics of the success path, looked up once
        self._latencies: dict[str, Any] = {}

    def send_claimed(self, delivery_ids: list[int], token: str) -> SendReport:
        """1. Take the rows over (only those this token still holds), under the send journal's
           epoch (its Redis data set), and read whether the journal survives a Redis crash.
        2. Derive three deadlines from the lease (wall-clock seconds from now): no new message after
           `stop_at`; no SMTP transaction past `smtp_deadline`; outcome writes retried until
           `give_up_at`. Past the lease another dispatcher may own the rows.
        3. Send the batch (_send_batch), recording outcomes in small groups (GroupWriter): groups
           grow to the task's chunk only while the journal is durable, since a journal lost with
           Redis would otherwise cost the whole group again.
        4. If a group cannot be written before give_up_at, stop: the rows not recorded stay
           `sending` and come back when the lease expires; the accepted ones among them are kept
           (journal.keep: noted again, and in a spool file on this host) for whoever takes them over."""
        now = self.clock.now()
        lease = wall_duration(self.clock, self.settings.lease_seconds)
        mode = self.journal.mode()
        with self.sessions.begin() as session:
            batch = take_over(session, delivery_ids, token=token, now=now, lease=lease, journal_epoch=mode.epoch)
        report = SendReport(taken=len(batch.jobs), journal=mode.name)
        if not batch.jobs:
            return report
        lease_seconds = float(self.settings.lease_seconds)
        started = time.monotonic()
        deadlines = _Deadlines(
            # Stop a safe margin before the lease ends: past it, another dispatcher may own the rows.
            stop_at=now + lease - min(lease / 5, wall_duration(self.clock, 60)),
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
            on_abandon=lambda group: self.journal.keep(group.sent),
            new_group=lambda: Outcome(provider=self.provider),
            journaled_group_size=max(self.settings.outcome_group_size, self.settings.send_chunk_size) if mode.durable else None,
            journaled_group_seconds=max(self.settings.outcome_group_seconds, self.settings.outcome_journaled_group_seconds),
        )
        outcomes = _Outcomes(writer, everything=Outcome(provider=self.provider))
        try:
            self._send_batch(batch, deadlines, outcomes, current_epoch=mode.epoch)
            if not writer.abandoned:
                writer.flush()
        finally:
            self._release_connections()
        everything = outcomes.everything
        report.deferred = outcomes.deferred
        if self.gate is not None and not writer.abandoned:
            report.paused_campaigns = self._pause_erring_campaigns(batch, everything)
        report.already_sent = outcomes.already_sent
        report.unknown_after_journal_loss = outcomes.journal_lost
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

    def _release_connections(self) -> None:
        """Connections counted against a provider's max_connections are closed and given back at
        the end of each task: a held place must not outlive the task that holds it."""
        held, self._held = self._held, set()
        for name in held:
            if self.transports is not None:
                self._transport(name).close()
            # Redis away: the place frees itself when its lease runs out.
            self._ask_gate(lambda gate: gate.release_connection(name, self._holder))
        self._count_light(force=True)

    def _pause_erring_campaigns(self, batch: Batch, everything: Outcome) -> list[str]:
        """After the batch: each campaign with a row that bounced or failed in it is paused by the
        system when its error rate passed campaign_max_error_rate (listmonk's max-errors)."""
        from course.campaigns.service import pause_for_errors

        erring = {i for i, _, _ in everything.bounced} | {i for i, _ in everything.failed}
        campaign_ids = sorted({job.campaign_id for job in batch.jobs if job.delivery_id in erring and job.campaign_id})
        paused = []
        for campaign_id in campaign_ids:
            with self.sessions.begin() as session:
                reason = pause_for_errors(
                    session, campaign_id, max_error_rate=self.settings.campaign_max_error_rate,
                    min_rows=self.settings.campaign_error_min_rows, now=self.clock.now(),
                )  # fmt: skip
            if reason:
                log.warning("campaign %d paused by the system: %s", campaign_id, reason)
                paused.append(f"campaign {campaign_id}: {reason}")
        return paused

    def _record(self, group: Outcome, token: str) -> None:
        with self.sessions.begin() as session:
            record(session, group, token=token, now=self.clock.now(), message_ids=self.message_ids)

    def _send_batch(self, batch: Batch, deadlines: _Deadlines, outcomes: _Outcomes, *, current_epoch: str) -> None:
        """1. Settle what needs no sending: rows the journal says the relay accepted under an
           earlier lease (sent), rows whose earlier attempt was under a journal since lost (unknown
           outcome: back-off), rows a stop came in for since the claim (cancelled, held).
        2. Send the others one by one (_send_one) until one says the batch must stop.
        3. Settle the rows not tried, once, as the reason to stop says: released (the lease is
           nearly over), waiting for their back-off (the relay is unreachable), or left to the
           lease (outcomes cannot be written)."""
        sendable = self._settle_unsent(batch, outcomes, current_epoch=current_epoch)
        templates = TemplateCache()  # each lesson rendered and its CSS inlined once per batch
        for position, job in enumerate(sendable):
            stop = self._send_one(job, batch, deadlines, outcomes, templates)
            if stop is not None:
                self._settle_rest(stop, sendable[position:], outcomes)
                return

    def _settle_unsent(self, batch: Batch, outcomes: _Outcomes, *, current_epoch: str) -> list[DeliveryJob]:
        """Step 1 of _send_batch: settle the rows that are not to be sent now; return the others."""
        retaken = [job.delivery_id for job in batch.jobs if job.attempts > 1]
        already_sent = self.journal.accepted_among(retaken) if retaken else set()
        sendable = []
        for job in batch.jobs:
            if job.delivery_id in already_sent:
                # The relay accepted it under an earlier lease whose outcome was never written (a
                # lost worker, a database away past the lease): it is sent, whatever changed since.
                log.info("%s was accepted before its worker was lost (send journal): settled as sent, not sent again", _about(job), extra=_fields(job))
                outcomes.already_sent += 1
                outcomes.settle(Settled.SENT, job.delivery_id)
            elif job.journal_epoch is not None and job.journal_epoch != current_epoch:
                # Its earlier attempt was never recorded, and the journal that would say whether the
                # relay took it is gone (Redis restarted empty): perhaps delivered, like a time-out
                # after DATA, so never sent again at once.
                log.warning("%s: outcome unknown, the send journal of its earlier attempt is lost", _about(job), extra=_fields(job))
                outcomes.journal_lost += 1
                outcomes.attempted(self._retry_or_fail(job, "outcome unknown: the send journal of its earlier attempt was lost"))
            else:
                verdict = _still_wanted(job, batch)
                if verdict is Verdict.SEND:
                    sendable.append(job)
                else:
                    outcomes.settle(Settled.CANCELLED if verdict is Verdict.CANCEL else Settled.HELD, job.delivery_id)
        return sendable

    def _send_one(
        self, job: DeliveryJob, batch: Batch, deadlines: _Deadlines, outcomes: _Outcomes, templates: TemplateCache
    ) -> _Stop | None:
        """Step 2 of _send_batch: send one message and note its outcome. A _Stop when the batch
        must not go on (this row included unless the stop says it is done)."""
        if outcomes.writer.abandoned:
            return _Stop.ABANDONED
        if self.clock.now() >= deadlines.stop_at or time.monotonic() >= deadlines.stop_starting:
            return _Stop.LEASE_ENDING
        try:
            composed = self.composer.delivery(job, batch, templates)
            message = (
                self.envelope.of(job.delivery_id, composed.envelope_from),
                job.test_address or job.email,
                self.dkim.sign(composed.message_bytes(), composed.message.sender_address),
            )
            if self.gate is None:
                self.transport.send(*message, deadline=deadlines.smtp)  # type: ignore[union-attr]
            else:
                self._hand_over(job, batch, message, composed.message.sender_address, deadlines, outcomes)
        except _Deferred as exc:
            outcomes.through(None)
            outcomes.deferred += 1
            due = self.clock.now() + wall_duration(self.clock, max(exc.wait, 0.001))
            log.info("%s waits %.1f s: %s", _about(job), exc.wait, exc.reason, extra=_fields(job))
            outcomes.attempted(Retry(job.delivery_id, due, exc.reason))
        except DeadlineReached:
            return _Stop.DEADLINE
        except PermanentSendError as exc:
            metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
            if job.kind in (DeliveryKind.CAMPAIGN_TEST, DeliveryKind.LESSON_TEST, DeliveryKind.ADMIN_INVITATION):
                # The test (or invited) address refused it: that says nothing about any subscriber.
                log.warning("%s test address refused it: %s", _about(job), exc.reason, extra=_fields(job))
                outcomes.attempted(Failed(job.delivery_id, f"test address refused it: {exc.reason}"))
            else:
                log.warning("%s bounced: %s", _about(job), exc.reason, extra=_fields(job))
                outcomes.attempted(Bounced(job.delivery_id, job.subscriber_id or 0, exc.reason))
        except ConnectionFailed as exc:
            # The server is down: nothing else in this batch can go either.
            metrics.SMTP_REPLIES.labels("unreachable").inc()
            outcomes.relay_down_reason = exc.reason
            return _Stop.RELAY_DOWN
        except UnknownOutcome as exc:
            # Perhaps delivered: back-off like a 4xx, never again at once (the same Message-ID
            # lets the receiving side see a repeat for what it is).
            metrics.SMTP_REPLIES.labels("unknown").inc()
            log.warning("%s unknown outcome: %s", _about(job), exc.reason, extra=_fields(job))
            outcomes.attempted(self._retry_or_fail(job, exc.reason))
        except TransientSendError as exc:
            metrics.SMTP_REPLIES.labels(metrics.code_class(exc.code)).inc()
            log.info("%s will be retried: %s", _about(job), exc.reason, extra=_fields(job))
            outcomes.attempted(self._retry_or_fail(job, exc.reason))
        except Exception as exc:  # a rendering bug must not lose the rest of the batch
            log.exception("cannot build %s", _about(job), extra=_fields(job))
            outcomes.attempted(self._retry_or_fail(job, f"cannot build message: {exc!r}"))
        else:
            # Noted before anything else: from here until its group is written, only the
            # journal keeps this message from being sent again by whoever retakes the row.
            journaled = self.journal.accepted(job.delivery_id)
            self._accepted.inc()
            if job.due_at is not None:
                latency = self._latencies.get(job.kind)
                if latency is None:
                    latency = self._latencies[job.kind] = metrics.SEND_LATENCY.labels(job.kind)
                latency.observe(max((self.clock.now() - job.due_at).total_seconds(), 0.0) / self.clock.speed)
            outcomes.settle(Settled.SENT, job.delivery_id, journaled=journaled)
        return None

    def _hand_over(
        self, job: DeliveryJob, batch: Batch, message: tuple[str, str, bytes], from_address: str,
        deadlines: _Deadlines, outcomes: _Outcomes,
    ) -> str:
        """With a gate: hand one message to the first provider of its route that can take it now,
        and return its name. Per provider, in route order:
        1. skip it while this task knows it is paused;
        2. hold one of its connection places (max_connections) for the rest of the task;
        3. ask the gate for a slot (paused, limits); sleep until the slot;
        4. send. A refused connection pauses the provider for every worker and the message tries
           the next provider; other failures are the message's (raised), and 421/454 replies or
           time-outs count toward pausing the provider.
        When no provider can take it, raise _Deferred with the shortest wait among them.

        When the gate's Redis does not answer, a provider with limits takes nothing (its limits
        cannot be checked, and a provider's limits are a contract: the rows wait), one without
        limits sends as if the gate said yes; the gate is asked again after GATE_RETRY_SECONDS."""
        own = _own_provider(job, batch)
        path = self._routes.get((own, from_address))
        if path is None:
            path = self._routes[(own, from_address)] = route(
                own=own, from_address=from_address, providers=self._providers, fallback=self.settings.provider_fallback
            )
            if own and own not in path:
                log.warning("%s names provider %r, which is not configured: routed without it", _about(job), own, extra=_fields(job))
        waits: list[tuple[float, str]] = []
        for name in path:
            limits = self._providers[name]
            now = time.monotonic()
            if self._paused.get(name, 0.0) > now:
                waits.append((self._paused[name] - now, f"provider {name} is paused"))
                continue
            refusal = self._slot(name, limits, urgent=job.kind in URGENT_KINDS, deadlines=deadlines)
            if refusal is not None:
                waits.append(refusal)
                continue
            outcomes.through(name)
            try:
                self._transport(name).send(*message, deadline=deadlines.smtp)
            except ConnectionFailed as exc:
                metrics.SMTP_REPLIES.labels("unreachable").inc()
                self._provider_failed(name, exc, at_once=True)
                waits.append((max(self._paused.get(name, now) - time.monotonic(), 0.001), f"provider {name} unreachable: {exc.reason}"))
                continue
            except DeadlineReached:
                raise
            except TransientSendError as exc:
                if provider_trouble(exc):
                    self._provider_failed(name, exc, at_once=False)
                raise
            if name in self._troubled:
                self._troubled.discard(name)
                self._ask_gate(lambda gate: gate.succeeded(name))
            return name
        if not waits:
            raise _Deferred(self.settings.retry_base_seconds, "no configured provider can take it (check COURSE_PROVIDER_FALLBACK)")
        raise _Deferred(*min(waits))

    def _transport(self, name: str) -> Transport:
        transport = self._transport_of.get(name)
        if transport is None:
            assert self.transports is not None
            transport = self._transport_of[name] = self.transports(name)
        return transport

    def _slot(self, name: str, limits: ProviderSettings, *, urgent: bool, deadlines: _Deadlines) -> tuple[float, str] | None:
        """Steps 2-3 of _hand_over: None once the message may go through `name` (after sleeping
        until its slot); else how long to wait and why."""
        now = time.monotonic()
        if self._gate_down_until > now:
            return (GATE_RETRY_SECONDS, f"the limits of provider {name} cannot be checked: {self._gate_error}") if limits.limited else None
        if not limits.metered:
            return self._light_slot(name, limits, now)
        try:
            if limits.max_connections and name not in self._held:
                if not self.gate.hold_connection(name, limits.max_connections, self._holder, seconds=float(self.settings.lease_seconds)):  # type: ignore[union-attr]
                    return CONNECTION_WAIT_SECONDS, f"provider {name}: its {limits.max_connections} connections are all in use"
                self._held.add(name)
            grant = self.gate.acquire(name, limits, urgent=urgent, max_wait=min(MAX_SLOT_WAIT_SECONDS, max(deadlines.stop_starting - now, 0.0)))  # type: ignore[union-attr]
        except GateUnavailable as exc:
            self._gate_unavailable(exc)
            return (GATE_RETRY_SECONDS, f"the limits of provider {name} cannot be checked: {exc}") if limits.limited else None
        if not grant.granted:
            if grant.paused:
                self._paused[name] = now + grant.wait
                self._troubled.add(name)
            return grant.wait, _refusal(name, grant)
        if grant.wait > 0:
            time.sleep(grant.wait)
        return None

    def _light_slot(self, name: str, limits: ProviderSettings, now: float) -> tuple[float, str] | None:
        """_slot for a provider with no rate or quota: its pause is read from the gate at most every
        LIGHT_RECHECK_SECONDS (a Redis round trip per message would cost the unlimited send path a
        few percent), its connection places held as usual, its sends counted in batches."""
        if now - self._pause_read_at.get(name, -LIGHT_RECHECK_SECONDS) >= LIGHT_RECHECK_SECONDS:
            self._pause_read_at[name] = now
            left = self._ask_gate(lambda gate: gate.pause_left(name)) or 0.0
            if left > 0:
                self._paused[name] = now + left
                self._troubled.add(name)
                return left, f"provider {name} is paused"
        if limits.max_connections and name not in self._held:
            held = self._ask_gate(lambda gate: gate.hold_connection(name, limits.max_connections, self._holder, seconds=float(self.settings.lease_seconds)))
            if held is False:
                return CONNECTION_WAIT_SECONDS, f"provider {name}: its {limits.max_connections} connections are all in use"
            if held:
                self._held.add(name)
            elif self._gate_down_until > now:
                return GATE_RETRY_SECONDS, f"the connection limit of provider {name} cannot be checked: {self._gate_error}"
        self._uncounted[name] = self._uncounted.get(name, 0) + 1
        self._count_light()
        return None

    def _count_light(self, *, force: bool = False) -> None:
        """Count the light path's sends in the gate (for `course providers`), once a second."""
        now = time.monotonic()
        if not self._uncounted or (not force and now - self._counted_at < LIGHT_RECHECK_SECONDS):
            return
        uncounted, self._uncounted, self._counted_at = self._uncounted, {}, now
        for name, sent in uncounted.items():
            self._ask_gate(lambda gate: gate.count(name, sent))

    def _gate_unavailable(self, exc: GateUnavailable) -> None:
        if self._gate_down_until <= time.monotonic():
            log.error("%s: limited providers wait, the others send without it for %.0f s", exc, GATE_RETRY_SECONDS)
        self._gate_down_until = time.monotonic() + GATE_RETRY_SECONDS
        self._gate_error = str(exc)

    def _ask_gate(self, call: Callable[[Gate], Any]) -> Any:
        """A gate call whose failure (Redis away) is logged, not raised: None then."""
        if self.gate is None or self._gate_down_until > time.monotonic():
            return None
        try:
            return call(self.gate)
        except GateUnavailable as exc:
            self._gate_unavailable(exc)
            return None

    def _provider_failed(self, name: str, exc: TransientSendError, *, at_once: bool) -> None:
        """Count a failure against the provider; when that pauses it, every worker sees the pause.
        With the gate away, a refused connection still pauses the provider for this task."""
        self._troubled.add(name)
        until = self._ask_gate(lambda gate: gate.failed(name, exc.reason, at_once=at_once))
        if until is not None:
            wait = max((until - datetime.now(until.tzinfo)).total_seconds(), 0.0)
            self._paused[name] = time.monotonic() + wait
            log.warning("provider %s paused for %.0f s: %s", name, wait, exc.reason)
        elif at_once and self._gate_down_until > time.monotonic():
            self._paused[name] = time.monotonic() + self.settings.provider_pause_seconds

    def _settle_rest(self, stop: _Stop, rest: list[DeliveryJob], outcomes: _Outcomes) -> None:
        """Step 3 of _send_batch: the rows a stopping batch did not try, settled once."""
        if stop is _Stop.ABANDONED:
            log.warning("outcomes not written: %d deliveries left to the lease", len(rest))
        elif stop is _Stop.RELAY_DOWN:
            for job in rest:
                outcomes.attempted(self._retry_or_fail(job, outcomes.relay_down_reason), write=False)
            log.warning("provider %s unreachable, %d deliveries wait: %s", self.provider, len(rest), outcomes.relay_down_reason)
        else:
            for job in rest:
                outcomes.settle(Settled.RELEASED, job.delivery_id, write=False)
            if stop is _Stop.LEASE_ENDING:
                log.warning("lease nearly over: released %d deliveries unsent", len(rest))

    def _retry_or_fail(self, job: DeliveryJob, reason: str) -> Retry | Failed:
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
        if due is None:
            span = _span(now - (job.first_attempt_at or now))
            return Failed(job.delivery_id, f"gave up after {job.attempts} attempts in {span}: {reason}")
        return Retry(job.delivery_id, due, reason)


class Verdict(Enum):
    """What the send-time check says of a claimed row."""

    SEND = "send"
    CANCEL = "cancel"  # settled cancelled: nobody wants it any more
    HOLD = "hold"  # settled held: its enrollment is paused


@dataclass(frozen=True)
class Retry:
    """A transient failure: the row is due again at `due_at`."""

    delivery_id: int
    due_at: datetime
    reason: str


@dataclass(frozen=True)
class Failed:
    """Given up on: the retry window is over, or a test address refused it."""

    delivery_id: int
    reason: str


@dataclass(frozen=True)
class Bounced:
    """A permanent refusal: the address is suppressed everywhere."""

    delivery_id: int
    subscriber_id: int
    reason: str


def _own_provider(job: DeliveryJob, batch: Batch) -> str | None:
    """The provider a row's campaign or course names (None: routed by From domain and fallback)."""
    if job.campaign_id is not None:
        campaign = batch.campaigns.get(job.campaign_id)
        return campaign.provider if campaign else None
    if job.test_campaign_id is not None:
        campaign = batch.campaigns.get(job.test_campaign_id)
        return campaign.provider if campaign else None
    lesson = batch.lessons.get(job.lesson_id or job.test_lesson_id or 0)
    if lesson is not None:
        return lesson.course.provider
    course = batch.courses.get(job.course_id or 0)
    return course.provider if course else None


def _refusal(name: str, grant: Grant) -> str:
    return {
        "paused": f"provider {name} is paused",
        "second": f"provider {name} is at its max_per_second",
        "hour": f"provider {name} used its max_per_hour",
        "day": f"provider {name} used its max_per_day",
    }.get(grant.why, f"provider {name} refused a slot ({grant.why})")


class _Stop(Enum):
    """Why a batch stops before its last row (the row it stops at is not sent)."""

    ABANDONED = "outcomes cannot be written"
    LEASE_ENDING = "lease nearly over"
    DEADLINE = "SMTP deadline reached"
    RELAY_DOWN = "relay unreachable"


@dataclass
class _Outcomes:
    """A batch's outcomes as they happen: each goes into the writer's open group (written a group at
    a time) and into `everything` (the task's report), once."""

    writer: GroupWriter
    everything: Outcome
    already_sent: int = 0  # settled as sent from the journal
    journal_lost: int = 0  # of unknown outcome: their earlier attempt's journal is gone
    relay_down_reason: str = ""
    deferred: int = 0  # no provider of their route could take them now

    def through(self, provider: str | None) -> None:
        """The outcomes that follow are of rows that went through `provider` (None: through none):
        a group records one provider, so a change of provider closes the open group first."""
        group = self.writer.group
        if group.provider != provider:
            if self.writer.open_count:
                self.writer.flush()
            self.writer.group.provider = provider

    def settle(self, kind: Settled, delivery_id: int, *, journaled: bool = True, write: bool = True) -> bool:
        """A row that is a kind and its id (sent, cancelled, held, released). `write=False`: only
        joins the group (the rows of a stopping batch, written with its last group)."""
        self.writer.group.add(kind, delivery_id)
        self.everything.add(kind, delivery_id)
        return self.writer.added(journaled=journaled) if write else True

    def attempted(self, verdict: Retry | Failed | Bounced, *, write: bool = True) -> bool:
        """A row tried and not accepted."""
        for outcome in (self.writer.group, self.everything):
            if isinstance(verdict, Retry):
                outcome.retry.append((verdict.delivery_id, verdict.due_at, verdict.reason))
            elif isinstance(verdict, Failed):
                outcome.failed.append((verdict.delivery_id, verdict.reason))
            else:
                outcome.bounced.append((verdict.delivery_id, verdict.subscriber_id, verdict.reason))
        return self.writer.added() if write else True


def _still_wanted(job: DeliveryJob, batch: Batch) -> Verdict:
    """Checked at send time, after the row was claimed: a stop that came in between still wins."""
    if job.kind == DeliveryKind.CAMPAIGN_TEST:
        # An editor asked for it just now, for whichever campaign state: only a deleted campaign stops it.
        return Verdict.SEND if (job.test_campaign_id or 0) in batch.campaigns else Verdict.CANCEL
    if job.kind == DeliveryKind.LESSON_TEST:
        # An editor asked for it just now: only a deleted lesson stops it (a retired one still shows).
        return Verdict.SEND if (job.test_lesson_id or 0) in batch.lessons else Verdict.CANCEL
    if job.kind == DeliveryKind.ADMIN_INVITATION:
        # Revoked or accepted meanwhile: its link would be dead, so it is not sent. (A re-send
        # cancels the old row; the nonce in the row's link is read now, so it is always the newest.)
        invitation = batch.invitations.get(job.invitation_id or 0)
        return Verdict.SEND if invitation is not None and invitation.live else Verdict.CANCEL
    if job.subscriber_status != SubscriberStatus.ACTIVE and job.kind != DeliveryKind.TRANSACTIONAL:
        return Verdict.CANCEL
    if job.kind == DeliveryKind.LESSON:
        if job.enrollment_status == EnrollmentStatus.PAUSED:
            return Verdict.HOLD
        if job.enrollment_status != EnrollmentStatus.ACTIVE:
            return Verdict.CANCEL
        lesson = batch.lessons.get(job.lesson_id or 0)
        if lesson is None or lesson.retired:
            return Verdict.CANCEL
    if job.kind == DeliveryKind.CAMPAIGN:
        campaign = batch.campaigns.get(job.campaign_id or 0)
        if campaign is None or campaign.cancelled:
            return Verdict.CANCEL
    return Verdict.SEND


