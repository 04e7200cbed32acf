"""The send journal: which deliveries the relay has accepted, written the instant it says 250.

The ledger learns a send task's outcomes a group at a time (course/delivery/outcomes.py), so a worker
killed, or a database away past the lease, leaves up to a group of rows `sending` that were in fact
accepted. Whoever takes those rows over after the lease used to send them all again. The journal
closes that window down to the message in flight:

1. Right after the relay accepts a message, the sender writes one short-lived Redis key for it
   (`course:accepted:<delivery id>`, one SET), before it starts the next message. The SET is
   written to the socket at once; the replies are read a few dozen at a time, by when they have
   long arrived, so a note costs one small socket write (about 8 µs, against 27 µs for redis-py's
   send_command and a poll for the reply per message).
2. A sender that takes over rows already attempted before (attempts > 1: a lease that ran out, a
   retry) asks the journal about them in one MGET and settles the ones it holds as sent, through
   the ledger, without sending them again.

The journal is an accelerator, never the record: PostgreSQL stays the source of truth, and a journal
that is missing (no Redis configured), down or emptied (a Redis restart without persistence) only
means those rows fall back to the group bound, re-sent at most once each. It can never lose mail: a
key is written only after a 250, and a key only ever turns a re-send into "already sent".

The journal is trusted only as far as it is durable (JournalMode). A Redis that keeps its data set
across a crash (AOF with `appendfsync everysec` or `always`, or a replica acknowledging each note
with WAIT) lets a send task's outcome groups grow to its chunk: a kill re-sends only what the
journal lacks. One that does not (no persistence, as many deployments run it) keeps the groups at
the no-journal size, since a Redis crash together with a lost worker or a database away past the
lease would otherwise re-send a whole journal-sized group. The mode is read at start and every
MODE_REFRESH_SECONDS, with the journal's epoch: a value written once per Redis data set, so a
restarted, emptied Redis is noticed (its rows leased under the old epoch are of unknown outcome).

A key lives `send_journal_ttl_seconds` (two days by default): it is needed only until the row's
outcome is in the ledger or its lease has run out and another task has taken it over (lease_seconds
plus a dispatcher cycle); the margin covers a whole system stopped for a day with rows leased.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from course.ops import metrics
from course.settings import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "course:accepted:"
# After a failed write or read, the journal is not asked again for this long: a Redis that is down
# must not cost a connection time-out per message.
PAUSE_AFTER_ERROR_SECONDS = 5.0
EPOCH_KEY = "course:journal:epoch"  # written once per Redis data set (SET NX), never expires
MODE_REFRESH_SECONDS = 30.0  # how often a journal reads its Redis's persistence settings again
WAIT_TIMEOUT_MS = 100  # how long a WAIT for the replicas may hold the send loop


@dataclass(frozen=True)
class JournalMode:
    """Whether the journal survives a Redis crash, and why: what the workers log, `/readyz`, the
    `course_send_journal_mode` metric and `course check-config` show."""

    name: str  # "durable", "volatile" (kept, but lost with Redis) or "off"
    reason: str
    epoch: str = ""  # the Redis data set's epoch ("" when it could not be read)

    @property
    def durable(self) -> bool:
        return self.name == "durable"


JOURNAL_OFF = JournalMode("off", "no Redis for the journal (or COURSE_SEND_JOURNAL_TTL_SECONDS=0)")


def judge_durability(config: Mapping[str, str], *, connected_replicas: int, wait_replicas: int) -> tuple[bool, str]:
    """Whether a Redis with these settings (CONFIG GET appendonly, appendfsync) keeps the journal
    through a crash of Redis or its host, and a sentence saying why. Pure."""
    appendonly = config.get("appendonly", "").lower()
    appendfsync = config.get("appendfsync", "").lower()
    if appendonly == "yes" and appendfsync in ("always", "everysec"):
        return True, f"Redis writes an append-only file (appendfsync {appendfsync})"
    if wait_replicas > 0 and connected_replicas >= wait_replicas:
        return True, f"each note is acknowledged by {wait_replicas} of {connected_replicas} online replicas (WAIT)"
    if wait_replicas > 0:
        return False, f"COURSE_SEND_JOURNAL_WAIT_REPLICAS={wait_replicas} but Redis has {connected_replicas} replicas online"
    if appendonly == "yes":
        return False, f"Redis's append-only file is synced by the OS only (appendfsync {appendfsync or 'unknown'}): a host crash loses recent notes"
    if not appendonly:
        return False, "Redis's persistence settings cannot be read (CONFIG GET refused)"
    return False, "Redis keeps no append-only file (appendonly no): a Redis restart empties the journal"


def journal_key(delivery_id: int) -> str:
    return f"{KEY_PREFIX}{delivery_id}"


class SendJournal(Protocol):
    def accepted(self, delivery_id: int) -> bool:
        """Note that the relay accepted this delivery. False when it could not be noted."""
        ...

    def accepted_among(self, delivery_ids: Sequence[int]) -> set[int]:
        """Those of `delivery_ids` noted as accepted (empty when the journal cannot be read)."""
        ...

    def mode(self) -> JournalMode:
        """Whether the journal survives a Redis crash now (read again every MODE_REFRESH_SECONDS)."""
        ...

    def keep(self, delivery_ids: Sequence[int]) -> None:
        """Accepted deliveries whose outcomes a task could not write before its lease ended (the
        database away): kept where whoever takes the rows over reads them, so they are not sent
        again when the task exits."""
        ...


class Spool:
    """The accepted deliveries of abandoned send tasks, in files on this host: what survives a
    task's exit when Redis cannot take them either. Read by every take-over on this host (and the
    dispatcher's give-up) with the journal; a file is dropped once older than the journal's keys."""

    def __init__(self, directory: Path, *, ttl_seconds: float) -> None:
        self.directory = directory
        self.ttl_seconds = ttl_seconds

    def keep(self, delivery_ids: Sequence[int]) -> None:
        if not delivery_ids:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"accepted-{time.time_ns()}-{os.getpid()}.txt"
        partial = path.with_suffix(".partial")
        with partial.open("w") as spool:
            spool.write("".join(f"{delivery_id}\n" for delivery_id in delivery_ids))
            spool.flush()
            os.fsync(spool.fileno())
        partial.replace(path)  # whole or absent: a reader never sees half a file
        log.warning("send journal: %d accepted deliveries kept in %s for their take-over", len(delivery_ids), path)

    def among(self, delivery_ids: Sequence[int]) -> set[int]:
        wanted = set(delivery_ids)
        found: set[int] = set()
        if not wanted or not self.directory.is_dir():
            return found
        too_old = time.time() - self.ttl_seconds
        for path in self.directory.glob("accepted-*.txt"):
            try:
                if path.stat().st_mtime < too_old:
                    path.unlink()
                    continue
                found.update(int(line) for line in path.read_text().split() if int(line) in wanted)
            except (OSError, ValueError) as exc:
                log.warning("send journal: cannot read the spool file %s: %s", path, exc)
        return found


class NoJournal:
    """No Redis to keep a journal in (the embedded broker of `make run`): every outcome waits for
    its group write, as before the journal; an abandoned task's accepted rows go to the spool."""

    def __init__(self, spool: Spool | None = None) -> None:
        self.spool = spool

    def accepted(self, delivery_id: int) -> bool:
        return False

    def accepted_among(self, delivery_ids: Sequence[int]) -> set[int]:
        return self.spool.among(delivery_ids) if self.spool is not None else set()

    def mode(self) -> JournalMode:
        return JOURNAL_OFF

    def keep(self, delivery_ids: Sequence[int]) -> None:
        if self.spool is not None:
            self.spool.keep(delivery_ids)


