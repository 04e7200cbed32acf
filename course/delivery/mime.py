"""Build the bytes of an email: headers and a multipart/alternative body (plain text + HTML).

Built by hand rather than through email.message.EmailMessage, whose serialisation costs about a
millisecond a message, more than the SMTP exchange itself. The output is checked against the
standard library's parser in the tests. Every header value passes through `_one_line`, so a CR or LF
in a name or subject can never start a header of its own."""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


def _one_line(value: str) -> str:
    # Most values are printable already (no line break is printable) and have no runs of spaces.
    if value.isprintable() and "  " not in value and value == value.strip():
        return value
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


# RFC 5322 2.1.1: a header line SHOULD be at most 78 characters and MUST be at most 998.
_MAX_HEADER_LINE = 78
_LONGEST_PLAIN_WORD = 900  # an ASCII word longer than this cannot be folded, only encoded


def _encoded_words(value: str, header_name: str) -> str:
    """ASCII stays as is; anything else becomes RFC 2047 UTF-8 encoded words. A value too long for
    one line is folded at its spaces, counting the "Name: " in front of it."""
    value = _one_line(value)
    if value.isascii() and len(header_name) + 2 + len(value) <= _MAX_HEADER_LINE:
        return value
    plain = value.isascii() and all(len(word) <= _LONGEST_PLAIN_WORD for word in value.split())
    return Header(value, "us-ascii" if plain else "utf-8", header_name=header_name).encode(
        splitchars=" ", maxlinelen=_MAX_HEADER_LINE, linesep="\r\n"
    )


# Remembered: a batch's From is the same for every message, and its To headers cost a miss each.
@lru_cache(maxsize=1024)
def format_address(name: str, address: str) -> str:
    address = _one_line(address)
    if not re.fullmatch(r"[^\s<>@]+@[^\s<>@]+", address):
        raise ValueError(f"not an address: {address!r}")
    return formataddr((_one_line(name), address), charset="utf-8")


def _date_header(date: datetime) -> str:
    """RFC 5322 Date, to the second (the header has no finer unit): messages sent within the
    same second share one formatting."""
    # The offset is part of the key: equal instants in two zones compare equal, and print apart.
    return _date_to_the_second(date.replace(microsecond=0), date.utcoffset())


@lru_cache(maxsize=8)
def _date_to_the_second(date: datetime, _offset: object) -> str:
    return format_datetime(date)


@dataclass(frozen=True)
class OutgoingMessage:
    sender_name: str
    sender_address: str
    recipient_name: str
    recipient_address: str
    subject: str
    text: str
    html: str
    message_id: str
    date: datetime
    list_id: str = ""
    unsubscribe_url: str = ""
    unsubscribe_mailto: str = ""
    extra_headers: Sequence[tuple[str, str]] = field(default_factory=tuple)


def _body_part(content_type: str, body: str) -> bytes:
    encoded = body.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")  # canonical CRLF
    # RFC 5321 4.5.3.1.6: a line is at most 998 characters before its CRLF.
    if encoded.isascii() and max(map(len, encoded.split(b"\r\n"))) <= 998:
        headers = f"Content-Type: {content_type}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        return headers.encode("ascii") + encoded
    headers = f"Content-Type: {content_type}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    base64 = binascii.b2a_base64(encoded, newline=False)  # lines of 76 characters (RFC 2045 6.8)
    return headers.encode("ascii") + b"\r\n".join([base64[i : i + 76] for i in range(0, len(base64), 76)])


def build_message(message: OutgoingMessage) -> bytes:
    boundary = "=_" + secrets.token_hex(12)
    headers = [
        ("From", format_address(message.sender_name, message.sender_address)),
        ("To", format_address(message.recipient_name, message.recipient_address)),
        ("Subject", _encoded_words(message.subject, "Subject")),
        ("Date", _date_header(message.date)),
        ("Message-ID", _one_line(message.message_id)),
        ("MIME-Version", "1.0"),
    ]
    if message.list_id:
        headers.append(("List-Id", _one_line(message.list_id)))
    if message.unsubscribe_url:
        targets = [f"<{_one_line(message.unsubscribe_url)}>"]
        if message.unsubscribe_mailto:
            targets.append(f"<mailto:{_one_line(message.unsubscribe_mailto)}>")
        headers.append(("List-Unsubscribe", ", ".join(targets)))
        # RFC 8058: the https URL accepts a POST with this body, no cookies, no confirmation page.
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.extend((_one_line(name), _encoded_words(value, _one_line(name))) for name, value in message.extra_headers)
    headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        (
            head,
            b"\r\n",
            delimiter,
            _body_part("text/plain", message.text),
            b"\r\n",
            delimiter,
            _body_part("text/html", message.html),
            b"\r\n",
            f"--{boundary}--\r\n".encode("ascii"),
        )
    )
