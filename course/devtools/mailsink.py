"""The local SMTP sink behind `course run`: it accepts every message and keeps it on disk, so a person
can read the demo mail without a mail server.

Each message is stored byte for byte as ``<mail_dir>/<UTC yyyymmddTHHMMSS>-<counter>-<recipient>.eml``,
below a ``Return-Path:`` line with its envelope sender (as a delivering server adds one, RFC 5321
4.4: a VERP bounce address shows there), and gets one line in ``<mail_dir>/index.tsv`` (received_at, envelope from, recipients, subject,
file name), so ``cat var/mail/index.tsv`` shows what was sent and ``read_mailbox`` parses it back.
"""

from __future__ import annotations

import email.policy
import errno
import itertools
import logging
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

DATA_SIZE_LIMIT_BYTES = 10 * 1024 * 1024
READY_TIMEOUT_SECONDS = 10.0
INDEX_FILE_NAME = "index.tsv"
INDEX_COLUMNS = ("received_at", "envelope_from", "recipients", "subject", "file")
# The greeting name. Without it aiosmtpd calls socket.getfqdn(), which can stall for seconds on a
# machine with slow or broken DNS.
SERVER_HOSTNAME = "course-mailsink"

_UNSAFE_FILE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._@+-]+")
_EML_NAME = re.compile(r"^\d{8}T\d{6}-(?P<counter>\d+)-.*\.eml$")
_MAX_RECIPIENT_CHARS_IN_NAME = 64


class MailSinkError(OSError):
    """The sink could not start, e.g. its port is taken."""


class BoundPortController(Controller):
    """aiosmtpd's threaded Controller, plus port 0: the OS picks a free port and ``port`` holds the
    real one once ``start()`` returns. (The stock Controller would try to connect to port 0 to
    finish starting.) Binding 0 directly leaves no window in which another process takes the port."""

    def _trigger_server(self) -> None:
        assert self.server is not None  # set by the loop thread before start() gets here
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _port_taken_error(host: str, port: int) -> MailSinkError:
    return MailSinkError(
        errno.EADDRINUSE,
        f"cannot listen on {host}:{port}: the port is taken (is another `course run` or mail "
        "catcher running? pick another port with COURSE_SMTP_PORT)",
    )


def _raise_if_port_taken(host: str, port: int) -> None:
    # aiosmtpd only reports a failed bind after its whole ready_timeout has passed; a trial bind
    # answers at once. Same SO_REUSEADDR as asyncio's, so a port in TIME_WAIT does not count as taken.
    family, socket_type, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, socket_type, protocol) as trial_socket:
        trial_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            trial_socket.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise _port_taken_error(host, port) from error
            raise MailSinkError(error.errno, f"cannot listen on {host}:{port}: {error}") from error


def start_controller(handler: Any, host: str, port: int) -> BoundPortController:
    """Start an SMTP server thread for `handler` on host:port (0: any free port). Raises
    MailSinkError naming host:port when the address cannot be bound."""
    if port != 0:
        _raise_if_port_taken(host, port)
    controller = BoundPortController(
        handler,
        hostname=host,
        port=port,
        ready_timeout=READY_TIMEOUT_SECONDS,
        server_hostname=SERVER_HOSTNAME,
        data_size_limit=DATA_SIZE_LIMIT_BYTES,
        enable_SMTPUTF8=True,
    )
    try:
        controller.start()
    except OSError as error:
        # The loop thread has already ended; close its loop so nothing leaks.
        controller.stop(no_assert=True)
        controller.loop.close()
        if error.errno == errno.EADDRINUSE:  # taken between the trial bind and this one
            raise _port_taken_error(host, port) from error
        raise MailSinkError(error.errno, f"cannot listen on {host}:{port}: {error}") from error
    return controller


def sanitise_for_file_name(address: str) -> str:
    """An address reduced to characters that are safe and readable in a file name."""
    cleaned = _UNSAFE_FILE_NAME_CHARS.sub("_", address).strip("._")
    return cleaned[:_MAX_RECIPIENT_CHARS_IN_NAME] or "unknown"


def _tsv_field(value: str) -> str:
    # A tab or newline inside a field would break the one-line-per-message layout.
    return " ".join(value.split()) if value else ""


def _return_path_line(envelope_from: str) -> bytes:
    # aiosmtpd refuses a MAIL FROM with a line break, and hands the null sender on as "<>".
    address = " ".join(envelope_from.split()).removeprefix("<").removesuffix(">")
    return b"Return-Path: <" + address.encode("utf-8", "replace") + b">\r\n"


