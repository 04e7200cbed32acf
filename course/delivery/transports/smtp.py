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
from dataclasses import dataclass

from course.delivery.transports.base import (
    ConnectionFailed,
    PermanentSendError,
    TransientSendError,
    TransportError,
)
from course.settings import ProviderSettings, Settings

__all__ = [
    "ConnectionFailed",
    "PermanentSendError",
    "SMTPConfig",
    "SMTPTransport",
    "TransientSendError",
    "TransportError",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = 30.0

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
        )


# Envelope addresses go into MAIL FROM:<...> and RCPT TO:<...> as they are.
_UNSAFE_IN_ENVELOPE = re.compile(r"[\s<>\x00-\x1f\x7f]")


def _reply_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class SMTPTransport:
    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        try:
            connection = smtplib.SMTP(self.config.host, self.config.port, timeout=self.config.timeout)
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

    def send(self, envelope_from: str, rcpt: str, message_bytes: bytes, /) -> None:
        """Send one message to one recipient, reusing the open connection. A connection the server
        closed since the last message is reopened once before giving up."""
        sender, recipient, message = envelope_from, rcpt, message_bytes
        for address in (sender, recipient):
            if _UNSAFE_IN_ENVELOPE.search(address):
                # Written into the command line, a line break could add recipients or commands.
                raise PermanentSendError(
                    "line break, space, control character or angle bracket in an envelope address: "
                    f"{sender!r} -> {recipient!r}"
                )
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._transmit(self._connection, sender, recipient, message)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self._connection = None
                if attempt == 2:
                    raise ConnectionFailed(f"SMTP server {self._where} closed the connection: {exc}") from exc
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(recipient, (0, b""))
                raise _classify(code, f"recipient {recipient} refused: {code} {_reply_text(reply)}") from exc
            except smtplib.SMTPResponseException as exc:
                # MAIL FROM or DATA refused; the session is reset before the next message.
                self._reset()
                raise _classify(exc.smtp_code, f"{exc.smtp_code} {_reply_text(exc.smtp_error)}") from exc
            except (OSError, socket.timeout, smtplib.SMTPException) as exc:
                self.close()
                raise TransientSendError(f"SMTP error talking to {self._where}: {exc}") from exc

    @staticmethod
    def _transmit(connection: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> None:
        """One message, in two round trips where the server allows PIPELINING (RFC 2920): MAIL,
        RCPT and DATA go out in one write and their replies are read together, then the content.
        smtplib's sendmail waits for each reply in turn (four round trips), which on a fast local
        relay costs more than building the message. Failures raise the very exceptions sendmail
        raises, after the same RSET, so the caller classifies both paths alike."""
        if not connection.has_extn("pipelining"):
            connection.sendmail(sender, [recipient], message)
            return
        size = f" SIZE={len(message)}" if connection.has_extn("size") else ""
        # The addresses were checked by send(): bare, one line, no brackets. smtplib.quoteaddr would
        # parse each with email.utils.parseaddr, a tenth of a worker's time per message.
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
        code, reply = connection.getreply()
        if code != 250:
            connection._rset()
            raise smtplib.SMTPDataError(code, reply)

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.quit()
            except (OSError, smtplib.SMTPException):
                connection.close()


def _classify(code: int, reason: str) -> TransportError:
    if 500 <= code < 600:
        return PermanentSendError(reason, code=code)
    return TransientSendError(reason, code=code)
