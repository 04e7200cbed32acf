"""The suppression list: addresses that must not be mailed again, and why (hard bounce, complaint,
manual, erased). Each is kept only as a keyed one-way hash (HMAC-SHA256 of the lower-cased address
under the site's secret key), so an erased person's address is in no table, and an import or a
signup of it is still recognised. Changing COURSE_SECRET_KEY makes every entry unrecognisable."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from course.models import Subscriber, SubscriberStatus, Suppression, SuppressionReason

PAGE_SIZE = 50


def address_hash(secret: str, email: str) -> str:
    return address_hasher(secret)(email)


def address_hasher(secret: str) -> Callable[[str], str]:
    """address_hash for one secret, for a million addresses: the keyed state is made once and
    copied per address (the key schedule is a third of an HMAC's cost)."""
    keyed = hmac.new(secret.encode(), b"suppression:", hashlib.sha256)

    def hashed(email: str) -> str:
        state = keyed.copy()
        state.update(email.strip().lower().encode())
        return state.hexdigest()

    return hashed


def suppress_address(
    session: Session, *, secret: str, email: str, reason: SuppressionReason, now: datetime, note: str = "", admin_id: int | None = None
) -> None:
    """Put an address on the list (an address already there keeps its first reason)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(Suppression)
        .values(address_hash=address_hash(secret, email), reason=str(reason), note=note[:2000], created_at=now, admin_id=admin_id)
        .on_conflict_do_nothing()
    )


def is_suppressed(session: Session, *, secret: str, email: str) -> str | None:
    """The reason an address is suppressed, or None."""
    return session.scalars(select(Suppression.reason).where(Suppression.address_hash == address_hash(secret, email))).first()


@dataclass(frozen=True)
class SuppressedEntry:
    """One line of the suppression page: an entry of the list (address unknown: only its hash), or
    a subscriber suppressed by their status (address known)."""

    entry_id: int | None
    address: str  # empty for a hashed entry
    fingerprint: str  # the hash's first characters, to tell entries apart
    reason: str
    note: str
    since: datetime | None


def list_suppressed(session: Session, *, secret: str, query: str = "", limit: int = PAGE_SIZE) -> list[SuppressedEntry]:
    """Entries of the list, newest first, then bounced subscribers. `query`: an exact address finds
    its hashed entry; any text finds bounced subscribers whose address contains it."""
    entries = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc()).limit(limit)
    if query:
        entries = entries.where(Suppression.address_hash == address_hash(secret, query))
    found = [
        SuppressedEntry(entry.id, "", entry.address_hash[:12], entry.reason, entry.note, entry.created_at)
        for entry in session.scalars(entries)
    ]
    bounced = (
        select(Subscriber)
        .where(Subscriber.status == SubscriberStatus.BOUNCED)
        .order_by(Subscriber.unsubscribed_at.desc(), Subscriber.id.desc())
        .limit(limit)
    )
    if query:
        bounced = bounced.where(or_(func.lower(Subscriber.email).contains(query.lower(), autoescape=True)))
    found += [
        SuppressedEntry(None, subscriber.email, address_hash(secret, subscriber.email)[:12], SuppressionReason.HARD_BOUNCE, "", subscriber.unsubscribed_at)
        for subscriber in session.scalars(bounced)
    ]
    return found


def remove_suppression(session: Session, entry_id: int) -> Suppression | None:
    """Take an entry off the list (the caller records who and why in the audit log)."""
    entry = session.get(Suppression, entry_id)
    if entry is not None:
        session.execute(delete(Suppression).where(Suppression.id == entry_id))
    return entry
