"""The bounce mailbox over IMAP, always with TLS (implicit on 993, or STARTTLS on 143): the Mailbox
that `course bounces poll` and the beat task read (course/bounces/poll.py drains it).

1. Connect, verify the server's certificate (the system's CAs, or bounce_imap_ca_file for a private
   CA), log in, select the folder.
2. List the messages not flagged \\Deleted by UID, oldest first, at most `batch` of them (the rest
   wait for the next poll), and fetch each with BODY.PEEK[] (reading marks nothing).
3. A message whose report is recorded is moved to the done folder (UID MOVE, RFC 6851; or COPY,
   then \\Deleted and EXPUNGE where MOVE is missing), or deleted when there is no done folder. A
   message that could not be recorded stays where it is, to be read again next time.

Nothing is applied twice: a message is acknowledged only after its report is committed, and a
report read again after a crash between the two is recognised by its key (record.py)."""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from course.bounces.mailbox import MailboxError, MailboxMessage
from course.settings import Settings

log = logging.getLogger(__name__)

_MESSAGE_BODY = re.compile(rb"BODY\[\]")


@dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    user: str
    password: str
    folder: str = "INBOX"
    done_folder: str = "Processed"  # empty: processed messages are deleted
    tls: str = "tls"  # "tls" (implicit) or "starttls"
    ca_file: str = ""
    timeout: float = 30.0
    batch: int = 500

    @classmethod
    def from_settings(cls, settings: Settings) -> ImapConfig | None:
        """The configured mailbox, or None when COURSE_BOUNCE_IMAP_HOST is empty."""
        if not settings.bounce_imap_host:
            return None
        return cls(
            host=settings.bounce_imap_host,
            port=settings.bounce_imap_port,
            user=settings.bounce_imap_user,
            password=settings.bounce_imap_password,
            folder=settings.bounce_imap_folder,
            done_folder=settings.bounce_imap_done_folder,
            tls=settings.bounce_imap_tls,
            ca_file=settings.bounce_imap_ca_file,
            timeout=settings.bounce_imap_timeout_seconds,
            batch=settings.bounce_imap_batch,
        )

    @property
    def name(self) -> str:
        """How error messages name the mailbox (never with the password)."""
        scheme = "imaps" if self.tls == "tls" else "imap+starttls"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.folder}"


def quoted(name: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """A Mailbox over one IMAP connection, opened by messages() and closed by close() (or `with`)."""

    source = "imap"

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self._connection: imaplib.IMAP4 | None = None
        self._done_folder_ready = False
        self._deleted_pending = False
        self.total: int | None = None  # messages this poll reads, once listed (for a progress bar)

    def __enter__(self) -> ImapMailbox:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def _fail(self, doing: str, error: object) -> MailboxError:
        return MailboxError(f"bounce mailbox {self.config.name}: {doing} failed ({error})")

    def _connect(self) -> imaplib.IMAP4:
        config = self.config
        context = ssl.create_default_context(cafile=config.ca_file or None)
        try:
            if config.tls == "tls":
                connection: imaplib.IMAP4 = imaplib.IMAP4_SSL(config.host, config.port, ssl_context=context, timeout=config.timeout)
            else:
                connection = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
                connection.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as error:
            raise self._fail("connecting", error) from error
        try:
            connection.login(config.user, config.password)
            status, detail = connection.select(quoted(config.folder))
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot select folder {config.folder!r}: {_text(detail)}")
        except (OSError, imaplib.IMAP4.error) as error:
            _logout(connection)
            raise self._fail("logging in and selecting the folder", error) from error
        return connection

    def messages(self) -> Iterator[MailboxMessage]:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        try:
            status, found = connection.uid("SEARCH", "UNDELETED")
            if status != "OK":
                raise imaplib.IMAP4.error(_text(found))
            uids = [int(uid) for uid in (found[0] or b"").split()]
        except (OSError, imaplib.IMAP4.error) as error:
            raise self._fail("listing the messages", error) from error
        batch = sorted(uids)[: self.config.batch]
        self.total = len(batch)
        for uid in batch:
            try:
                raw = self._fetch(connection, uid)
            except (OSError, imaplib.IMAP4.error) as error:
                raise self._fail(f"fetching message UID {uid}", error) from error
            if raw is not None:  # gone meanwhile (another poller moved it): nothing to read
                yield MailboxMessage(str(uid), raw)

    @staticmethod
    def _fetch(connection: imaplib.IMAP4, uid: int) -> bytes | None:
        status, parts = connection.uid("FETCH", str(uid), "(BODY.PEEK[])")
        if status != "OK":
            raise imaplib.IMAP4.error(_text(parts))
        for part in parts:
            if isinstance(part, tuple) and _MESSAGE_BODY.search(part[0]):
                return part[1]
        return None

    def done(self, key: str) -> None:
        connection = self._connection
        if connection is None:
            raise MailboxError(f"bounce mailbox {self.config.name}: done({key}) before messages()")
        try:
            if self.config.done_folder:
                self._move(connection, key, self.config.done_folder)
            else:
                self._delete(connection, key)
        except (OSError, imaplib.IMAP4.error) as error:
            # Recorded but not moved: read again next time, where it changes nothing (record.py).
            raise self._fail(f"moving message UID {key} out of the folder", error) from error

    def _move(self, connection: imaplib.IMAP4, uid: str, folder: str) -> None:
        if not self._done_folder_ready:
            status, detail = connection.create(quoted(folder))
            if status != "OK" and b"ALREADYEXISTS" not in b" ".join(item for item in detail if isinstance(item, bytes)).upper():
                # Some servers answer a plain NO for an existing folder: it is checked by the move.
                log.debug("bounce mailbox %s: CREATE %s answered %s", self.config.name, folder, _text(detail))
            self._done_folder_ready = True
        if "MOVE" in connection.capabilities:
            status, detail = connection.uid("MOVE", uid, quoted(folder))
            if status != "OK":
                raise imaplib.IMAP4.error(_text(detail))
            return
        status, detail = connection.uid("COPY", uid, quoted(folder))
        if status != "OK":
            raise imaplib.IMAP4.error(_text(detail))
        self._delete(connection, uid)

    def _delete(self, connection: imaplib.IMAP4, uid: str) -> None:
        status, detail = connection.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        if status != "OK":
            raise imaplib.IMAP4.error(_text(detail))
        self._deleted_pending = True  # expunged once, at close, not once per message

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self._deleted_pending:
                connection.expunge()
            connection.close()
        except (OSError, imaplib.IMAP4.error) as error:
            log.warning("bounce mailbox %s: closing the folder failed (%s); flagged messages are expunged next time", self.config.name, error)
        _logout(connection)


def _logout(connection: imaplib.IMAP4) -> None:
    try:
        connection.logout()
    except (OSError, imaplib.IMAP4.error):
        pass  # the connection is going anyway


def _text(detail: object) -> str:
    if isinstance(detail, list):
        return " ".join(_text(item) for item in detail)
    if isinstance(detail, bytes):
        return detail.decode("utf-8", "replace")
    return str(detail)
