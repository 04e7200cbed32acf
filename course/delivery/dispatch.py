"""The dispatcher: claims due rows in batches and hands them to send tasks.

It holds no schedule of its own: each run asks the ledger what is due now. Any number of
dispatchers may run at once (claims skip each other's locked rows), and a run that dies loses
nothing: its leased rows come back when the lease expires.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from course.clock import Clock, wall_duration
from course.delivery.journal import NoJournal, SendJournal
from course.ledger import claim_due, count_in_flight, fail_exhausted_leases, message_ids_from_secret
from course.settings import Settings

log = logging.getLogger(__name__)

# enqueue(delivery_ids, lease_token, urgent): hand one chunk to a send task.
Enqueue = Callable[[list[int], str, bool], None]


@dataclass
class DispatchReport:
    claimed: int = 0
    tasks: int = 0
    given_up: int = 0
    enqueue_failed: bool = False
    throttled: bool = False  # stopped because dispatch_max_in_flight rows were already handed out


def in_flight_cap(settings: Settings) -> int:
    """How many rows may be handed out at once. dispatch_max_in_flight, and when every provider has
    a max_per_second, no more than they can send in three dispatch intervals (at least one chunk):
    rows waiting for a limited provider wait in the database, not in the broker, where they would
    outlive their lease."""
    rates = [provider.max_per_second for provider in settings.provider_settings.values()]
    if any(rate is None for rate in rates):
        return settings.dispatch_max_in_flight
    paced = int(sum(rates) * 3 * settings.dispatch_interval_seconds)  # type: ignore[arg-type]
    return min(settings.dispatch_max_in_flight, max(paced, settings.send_chunk_size))


def chunks(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def dispatch_due(
    sessions: sessionmaker[Session],
    *,
    settings: Settings,
    clock: Clock,
    enqueue: Enqueue,
    urgent_only: bool = False,
    journal: SendJournal | None = None,
) -> DispatchReport:
    """1. Give up on rows whose workers died on every attempt (those the send journal holds were
       accepted by the relay before their worker died: they are settled as sent).
    2. Back-pressure: count the rows already handed out whose lease still runs. Claim only up to
       in_flight_cap of them (dispatch_max_in_flight, less when every provider is rate-limited), so a burst of a million due rows is fed to the workers as
       they keep up instead of being queued in the broker, where rows would outlive their lease and
       be claimed again for nothing. Confirmations (the priority queue) are claimed even then.
    3. Claim a batch of due rows (committed before anything is enqueued, so a send task can never
       run before its rows are visible as leased).
    4. Split it into chunks (urgent_chunk_size for urgent rows, send_chunk_size for bulk), urgent
       ones first, and enqueue one task per chunk.
    5. Repeat while batches come back full, up to dispatch_max_batches per run.
    If the broker is down, stop: the rows stay leased and are claimed again after the lease.
    `urgent_only` (the signups task between two runs) claims only urgent rows, and skips steps 1-2."""
    report = DispatchReport()
    journal = journal or NoJournal()
    in_flight = 0
    if not urgent_only:
        with sessions.begin() as session:
            report.given_up = fail_exhausted_leases(
                session, now=clock.now(), max_attempts=settings.max_attempts,
                accepted=journal.accepted_among, message_ids=message_ids_from_secret(settings.list_id_domain, settings.secret_key),
            )  # fmt: skip
            in_flight = count_in_flight(session, now=clock.now())
    lease = wall_duration(clock, settings.lease_seconds)
    cap = in_flight_cap(settings)
    for _ in range(settings.dispatch_max_batches):
        room = cap - in_flight
        full = not urgent_only and room <= 0
        if full and not report.throttled:
            report.throttled = True
            log.info("%d deliveries in flight (limit %d): only urgent mail this run", in_flight, cap)
        only_urgent = urgent_only or full
        limit = settings.dispatch_batch_size if only_urgent else min(settings.dispatch_batch_size, room)
        with sessions.begin() as session:
            claim = claim_due(session, now=clock.now(), limit=limit, lease=lease, urgent_only=only_urgent)
        if claim is None:
            break
        report.claimed += claim.size
        in_flight += claim.size
        try:
            for urgent, ids in ((True, claim.urgent_ids), (False, claim.bulk_ids)):
                for chunk in chunks(ids, settings.urgent_chunk_size if urgent else settings.send_chunk_size):
                    enqueue(chunk, claim.token, urgent)
                    report.tasks += 1
        except Exception:
            log.exception("cannot enqueue send tasks; %d leased rows wait for their lease to expire", claim.size)
            report.enqueue_failed = True
            break
        if claim.size < limit:
            break
    return report
