"""What the sender needs from a way of handing mail over, and how a hand-over can fail.

A transport takes one finished message for one recipient. It says how a failure should be treated
by the class of the error it raises, never by a return value:

- TransientSendError: this message may go through later (4xx, time-out, dropped connection);
- ConnectionFailed (a TransientSendError): the provider cannot be reached at all, so every message
  of the batch waits, not only this one;
- UnknownOutcome (a TransientSendError): the whole message was handed over, then no answer came;
  it may have been delivered, so it is retried only after back-off, never at once;
- DeadlineReached (a TransientSendError): too little of the task's lease is left to start; nothing
  was sent;
- PermanentSendError: retrying will not help (5xx about the recipient or the message); the address
  is suppressed.

`deadline` (a time.monotonic() value) bounds a hand-over: no transaction may run past it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from course.settings import DEFAULT_PROVIDER

__all__ = [
    "DEFAULT_PROVIDER",
    "ConnectionFailed",
    "DeadlineReached",
    "PermanentSendError",
    "TransientSendError",
    "Transport",
    "TransportError",
    "UnknownOutcome",
]


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


class UnknownOutcome(TransientSendError):
    """The message was handed over in full, then the reply to the end of DATA never came (a time-out
    or a dropped connection). The server may well have queued it: it is never sent again at once,
    only after the back-off of a 4xx, and counted apart."""


class DeadlineReached(TransientSendError):
    """Not enough of the task's lease is left to start this transaction: nothing was sent."""


@runtime_checkable
class Transport(Protocol):
    """One provider's connection. Implementations keep what is expensive to open (a connection, a
    session) across calls and reopen it themselves; `close` releases it and may be called twice."""

    def send(self, envelope_from: str, rcpt: str, message_bytes: bytes, /, *, deadline: float | None = None) -> None:
        """Hand over one message for one recipient, within `deadline`, or raise a TransportError subclass."""
        ...

    def close(self) -> None: ...
