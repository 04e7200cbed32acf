"""The SMTP transport (course.delivery.transports.base.Transport over SMTP). A worker process keeps
one connection per provider open across batches and tasks (opening a connection costs more than
sending a message; the registry holds it), reconnects when the server hangs up, and sorts every
failure into transient (try again later) or permanent (stop mailing this address).
"""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import time
from dataclasses import dataclass

from course.delivery.transports.base import (
    ConnectionFailed,
    DeadlineReached,
    PermanentSendError,
    TransientSendError,
    TransportError,
    UnknownOutcome,
)
from course.settings import ProviderSettings, Settings

__all__ = [
    "ConnectionFailed",
    "PermanentSendError",
    "SMTPConfig",
    "SMTPTransport",
    "TransientSendError",
    "TransportError",
    "UnknownOutcome",
    "DeadlineReached",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = 30.0  # per command
    connect_timeout: float = 10.0  # connecting, greeting, EHLO, STARTTLS, AUTH
    data_timeout: float = 600.0  # the reply to the end of DATA

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPConfig:
        """The default provider's server (the COURSE_SMTP_* variables)."""
        return cls.from_provider(settings.default_provider)

    @classmethod
    def from_provider(cls, provider: ProviderSettings) -> SMTPConfig:
        return cls(
            host=provider.host,
            port=provider.port,
            username=provider.username,
            password=provider.password,
            starttls=provider.starttls,
            timeout=provider.timeout,
            connect_timeout=provider.connect_timeout,
            data_timeout=provider.data_timeout,
        )


# Envelope addresses go into MAIL FROM:<...> and RCPT TO:<...> as they are.
_UNSAFE_IN_ENVELOPE = re.compile(r"[\s<>\x00-\x1f\x7f]")


def _reply_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class _NoReplyAfterData(Exception):
    """Internal: the whole message went out, then the reply did not come."""


class SMTPTransport:
    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._connection: smtplib.SMTP | None = None
        self.last_code: int | None = None  # the reply code of the last transaction (metrics)

    def _connect(self, deadline: float | None) -> smtplib.SMTP:
        timeout = _bounded(self.config.connect_timeout, deadline)
        try:
            connection = smtplib.SMTP(self.config.host, self.config.port, timeout=timeout)
            connection.ehlo_or_helo_if_needed()
            if self.config.starttls:
                connection.starttls()
                connection.ehlo()
            if self.config.username:
                connection.login(self.config.username, self.config.password)
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectionFailed(f"SMTP login to {self._where} refused: {exc.smtp_code} {_reply_text(exc.smtp_error)}", code=exc.smtp_code) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise ConnectionFailed(f"cannot connect to SMTP server {self._where}: {exc}") from exc
        return connection

    @property
    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def send(self, envelope_from: str, rcpt: str, message_bytes: bytes, /, *, deadline: float | None = None) -> None:
        """Send one message to one recipient, reusing the open connection. A connection the server
        closed since the last message is reopened once before giving up, but only while nothing of
        the message has been accepted: once the end of DATA is out, a missing reply raises
        UnknownOutcome and the message is not sent again here.

        `deadline` (time.monotonic()) bounds the whole transaction: each phase's time-out is cut to
        what is left of it, and a transaction is not started when nothing is left."""
        sender, recipient, message = envelope_from, rcpt, message_bytes
        self.last_code = None
        for address in (sender, recipient):
            if _UNSAFE_IN_ENVELOPE.search(address):
                # Written into the command line, a line break could add recipients or commands.
                raise PermanentSendError(
                    "line break, space, control character or angle bracket in an envelope address: "
                    f"{sender!r} -> {recipient!r}"
                )
        for attempt in (1, 2):
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise DeadlineReached(f"the lease leaves no time to send to {recipient}")
            if self._connection is None:
                self._connection = self._connect(deadline)
            try:
                self._transmit(self._connection, sender, recipient, message, deadline)
                self.last_code = 250
                return
            except _NoReplyAfterData as exc:
                self._drop()
                raise UnknownOutcome(
                    f"no reply from SMTP server {self._where} after the end of DATA ({exc}): the message may have been delivered"
                ) from exc
            except smtplib.SMTPServerDisconnected as exc:
                self._connection = None
                if attempt == 2:
                    raise ConnectionFailed(f"SMTP server {self._where} closed the connection: {exc}") from exc
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(recipient, (0, b""))
                self.last_code = code
                raise _classify(code, f"recipient {recipient} refused: {code} {_reply_text(reply)}") from exc
            except smtplib.SMTPResponseException as exc:
                # MAIL FROM or DATA refused; the session is reset before the next message.
                self.last_code = exc.smtp_code
                self._reset()
                raise _classify(exc.smtp_code, f"{exc.smtp_code} {_reply_text(exc.smtp_error)}") from exc
            except (OSError, socket.timeout, smtplib.SMTPException) as exc:
                self._drop()
                raise TransientSendError(f"SMTP error talking to {self._where}: {exc}") from exc

    def _transmit(self, connection: smtplib.SMTP, sender: str, recipient: str, message: bytes, deadline: float | None) -> None:
        """One message. The envelope (MAIL, RCPT, DATA) goes in one write where the server allows
        PIPELINING (RFC 2920), else command by command; each command waits at most the command
        time-out. Then the content and its end, whose reply waits at most the DATA time-out. Refusals
        raise the very exceptions smtplib's sendmail raises, after the same RSET."""
        _set_timeout(connection, _bounded(self.config.timeout, deadline))
        size = f" SIZE={len(message)}" if connection.has_extn("size") else ""
        # The addresses were checked by send(): bare, one line, no brackets. smtplib.quoteaddr would
        # parse each with email.utils.parseaddr, a tenth of a worker's time per message.
        if connection.has_extn("pipelining"):
            connection.send(f"MAIL FROM:<{sender}>{size}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n")
            (mail_code, mail_reply), (rcpt_code, rcpt_reply), (data_code, data_reply) = (
                connection.getreply(),
                connection.getreply(),
                connection.getreply(),
            )
            refused = mail_code != 250 or rcpt_code not in (250, 251)
            if data_code == 354 and refused:
                # A server that accepted DATA regardless gets an empty message with no recipient.
                connection.send(b".\r\n")
                connection.getreply()
        else:
            connection.send(f"MAIL FROM:<{sender}>{size}\r\n")
            mail_code, mail_reply = connection.getreply()
            rcpt_code, rcpt_reply, data_code, data_reply = 0, b"", 0, b""
            if mail_code == 250:
                connection.send(f"RCPT TO:<{recipient}>\r\n")
                rcpt_code, rcpt_reply = connection.getreply()
                if rcpt_code in (250, 251):
                    connection.send("DATA\r\n")
                    data_code, data_reply = connection.getreply()
        if mail_code != 250:
            connection._rset()
            raise smtplib.SMTPSenderRefused(mail_code, mail_reply, sender)
        if rcpt_code not in (250, 251):
            connection._rset()
            raise smtplib.SMTPRecipientsRefused({recipient: (rcpt_code, rcpt_reply)})
        if data_code != 354:
            connection._rset()
            raise smtplib.SMTPDataError(data_code, data_reply)
        # Dot-stuffing (RFC 5321 4.5.2) by regex only when a line does start with a dot: the scan
        # for one is far cheaper than a substitution over every message.
        content = smtplib._quote_periods(message) if message.startswith(b".") or b"\n." in message else message
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        connection.send(content + b".\r\n")
        # From here the server may have the message: whatever goes wrong is an unknown outcome.
        try:
            _set_timeout(connection, _bounded(self.config.data_timeout, deadline, at_least=0.001))
            code, reply = connection.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            raise _NoReplyAfterData(str(exc) or type(exc).__name__) from exc
        if code != 250:
            connection._rset()
            raise smtplib.SMTPDataError(code, reply)

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        """Forget a connection in an unknown state without a polite QUIT (it could wait again)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (OSError, smtplib.SMTPException):
                connection.close()


def _bounded(limit: float, deadline: float | None, at_least: float = 0.05) -> float:
    """A phase's time-out, cut to what is left before `deadline`."""
    if deadline is None:
        return limit
    return max(min(limit, deadline - time.monotonic()), at_least)


def _set_timeout(connection: smtplib.SMTP, seconds: float) -> None:
    connection.timeout = seconds
    if connection.sock is not None:
        connection.sock.settimeout(seconds)


def _classify(code: int, reason: str) -> TransportError:
    if 500 <= code < 600:
        return PermanentSendError(reason, code=code)
    return TransientSendError(reason, code=code)