def _decoded_subject(message: ReceivedMessage) -> str:
    try:
        return str(message.parsed(headers_only=True).get("subject", ""))
    except Exception:  # a mangled header must not lose the message
        return ""


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as an SMTP server took it at the end of DATA."""

    envelope_from: str
    recipients: list[str]
    data: bytes  # exactly as received after DATA
    received_at: datetime

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> ReceivedMessage:
        return cls(
            envelope_from=envelope.mail_from or "",
            recipients=list(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            received_at=datetime.now(UTC),
        )

    def parsed(self, *, headers_only: bool = False) -> EmailMessage:
        message = BytesParser(policy=email.policy.default).parsebytes(self.data, headersonly=headers_only)
        assert isinstance(message, EmailMessage)  # always so with policy.default
        return message


class DataHandler:
    """The end of DATA for an aiosmtpd handler, done once: `refusal` may answer first (a scripted
    4xx/5xx, a delay), else the message read from the envelope goes to `accept`, whose return is
    the reply. The sink below, the tests' recording server and the fault runs' server extend it."""

    async def refusal(self, envelope: Envelope) -> str | None:
        return None

    async def accept(self, message: ReceivedMessage) -> str:
        raise NotImplementedError

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self.refusal(envelope)
        if reply is not None:
            return reply
        return await self.accept(ReceivedMessage.from_envelope(envelope))


class MailDirHandler(DataHandler):
    """aiosmtpd handler that stores each message in `mail_dir` and appends it to the index."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        self.index_path = mail_dir / INDEX_FILE_NAME
        # Continue after the highest counter already on disk, so a restarted sink never reuses a
        # name within the same second. Handlers run on the controller's single event-loop thread,
        # so the counter needs no lock.
        self._counter = itertools.count(self._highest_counter_on_disk() + 1)

    def _highest_counter_on_disk(self) -> int:
        highest = 0
        for path in self.mail_dir.glob("*.eml"):
            match = _EML_NAME.match(path.name)
            if match:
                highest = max(highest, int(match["counter"]))
        return highest

    async def accept(self, message: ReceivedMessage) -> str:
        recipients = message.recipients
        file_name = (
            f"{message.received_at:%Y%m%dT%H%M%S}-{next(self._counter):06d}-"
            f"{sanitise_for_file_name(recipients[0] if recipients else '')}.eml"
        )
        try:
            self._write_atomically(self.mail_dir / file_name, _return_path_line(message.envelope_from) + message.data)
            self._append_index_line(
                received_at=message.received_at.isoformat(timespec="seconds"),
                envelope_from=message.envelope_from,
                recipients=",".join(recipients),
                subject=_decoded_subject(message),
                file=file_name,
            )
        except OSError as error:
            log.exception("mail sink could not store a message in %s", self.mail_dir)
            # Transient reply: the sender keeps the message and retries, rather than losing it.
            return f"451 4.3.0 Could not store the message: {error.strerror or error}"
        return "250 2.0.0 Message accepted for delivery"

    def _write_atomically(self, path: Path, content: bytes) -> None:
        # Readers (read_mailbox, a person's editor) see the whole file or none of it. No fsync: this
        # is a demo mailbox, visibility matters, durability across a power cut does not.
        # The temp name does not end in .eml, so read_mailbox never picks it up.
        file_descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
        try:
            with os.fdopen(file_descriptor, "wb") as temp_file:
                temp_file.write(content)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def _append_index_line(self, **fields: str) -> None:
        line = "\t".join(_tsv_field(fields[column]) for column in INDEX_COLUMNS) + "\n"
        is_new_index = not self.index_path.exists()
        # One write() of one short line to a file opened for append lands whole, even with other
        # writers, so the index never has interleaved lines.
        with self.index_path.open("a", encoding="utf-8") as index_file:
            if is_new_index:
                index_file.write("\t".join(INDEX_COLUMNS) + "\n")
            index_file.write(line)


class MailSink:
    """A local SMTP server that stores every message it receives in `mail_dir`.

    Use as a context manager, or call start() and stop(). With port 0 the OS picks a free port;
    read it back from `port` after start()."""

    def __init__(self, mail_dir: Path, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.mail_dir = Path(mail_dir)
        self.host = host
        self.port = port
        self._controller: BoundPortController | None = None

    @property
    def index_path(self) -> Path:
        return self.mail_dir / INDEX_FILE_NAME

    @property
    def is_running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError(f"mail sink on {self.host}:{self.port} is already running")
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self._controller = start_controller(MailDirHandler(self.mail_dir), self.host, self.port)
        self.port = self._controller.port
        log.info("mail sink listening on %s:%s, storing mail in %s", self.host, self.port, self.mail_dir)

    def stop(self) -> None:
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def read_mailbox(mail_dir: Path) -> list[EmailMessage]:
    """Every message the sink stored in `mail_dir`, oldest first (file names start with the UTC time
    and a counter). An absent directory is an empty mailbox."""
    mail_dir = Path(mail_dir)
    if not mail_dir.is_dir():
        return []
    parser = BytesParser(policy=email.policy.default)
    messages: list[EmailMessage] = []
    for path in sorted(mail_dir.glob("*.eml"), key=lambda eml_path: eml_path.name):
        parsed = parser.parsebytes(path.read_bytes())
        assert isinstance(parsed, EmailMessage)  # always so with policy.default
        messages.append(parsed)
    return messages
