"""The embedded broker for one machine with no Redis: kombu's SQLAlchemy transport on a SQLite file,
polled often enough that a lesson does not wait a second per hop.

(kombu hands every transport option to create_engine, so `polling_interval` cannot be passed as an
option; a subclass sets it instead.)"""

from __future__ import annotations

from kombu.transport.sqlalchemy import Transport as SQLAlchemyTransport

POLLING_INTERVAL_SECONDS = 0.1


class Transport(SQLAlchemyTransport):
    polling_interval = POLLING_INTERVAL_SECONDS


def register() -> None:
    """Make `embedded+sqlite:///path` a broker URL kombu understands."""
    from kombu.transport import TRANSPORT_ALIASES

    TRANSPORT_ALIASES.setdefault("embedded", f"{__name__}:Transport")
