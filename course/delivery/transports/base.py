"""What the sender needs from a way of handing mail over, and how a hand-over can fail.

A transport takes one finished message for one recipient. It says how a failure should be treated
by the class of the error it raises, never by a return value:

- TransientSendError: this message may go through later (4xx, time-out, dropped connection);
- ConnectionFailed (a TransientSendError): the provider cannot be reached at all, so every message
  of the batch waits, not only this one;
- PermanentSendError: retrying will not help (5xx about the recipient or the message); the address
  is suppressed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from course.settings import DEFAULT_PROVIDER

__all__ = ["DEFAULT_PROVIDER", "ConnectionFailed", "PermanentSendError", "TransientSendError", "Transport", "TransportError"]


class TransportError(Exception):
    """A message was not handed over. `reason` names the server and what it said; `code` is the
    provider's reply code when it gave one."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TransientSendError(TransportError):
    """4xx replies, time-outs, refused or dropped connections: the message may go through later."""


class PermanentSendError(TransportError):
    """5xx replies about the recipient or the message: retrying will not help."""


class ConnectionFailed(TransientSendError):
    """The server could not be reached at all: every message of the batch waits, not just one."""


@runtime_checkable
class Transport(Protocol):
    """One provider's connection. Implementations keep what is expensive to open (a connection, a
    session) across calls and reopen it themselves; `close` releases it and may be called twice."""

    def send(self, envelope_from: str, rcpt: str, message_bytes: bytes, /) -> None:
        """Hand over one message for one recipient or raise a TransportError subclass."""
        ...

    def close(self) -> None: ...
