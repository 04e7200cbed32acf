"""Send outcomes recorded as they happen, in small groups, by one send task.

A task used to write the outcomes of its whole chunk (up to 500 messages) in one go at the end, and
never retried that write: a database blip at that moment, or a killed worker before it, left every
row `sending` until its lease ran out, and the whole chunk went out again. Now:

1. Each outcome joins the open group; the group is written when it holds `group_size` outcomes or
   is `group_seconds` old, whichever comes first (50 and 250 ms by default), so a kill or a blip
   costs at most one group of re-sends.
2. A write that fails because the database is away (OperationalError, InterfaceError, a dropped
   connection) is retried with exponential back-off, and the task sends nothing new meanwhile.
3. Retrying stops `give_up_at` (shortly before the lease ends): past it another dispatcher may own
   the rows, so the task is abandoned; its unwritten group is re-sent after the lease, nothing more.
4. A group whose every sent outcome is in the send journal is written at `journaled_group_size`
   (a send task's chunk) or `journaled_group_seconds` old (2 s), rather than every `group_size` or
   `group_seconds`: a kill re-sends what the journal lacks, not what the group holds, and the fewer
   writes are what the send rate needs (docs/reliability.md, "What it costs"). A sent outcome the
   journal could not note cuts the group back to `group_size`, so the rows that may be sent twice
   stay within one group whatever happens to Redis.

Groups are written by the send loop itself, between two messages. A second thread writing one
group while the loop sent the next was tried and measured slower: the writer's Python (building
the UPDATE for hundreds of ids) competes with the send loop for the GIL, and every SMTP reply the
loop waited for then also waited for the interpreter (docs/reliability.md, "What it costs").

The write itself is a callback (the ledger's record() in a transaction): this module decides when,
the ledger decides what.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from course.ledger import Outcome

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


_LISTS = tuple(f.name for f in fields(Outcome) if f.name != "provider")


def outcome_size(outcome: Outcome) -> int:
    """Rows an outcome holds, over all its lists (sent, retry, failed, ...)."""
    return sum(len(getattr(outcome, name)) for name in _LISTS)


def is_database_away(exc: BaseException) -> bool:
    """Errors worth waiting out: the server restarting, down, or the connection cut."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class GroupWriter:
    write: Callable[[Outcome], None]
    give_up_at: float  # time.monotonic() value
    group_size: int = 50
    group_seconds: float = 0.25
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    on_write: Callable[[str], None] = lambda result: None  # "ok", "retried", "abandoned" (metrics)
    # Given the group that could not be written, once, when the task is abandoned: the sender keeps
    # its accepted ones where the next holder of the rows can read them (SendJournal.keep).
    on_abandon: Callable[[Outcome], None] = lambda group: None
    new_group: Callable[[], Outcome] = Outcome  # an empty group (the sender's carries its provider)
    # A group whose sent outcomes are all in the send journal may grow to this many before it is
    # written (its age still bounds it): the journal, not the group, bounds what a kill re-sends.
    journaled_group_size: int | None = None
    journaled_group_seconds: float | None = None  # and this old (default: group_seconds)

    group: Outcome = field(default_factory=Outcome)
    opened_at: float | None = None
    unjournaled: int = 0  # sent outcomes in the open group that the send journal does not hold
    written: int = 0
    statements: int = 0  # flushes, for the bench's statements-per-email figure
    abandoned: bool = False

    def __post_init__(self) -> None:
        self.group = self.new_group()

    @property
    def open_count(self) -> int:
        return outcome_size(self.group)

    def added(self, *, journaled: bool = True) -> bool:
        """Call after adding an outcome to `group`; `journaled=False` for a sent one the journal
        could not note. Writes the group when it is full or old enough. Returns False once the
        task must stop (its outcomes could not be written in time)."""
        if not journaled:
            self.unjournaled += 1
        if self.opened_at is None:
            self.opened_at = self.monotonic()
        if self.unjournaled or self.journaled_group_size is None:
            size, seconds = self.group_size, self.group_seconds
        else:
            size, seconds = self.journaled_group_size, self.journaled_group_seconds or self.group_seconds
        if self.open_count >= size or self.monotonic() - self.opened_at >= seconds:
            return self.flush()
        return not self.abandoned

    def flush(self) -> bool:
        """Write the open group now, retrying while the database is away and time remains."""
        if self.abandoned:
            return False
        if self.open_count == 0:
            self.opened_at = None
            return True
        group, self.group = self.group, self.new_group()
        self.opened_at = None
        self.unjournaled = 0
        return self._write(group)

    def _keep(self, group: Outcome) -> None:
        try:
            self.on_abandon(group)
        except Exception:  # noqa: BLE001 - keeping is a last resort: the lease still brings the rows back
            log.exception("cannot keep %d unwritten outcomes", outcome_size(group))

    def _write(self, group: Outcome) -> bool:
        """Write one group, retrying while the database is away and time remains."""
        if self.abandoned:
            return False
        delay = RETRY_FIRST_SECONDS
        tries = 0
        while True:
            tries += 1
            try:
                self.write(group)
            except Exception as exc:
                if not is_database_away(exc):
                    raise
                remaining = self.give_up_at - self.monotonic()
                if remaining <= 0:
                    self.abandoned = True
                    self.on_write("abandoned")
                    self._keep(group)
                    log.error(
                        "abandoning a send task: %d outcomes could not be written before its lease ends "
                        "(%d tries; last error: %s); those rows are sent again after the lease "
                        "unless the send journal holds them",
                        outcome_size(group), tries, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                    )  # fmt: skip
                    return False
                if tries == 1:
                    log.warning("cannot write %d outcomes, retrying until the lease ends: %s", outcome_size(group), str(exc).splitlines()[0] if str(exc) else exc)
                self.sleep(min(delay, remaining))
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            self.written += outcome_size(group)
            self.statements += 1
            self.on_write("ok" if tries == 1 else "retried")
            return True
