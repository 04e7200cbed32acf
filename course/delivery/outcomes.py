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
4. A group whose every sent outcome is in the send journal is written by age, or at
   `journaled_group_size` (a send task's chunk), rather than every `group_size`: a kill re-sends
   what the journal lacks, not what the group holds, and the fewer writes are what the send rate
   needs (docs/reliability.md, "What it costs").
5. With `in_background`, a full group is written by a second thread while the send loop fills the
   next one, so sending never waits on a commit; the loop waits only when the next group is full
   before the previous one is written (or while its write is retried). That leaves up to two
   groups unrecorded at a kill, which is safe only because every sent outcome in them is in the send
   journal (course/delivery/journal.py): a group holding a sent outcome the journal could not note
   is written before the loop goes on, as without the second thread, so the rows that may be sent
   twice stay within one group whatever happens to Redis.

The write itself is a callback (the ledger's record() in a transaction): this module decides when,
the ledger decides what.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from course.ledger import Outcome

log = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


def outcome_size(outcome: Outcome) -> int:
    """Rows an outcome holds, over all its lists (sent, retry, failed, ...)."""
    return sum(len(value) for value in (getattr(outcome, f.name) for f in fields(outcome)) if isinstance(value, list))


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
    new_group: Callable[[], Outcome] = Outcome  # an empty group (the sender's carries its provider)
    in_background: bool = False  # write full groups from a second thread (step 4)
    # A group whose sent outcomes are all in the send journal may grow to this many before it is
    # written (its age still bounds it): the journal, not the group, bounds what a kill re-sends.
    journaled_group_size: int | None = None

    group: Outcome = field(default_factory=Outcome)
    opened_at: float | None = None
    unjournaled: int = 0  # sent outcomes in the open group that the send journal does not hold
    written: int = 0
    statements: int = 0  # flushes, for the bench's statements-per-email figure
    abandoned: bool = False
    _writing: Future[bool] | None = None  # the group the second thread is writing
    _thread: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.group = self.new_group()

    @property
    def open_count(self) -> int:
        return outcome_size(self.group)

    def added(self, *, journaled: bool = True) -> bool:
        """Call after adding an outcome to `group`; `journaled=False` for a sent one the journal
        could not note. Hands the group over when it is full or old enough. Returns False once the
        task must stop (its outcomes could not be written in time)."""
        if not journaled:
            # An earlier note may be missing too: it may sit in the group being written.
            self.unjournaled += 1
            if not self._wait_for_previous():
                return False
        if self.opened_at is None:
            self.opened_at = self.monotonic()
        size = self.group_size if self.unjournaled or self.journaled_group_size is None else self.journaled_group_size
        if self.open_count >= size or self.monotonic() - self.opened_at >= self.group_seconds:
            return self._hand_over(wait=not self.in_background or self.unjournaled > 0)
        return not self.abandoned

    def flush(self) -> bool:
        """Write the open group now and wait for every write, retrying while the database is away
        and time remains."""
        return self._hand_over(wait=True)

    def close(self) -> None:
        """Wait for a write still running and stop the second thread (a task's end)."""
        try:
            self._wait_for_previous()
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None

    def _hand_over(self, *, wait: bool) -> bool:
        # One write at a time, in order: the previous group first.
        if not self._wait_for_previous():
            return False
        if self.open_count == 0:
            self.opened_at = None
            return True
        group, self.group = self.group, self.new_group()
        self.opened_at = None
        self.unjournaled = 0
        if wait:
            return self._write(group)
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-writer")
        self._writing = self._thread.submit(self._write, group)
        return True

    def _wait_for_previous(self) -> bool:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()  # a bug in the write (not the database being away) is raised here
        return not self.abandoned

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
