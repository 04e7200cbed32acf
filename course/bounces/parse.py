"""What a returned mail says, read with the standard email package. Pure: bytes in, a Report out.

1. A multipart/report of report-type delivery-status is a DSN (RFC 3464): each per-recipient block
   gives Final-Recipient, Action and Status. `failed` with 5.x.x is a hard bounce, except a full
   mailbox (5.2.2) and a policy refusal (5.7.x), which are about this message or this moment, not
   the address: those are soft, like `failed` with 4.x.x (a retry window that ran out). `delayed`,
   `delivered`, `relayed` and `expanded` are no bounce.
2. A multipart/report of report-type feedback-report is an ARF complaint (RFC 5965) when its
   Feedback-Type is abuse, fraud, virus or other; not-spam and auth-failure reports are no
   complaint.
3. Anything else that announces itself as automatic (Auto-Submitted other than "no",
   X-Autoreply, an out-of-office subject, Precedence auto_reply) is an auto-reply: ignored.
4. A plain-text bounce from a mailer daemon (Yahoo's, older Exchange and qmail shapes): the first
   SMTP reply code and enhanced status in its text, and the address in angle brackets before it.
5. Anything else is not a report.

A Report also carries what identifies the original message: the addresses the report was sent to
(its To, Delivered-To, X-Original-To, and the returned message's Return-Path, where a VERP address
shows up) and the returned message's Message-ID.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum


class Verdict(StrEnum):
    HARD = "hard"
    SOFT = "soft"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"  # out of office, vacation: not a bounce
    NO_BOUNCE = "no-bounce"  # a report that reports no failure (delayed, relayed, not-spam)
    NOT_A_REPORT = "not-a-report"


@dataclass(frozen=True)
class Recipient:
    """One recipient a report is about."""

    address: str  # the Final-Recipient (or Original-Rcpt-To), lower-case; may be empty (redacted ARF)
    verdict: Verdict
    status: str  # "5.1.1", or the ARF feedback type
    reason: str  # the Diagnostic-Code or the report's own words, one line


@dataclass(frozen=True)
class Report:
    report_id: str  # the report's own Message-ID, else a digest of its bytes
    verdict: Verdict  # the first recipient's, or the whole message's when it has none
    recipients: tuple[Recipient, ...] = ()
    addressed_to: tuple[str, ...] = ()  # where the report was sent, VERP addresses among them
    original_message_id: str = ""  # "<delivery.12@course.example.org>"
    original_recipient: str = ""  # the returned message's To address, lower-case
    detail: str = ""  # why the verdict, for a log line
    # From a provider's verified webhook, not from mail anyone can send: when neither the VERP
    # address nor the Message-ID names a delivery, the recipient's address may (record.py, step 1).
    verified_sender: bool = False


@dataclass(frozen=True)
class _Returned:
    """What every kind of report shares: its id and what identifies the original message."""

    report_id: str
    addressed_to: tuple[str, ...]
    original_message_id: str
    original_recipient: str

    def report(
        self, verdict: Verdict, detail: str, recipients: tuple[Recipient, ...] = (), *, also_addressed_to: tuple[str, ...] = ()
    ) -> Report:
        return Report(
            report_id=self.report_id,
            verdict=verdict,
            recipients=recipients,
            addressed_to=tuple(dict.fromkeys((*also_addressed_to, *self.addressed_to))),
            original_message_id=self.original_message_id,
            original_recipient=self.original_recipient,
            detail=detail,
        )


_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY_CODE = re.compile(r"\b([45]\d\d)[\s-]")
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}
_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|r[ée]ponse automatique|vacation)",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail delivery (subsystem|system))", re.IGNORECASE)
_ADDRESS_BEFORE_CODE = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>:?\s*\n?\s*.*?\b([45]\d\d)\b", re.DOTALL)
_ONE_LINE = re.compile(r"\s+")
_QUOTED_ORIGINAL = re.compile(
    r"^[ \t]*-+[^\n]*(copy of the message|original message|message follows)[^\n]*\n", re.IGNORECASE | re.MULTILINE
)


def _one_line(value: object, limit: int = 1000) -> str:
    return _ONE_LINE.sub(" ", str(value or "")).strip()[:limit]


def _address_of_field(value: object) -> str:
    """The address of a DSN/ARF address field: 'rfc822; ann@example.org' or a bare address."""
    text = _one_line(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    return parseaddr(text.strip())[1].lower() or text.strip().strip("<>").lower()


def _status_of(*texts: str) -> str:
    for text in texts:
        match = _STATUS.search(text or "")
        if match:
            return ".".join(match.groups())
    return ""


def dsn_verdict(action: str, status: str) -> Verdict:
    """The verdict of one DSN recipient block (step 1 of the module's rules)."""
    action = action.strip().lower()
    if action and action != "failed":
        return Verdict.NO_BOUNCE
    if status.startswith("5."):
        if status.startswith(("5.2.2", "5.7.")):
            return Verdict.SOFT
        return Verdict.HARD
    if status.startswith("4."):
        return Verdict.SOFT
    # `failed` with no usable status: the server says it gave up; treat it as permanent only when it
    # says so with a 5xx reply in the diagnostic (handled by the caller), else soft.
    return Verdict.SOFT


def _parts(message: Message) -> list[Message]:
    return [part for part in message.walk() if part is not message]


def _original_headers(message: Message) -> Message | None:
    """The returned message's headers: a message/rfc822 part, a text/rfc822-headers part, or (a
    plain-text bounce) the text after a marker line."""
    for part in _parts(message):
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if content_type in ("text/rfc822-headers", "text/rfc822"):
            text = part.get_payload(decode=True) or b""
            return HeaderParser(policy=email.policy.compat32).parsestr(text.decode("utf-8", "replace").lstrip())
    if not message.is_multipart():
        # A plain-text bounce quotes the original after a line such as "--- Below this line is a
        # copy of the message." (Yahoo, qmail) or "------ This is a copy of the message" (Exim).
        text = _text_of(message)
        marker = _QUOTED_ORIGINAL.search(text)
        if marker is not None:
            return HeaderParser(policy=email.policy.compat32).parsestr(text[marker.end() :].lstrip())
    return None


def _addressed_to(message: Message, original: Message | None) -> tuple[str, ...]:
    found: list[str] = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        for _, address in getaddresses([str(value) for value in message.get_all(name, [])]):
            if address:
                found.append(address.lower())
    if original is not None:
        for name in ("Return-Path", "X-Original-Return-Path"):
            value = original.get(name)
            if value:
                found.append(parseaddr(str(value))[1].lower())
    return tuple(dict.fromkeys(address for address in found if address))


def _report_id(message: Message, raw: bytes) -> str:
    message_id = _one_line(message.get("Message-ID", ""), 190)
    return message_id or "sha256:" + hashlib.sha256(raw).hexdigest()


def _text_of(message: Message) -> str:
    """The human-readable text of a message: its first text/plain part."""
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _is_auto_reply(message: Message) -> bool:
    auto_submitted = _one_line(message.get("Auto-Submitted", "")).lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(message.get(name) for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        return True
    if _one_line(message.get("Precedence", "")).lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(_one_line(message.get("Subject", ""))))


def parse_report(raw: bytes) -> Report:
    """Read one returned mail (the module's rules, in order)."""
    message = BytesParser(policy=email.policy.compat32).parsebytes(raw)
    original = _original_headers(message)
    returned = _Returned(
        report_id=_report_id(message, raw),
        addressed_to=_addressed_to(message, original),
        original_message_id=_one_line(original.get("Message-ID", ""), 300) if original is not None else "",
        original_recipient=parseaddr(str(original.get("To", "")))[1].lower() if original is not None else "",
    )
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    if message.get_content_type() == "multipart/report" and report_type == "delivery-status":
        return _dsn(message, returned)
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _arf(message, returned)
    sender = _one_line(message.get("From", ""))
    sender_name, sender_address = parseaddr(sender)
    from_daemon = bool(_DAEMON.match(sender_address) or _DAEMON.match(sender_name))
    if from_daemon:
        plain = _plain_text_bounce(_text_of(message), returned)
        if plain is not None:
            return plain
    if _is_auto_reply(message):
        return returned.report(Verdict.AUTO_REPLY, f"auto-reply: {_one_line(message.get('Subject', ''), 200)}")
    return returned.report(Verdict.NOT_A_REPORT, "neither a DSN, an ARF report nor a mailer daemon's bounce")


def _dsn(message: Message, returned: _Returned) -> Report:
    recipients: list[Recipient] = []
    for part in _parts(message):
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):  # an unparsed body: read its header blocks ourselves
            text = part.get_payload(decode=True) or b""
            blocks = [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", text.decode("utf-8", "replace"))]
        for block in blocks:
            final = block.get("Final-Recipient") or block.get("Original-Recipient")
            if not final:
                continue  # the per-message block
            diagnostic = _one_line(block.get("Diagnostic-Code", ""))
            status = _status_of(_one_line(block.get("Status", "")), diagnostic)
            verdict = dsn_verdict(_one_line(block.get("Action", "")), status)
            if not status and verdict == Verdict.SOFT:
                reply = _REPLY_CODE.search(diagnostic + " ")
                if reply and reply.group(1).startswith("5"):
                    verdict = Verdict.HARD
            recipients.append(
                Recipient(
                    address=_address_of_field(final),
                    verdict=verdict,
                    status=status,
                    reason=diagnostic or f"action {_one_line(block.get('Action', ''))}, status {status or 'none'}",
                )
            )
    if not recipients:
        return returned.report(Verdict.NOT_A_REPORT, "a delivery-status report naming no recipient")
    return returned.report(recipients[0].verdict, f"DSN: {recipients[0].reason}", tuple(recipients))


def _arf(message: Message, returned: _Returned) -> Report:
    feedback: Message | None = None
    for part in _parts(message):
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                feedback = payload[0]
            else:
                text = part.get_payload(decode=True) or b""
                feedback = HeaderParser().parsestr(text.decode("utf-8", "replace"))
            break
    if feedback is None:
        return returned.report(Verdict.NOT_A_REPORT, "a feedback report without its message/feedback-report part")
    feedback_type = _one_line(feedback.get("Feedback-Type", "")).lower()
    verdict = Verdict.COMPLAINT if feedback_type in _COMPLAINT_TYPES else Verdict.NO_BOUNCE
    recipient = _address_of_field(feedback.get("Original-Rcpt-To", "")) or returned.original_recipient
    mail_from = _address_of_field(feedback.get("Original-Mail-From", ""))  # the envelope sender: our VERP address
    agent = _one_line(feedback.get("User-Agent", ""), 100)
    reason = f"{feedback_type} report from {agent or 'a mailbox provider'}"
    return returned.report(
        verdict,
        f"ARF {feedback_type}",
        (Recipient(address=recipient, verdict=verdict, status=feedback_type, reason=reason),),
        also_addressed_to=(mail_from,) if mail_from else (),
    )

def _plain_text_bounce(text: str, returned: _Returned) -> Report | None:
    match = _ADDRESS_BEFORE_CODE.search(text)
    if match is None:
        return None
    address, code = match.group(1).lower(), match.group(2)
    after = text[match.start(2) : match.start(2) + 400]
    status = _status_of(after) or f"{code[0]}.0.0"
    verdict = dsn_verdict("failed", status)
    reason = _one_line(after.split("\n\n")[0], 300)
    return returned.report(verdict, f"plain-text bounce: {reason}", (Recipient(address=address, verdict=verdict, status=status, reason=reason),))
