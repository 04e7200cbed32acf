"""A real SMTP server for tests: it listens on 127.0.0.1 on a free port, records every message it
accepts, and can be scripted to refuse recipients or messages with a chosen SMTP reply, the way a
provider does (550 permanent, 451 try later, 421 going away).

    with RecordingSMTPServer() as smtp_server:
        smtp_server.reject_recipient("bounce-*@example.com", 550, "5.1.1 No such user")
        smtp_server.fail_next(451, "4.3.2 Try again later", times=2)
        ... code under test sends to smtp_server.host:smtp_server.port ...
        received = smtp_server.wait_for(3, timeout=10)
"""

from __future__ import annotations

import asyncio
import fnmatch
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from types import TracebackType
from typing import Literal

from aiosmtpd.smtp import SMTP, Envelope, Session

from course.devtools.mailsink import BoundPortController, DataHandler, ReceivedMessage, start_controller

FailureStage = Literal["RCPT", "DATA"]


@dataclass(frozen=True)
class ReceivedMail:
    envelope_from: str
    envelope_to: list[str]
    data: bytes  # exactly as received after DATA
    message: EmailMessage
    received_at: datetime

    def describe(self) -> str:
        return f"{self.envelope_from} -> {','.join(self.envelope_to)}: {self.message['subject']!r}"


@dataclass
class _ScriptedFailure:
    reply: str  # "451 4.3.2 Try again later"
    messages_left: int


@dataclass(frozen=True)
class _RecipientRejection:
    pattern: str  # shell-style, matched case-insensitively
    reply: str


def _smtp_reply(code: int, text: str) -> str:
    if not 400 <= code <= 599:
        raise ValueError(f"a scripted failure needs a 4xx or 5xx SMTP code, not {code}")
    return f"{code} {text}"


class RecordingSMTPServer:
    """Start with start() or `with`; `host` and `port` say where it listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, pipelining: bool = False) -> None:
        self.host = host
        # Advertise PIPELINING (RFC 2920), as Postfix does; aiosmtpd reads commands one line at a
        # time either way, so pipelined clients work against it.
        self.pipelining = pipelining
        self._requested_port = port
        self.data_delay_seconds = 0.0  # set it to make every DATA answer that much later
        self._controller: BoundPortController | None = None
        # Guards everything below; the SMTP handlers run on the controller's thread and the test
        # reads from its own. Notified on every accepted message, for wait_for().
        self._lock = threading.Condition()
        self._received: list[ReceivedMail] = []
        self._refusals: list[str] = []  # what the scripted failures refused, for error messages
        self._failures: dict[FailureStage, deque[_ScriptedFailure]] = {"RCPT": deque(), "DATA": deque()}
        self._recipient_rejections: list[_RecipientRejection] = []

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("RecordingSMTPServer is not started, so it has no port yet")
        return self._controller.port

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError(f"RecordingSMTPServer on {self.host}:{self.port} is already running")
        self._controller = start_controller(_RecordingHandler(self), self.host, self._requested_port)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> RecordingSMTPServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------------

    def fail_next(self, code: int, text: str, times: int = 1, *, at: FailureStage = "DATA") -> None:
        """Refuse the next `times` messages with `code text`.

        at="DATA" (default): the message is sent, then refused at the end of DATA (smtplib raises
        SMTPDataError). at="RCPT": every RCPT TO of the next `times` transactions is refused
        (smtplib raises SMTPRecipientsRefused). Scripted failures queue up in call order."""
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._failures[at].append(_ScriptedFailure(_smtp_reply(code, text), times))

    def reject_recipient(self, pattern: str, code: int, text: str) -> None:
        """Answer RCPT TO with `code text` for addresses matching the shell-style `pattern`
        (case-insensitive), e.g. ("bounce-*@example.com", 550, "5.1.1 No such user"). Stays in
        force until clear(); the first matching rule wins."""
        with self._lock:
            self._recipient_rejections.append(_RecipientRejection(pattern.lower(), _smtp_reply(code, text)))

    def clear(self) -> None:
        """Forget the received messages, the refusals, and every scripted failure and rejection."""
        with self._lock:
            self._received.clear()
            self._refusals.clear()
            for queue in self._failures.values():
                queue.clear()
            self._recipient_rejections.clear()

    # --- reading -----------------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMail]:
        """Block until at least `count` messages have been accepted; return all of them. Raises
        AssertionError listing what did arrive (and what was refused) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = "\n".join(f"  {mail.describe()}" for mail in self._received) or "  (none)"
                    refused = "\n".join(f"  {refusal}" for refusal in self._refusals) or "  (none)"
                    raise AssertionError(
                        f"expected at least {count} messages on {self.host}:{self.port} within "
                        f"{timeout}s, got {len(self._received)}:\n{arrived}\nrefused:\n{refused}"
                    )
                self._lock.wait(remaining)
            return list(self._received)

    # --- called by the handler, on the server thread -----------------------------------------

    def _take_scripted_failure(self, stage: FailureStage) -> str | None:
        with self._lock:
            queue = self._failures[stage]
            if not queue:
                return None
            failure = queue[0]
            failure.messages_left -= 1
            if failure.messages_left == 0:
                queue.popleft()
            return failure.reply

    def _recipient_rejection(self, address: str) -> str | None:
        with self._lock:
            for rejection in self._recipient_rejections:
                if fnmatch.fnmatchcase(address.lower(), rejection.pattern):
                    return rejection.reply
        return None

    def _record_refusal(self, description: str) -> None:
        with self._lock:
            self._refusals.append(description)

    def _record(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._received.append(mail)
            self._lock.notify_all()


class _RecordingHandler(DataHandler):
    def __init__(self, server: RecordingSMTPServer) -> None:
        self.recording_server = server
        # The RCPT failure scripted for each transaction, taken at its first RCPT. aiosmtpd makes a
        # new Envelope after each DATA and RSET, so keying on it scopes a failure to one message.
        self._rcpt_reply_by_envelope: weakref.WeakKeyDictionary[Envelope, str | None] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when no hook is defined
        if self.recording_server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if envelope not in self._rcpt_reply_by_envelope:
            self._rcpt_reply_by_envelope[envelope] = self.recording_server._take_scripted_failure("RCPT")
        reply = self._rcpt_reply_by_envelope[envelope] or self.recording_server._recipient_rejection(address)
        if reply is not None:
            self.recording_server._record_refusal(f"RCPT TO:<{address}> -> {reply}")
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def refusal(self, envelope: Envelope) -> str | None:
        if self.recording_server.data_delay_seconds:  # a slow provider: lets a test act mid-send
            await asyncio.sleep(self.recording_server.data_delay_seconds)
        reply = self.recording_server._take_scripted_failure("DATA")
        if reply is not None:
            self.recording_server._record_refusal(
                f"DATA from {envelope.mail_from} to {','.join(envelope.rcpt_tos)} -> {reply}"
            )
        return reply

    async def accept(self, message: ReceivedMessage) -> str:
        self.recording_server._record(
            ReceivedMail(
                envelope_from=message.envelope_from,
                envelope_to=message.recipients,
                data=message.data,
                message=message.parsed(),
                received_at=message.received_at,
            )
        )
        return "250 2.0.0 OK"