def _online_replicas(replication: Mapping[str, object]) -> int:
    """Replicas past their first sync (INFO replication's slaveN entries in state `online`): one
    still loading the data set acknowledges nothing."""
    return sum(
        1 for name, value in replication.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )  # fmt: skip


def read_mode(client: object, *, wait_replicas: int = 0) -> JournalMode:
    """Ask this Redis how it keeps its data (CONFIG GET, INFO replication) and for the journal's
    epoch, writing a new one if the data set has none (a fresh or emptied Redis)."""
    from redis.exceptions import RedisError, ResponseError

    try:
        try:
            config = {**client.config_get("appendonly"), **client.config_get("appendfsync")}  # type: ignore[attr-defined]
        except ResponseError:  # CONFIG renamed or refused (managed Redis): judged not durable
            config = {}
        replicas = _online_replicas(client.info("replication")) if wait_replicas else 0  # type: ignore[attr-defined]
        client.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)  # type: ignore[attr-defined]
        epoch = client.get(EPOCH_KEY)  # type: ignore[attr-defined]
    except RedisError as exc:
        return JournalMode("volatile", f"Redis cannot be asked how it keeps the journal ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    durable, reason = judge_durability(config, connected_replicas=replicas, wait_replicas=wait_replicas)
    return JournalMode("durable" if durable else "volatile", reason, epoch.decode() if isinstance(epoch, bytes) else str(epoch or ""))


class RedisJournal:
    """The journal in Redis. A note is one SET, packed here and written to the journal's own
    connection right after the relay's 250; the replies are read MAX_UNREAD at a time, so the
    send loop never waits a round trip for them. A command written to the socket survives the
    worker being killed (the kernel delivers what was written), so an unread reply costs nothing
    but the knowledge that Redis stored it: a reply that says it did not, or a connection that
    broke, makes a later `accepted` return False and pauses the journal. A refused note is thus
    seen at most MAX_UNREAD messages late; the sender then writes its outcomes at once."""

    MAX_UNREAD = 32  # replies left unread before the journal reads them all

    def __init__(
        self,
        client: object,
        *,
        ttl_seconds: int,
        wait_replicas: int = 0,
        spool: Spool | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client  # a redis.Redis
        self.spool = spool
        self.ttl_seconds = ttl_seconds
        self.wait_replicas = wait_replicas  # > 0: every MAX_UNREAD notes wait for this many replicas
        self.monotonic = monotonic
        self._mode: JournalMode | None = None
        self._mode_read_at = 0.0
        self._paused_until = 0.0
        self._connection: object | None = None  # a redis.connection.Connection of our own
        self._unread: list[int] = []  # deliveries whose SET is written and whose reply is not read
        ttl = str(int(ttl_seconds)).encode()
        self._tail = b"\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ttl), ttl)

    def _packed_set(self, delivery_id: int) -> bytes:
        """SET course:accepted:<id> <unix time> EX <ttl>, in the protocol's own framing (RESP)."""
        key = journal_key(delivery_id).encode()
        value = str(int(time.time())).encode()
        return b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s%s" % (len(key), key, len(value), value, self._tail)

    def accepted(self, delivery_id: int) -> bool:
        """Write the note and return at once. False when it could not be written, or when an
        earlier note turned out not to be stored (then the journal pauses, and the caller writes
        its outcomes at once)."""
        if self._paused():
            return False
        try:
            if len(self._unread) >= self.MAX_UNREAD and not self._read_replies():
                self._paused_until = self.monotonic() + PAUSE_AFTER_ERROR_SECONDS
                return False
            connection = self._connection
            if connection is None:
                connection = self._connection = self.client.connection_pool.get_connection()  # type: ignore[attr-defined]
            connection.send_packed_command([self._packed_set(delivery_id)], check_health=False)  # type: ignore[attr-defined]
            self._unread.append(delivery_id)
        except Exception as exc:  # noqa: BLE001 - any Redis failure: fall back to the group write
            self._drop(f"cannot note delivery {delivery_id} as accepted", exc)
            return False
        return True

    def accepted_among(self, delivery_ids: Sequence[int]) -> set[int]:
        ids = list(delivery_ids)
        spooled = self.spool.among(ids) if self.spool is not None else set()
        if not ids or self._paused():
            return spooled
        try:
            values = self.client.mget([journal_key(i) for i in ids])  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - unread, the rows are sent again (the group bound)
            self._drop(f"cannot read the journal for {len(ids)} retaken deliveries", exc)
            return spooled
        return spooled | {delivery_id for delivery_id, value in zip(ids, values, strict=True) if value is not None}

    def keep(self, delivery_ids: Sequence[int]) -> None:
        """Noted again, each reply read (an earlier note may have failed, or Redis restarted since),
        and in the spool when Redis cannot take them."""
        ids = list(delivery_ids)
        if not ids:
            return
        try:
            pipe = self.client.pipeline(transaction=False)  # type: ignore[attr-defined]
            for delivery_id in ids:
                pipe.set(journal_key(delivery_id), int(time.time()), ex=self.ttl_seconds)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - the spool is the last resort
            log.warning("send journal: cannot keep %d accepted deliveries in Redis (%s)", len(ids), exc)
            if self.spool is not None:
                self.spool.keep(ids)
            return
        if self.spool is not None and not self.mode().durable:
            self.spool.keep(ids)  # Redis took them, but may lose them with the database still away

    def mode(self) -> JournalMode:
        """Read again every MODE_REFRESH_SECONDS, and at once after a failure (Redis may be a new,
        empty one). A change is logged: it changes how large the send tasks' outcome groups grow."""
        if self._mode is not None and self.monotonic() - self._mode_read_at < MODE_REFRESH_SECONDS:
            return self._mode
        if self._mode is not None and self._paused():
            return JournalMode("volatile", "Redis did not answer the last note", self._mode.epoch)
        mode = read_mode(self.client, wait_replicas=self.wait_replicas)
        if self._mode is None or mode.name != self._mode.name:
            for name in ("durable", "volatile", "off"):
                metrics.SEND_JOURNAL_MODE.labels(name).set(1 if name == mode.name else 0)
        if mode != self._mode:
            if self._mode is not None and self._mode.epoch and mode.epoch and mode.epoch != self._mode.epoch:
                log.warning("send journal: Redis's data set changed (epoch %s -> %s): notes written before are lost", self._mode.epoch, mode.epoch)
            level = logging.INFO if mode.durable else logging.WARNING
            log.log(level, "send journal %s: %s; outcome groups %s", mode.name, mode.reason,
                    "may grow to a send task's chunk" if mode.durable else "stay at the no-journal size")  # fmt: skip
        self._mode, self._mode_read_at = mode, self.monotonic()
        return mode

    def _read_replies(self) -> bool:
        """Read every reply still unread (Redis answered them long ago). False when one of them
        says the note was not stored, or (wait_replicas) when fewer replicas than asked acknowledged
        them; a broken connection raises."""
        from redis.exceptions import ResponseError

        stored = True
        connection = self._connection
        unread, self._unread = self._unread, []
        if connection is not None and unread and self.wait_replicas:
            connection.send_command("WAIT", self.wait_replicas, WAIT_TIMEOUT_MS, check_health=False)  # type: ignore[attr-defined]
        for delivery_id in unread if connection is not None else ():
            try:
                connection.read_response(disconnect_on_error=True)  # type: ignore[attr-defined]
            except ResponseError as exc:  # an error reply: out of memory, a read-only replica
                stored = False
                log.warning("send journal: delivery %d was not noted: %s", delivery_id, exc)
        if connection is not None and unread and self.wait_replicas:
            acknowledged = int(connection.read_response(disconnect_on_error=True))  # type: ignore[attr-defined]
            if acknowledged < self.wait_replicas:
                stored = False
                log.warning("send journal: %d of %d replicas acknowledged the last notes", acknowledged, self.wait_replicas)
        return stored

    def _paused(self) -> bool:
        return self.monotonic() < self._paused_until

    def _drop(self, what: str, exc: Exception) -> None:
        connection, self._connection = self._connection, None
        self._unread.clear()
        if connection is not None:
            try:
                connection.disconnect()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
        self._paused_until = self.monotonic() + PAUSE_AFTER_ERROR_SECONDS
        self._mode_read_at = float("-inf")  # Redis may come back a new, empty one: read its mode again
        log.warning(
            "send journal: %s (%s); outcomes wait for their group write for the next %.0f s",
            what, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, PAUSE_AFTER_ERROR_SECONDS,
        )  # fmt: skip


def journal_url(settings: Settings) -> str:
    """The Redis the journal lives in: COURSE_REDIS_URL, else a Redis broker; '' for none."""
    for url in (settings.redis_url, settings.broker_url):
        if url.startswith(("redis://", "rediss://")):
            return url
    return ""


def journal_from_settings(settings: Settings) -> SendJournal:
    spool = Spool(
        settings.send_spool_dir or settings.var_dir / "spool", ttl_seconds=max(settings.send_journal_ttl_seconds, settings.lease_seconds * 4)
    )
    url = journal_url(settings)
    if not url or settings.send_journal_ttl_seconds <= 0:
        return NoJournal(spool)
    return RedisJournal(
        journal_client(url),
        ttl_seconds=int(settings.send_journal_ttl_seconds),
        wait_replicas=settings.send_journal_wait_replicas,
        spool=spool,
    )


def journal_mode_of(settings: Settings) -> JournalMode:
    """The mode the workers' journal is in with these settings, asked of its Redis now: for
    `/readyz` and `course check-config`, which run in other processes than the workers."""
    url = journal_url(settings)
    if not url or settings.send_journal_ttl_seconds <= 0:
        return JOURNAL_OFF
    client = journal_client(url)
    try:
        return read_mode(client, wait_replicas=settings.send_journal_wait_replicas)
    finally:
        client.close()  # type: ignore[attr-defined]


def journal_client(url: str) -> object:
    """A Redis client for the journal: short time-outs and no retries (redis-py's default retries
    with back-off for seconds), since a note sits between two messages on the send path. A Redis
    that does not answer pauses the journal instead (PAUSE_AFTER_ERROR_SECONDS)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
