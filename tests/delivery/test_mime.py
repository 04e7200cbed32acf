"""The hand-built MIME bytes, read back with the standard library's parser: headers cannot be
injected, encodings round-trip, lines stay within RFC 5322 limits, and the one-click unsubscribe
headers are exactly what mailbox providers look for."""

from __future__ import annotations

import email.policy
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import pytest

from course.clock import ManualClock
from course.delivery.mime import OutgoingMessage, build_message, format_address

EXPECTED_HEADERS = {
    "from", "to", "subject", "date", "message-id", "mime-version", "list-id",
    "list-unsubscribe", "list-unsubscribe-post", "content-type",
}  # fmt: skip


def build(now: datetime, **overrides: Any) -> bytes:
    values: dict[str, Any] = {
        "sender_name": "The Sourdough Letter",
        "sender_address": "lessons@example.com",
        "recipient_name": "Ann",
        "recipient_address": "ann@example.org",
        "subject": "Lesson 1 of 6: Your First Starter",
        "text": "Hi Ann,\n\nFeed the starter.\n",
        "html": "<p>Hi Ann,</p>\n<p>Feed the starter.</p>\n",
        "message_id": "<delivery.1@course.localhost>",
        "date": now,
        "list_id": "Sourdough <sourdough.course.localhost>",
        "unsubscribe_url": "https://courses.example.org/u/abc.def",
        "unsubscribe_mailto": "unsubscribe@example.org",
    }
    values.update(overrides)
    return build_message(OutgoingMessage(**values))


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def header_block(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii")


def test_parses_cleanly_with_every_header(clock: ManualClock) -> None:
    raw = build(clock.now())
    message = parse(raw)
    assert message.defects == []
    assert {name.lower() for name in message.keys()} == EXPECTED_HEADERS
    assert parseaddr(message["from"]) == ("The Sourdough Letter", "lessons@example.com")
    assert parseaddr(message["to"]) == ("Ann", "ann@example.org")
    assert message["subject"] == "Lesson 1 of 6: Your First Starter"
    assert message["message-id"] == "<delivery.1@course.localhost>"
    assert parsedate_to_datetime(message["date"]) == clock.now()
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(part.defects == [] for part in message.iter_parts())
    # Canonical line endings throughout: no bare LF or CR.
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")


INJECTIONS = ["\r\nBcc: evil@attacker.example", "\nBcc: evil@attacker.example", "\rBcc: evil@attacker.example",
              "\u2028Bcc: evil@attacker.example", "\r\n\r\nBcc: evil@attacker.example", "\x85Bcc: evil@attacker.example",
              "\r\n Bcc: evil@attacker.example"]  # fmt: skip


@pytest.mark.parametrize("injection", INJECTIONS, ids=repr)
@pytest.mark.parametrize("field", ["sender_name", "recipient_name", "subject", "list_id", "unsubscribe_url", "message_id"])
def test_line_breaks_never_start_a_header(clock: ManualClock, field: str, injection: str) -> None:
    value = {"sender_name": "Zoë", "recipient_name": "Ann", "subject": "Grüße", "list_id": "List <l.example>",
             "unsubscribe_url": "https://x.example/u/1", "message_id": "<d.1@x>"}[field]  # fmt: skip
    for candidate in (value, value.encode("ascii", "ignore").decode() or "x"):  # non-ASCII and ASCII paths
        raw = build(clock.now(), **{field: candidate + injection})
        message = parse(raw)
        assert {name.lower() for name in message.keys()} == EXPECTED_HEADERS
        assert message["bcc"] is None
        lines = header_block(raw).split("\r\n")
        assert not any(line.lower().startswith("bcc:") for line in lines), lines
        assert all(line[:1] in (" ", "\t") or ":" in line for line in lines)
        # The body still starts where it should: the first part is the plain text.
        assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "Hi Ann,\n\nFeed the starter.\n"


@pytest.mark.parametrize("subject", ["Lektion 1 von 6: Grüße aus Köln – ✓", "日本語のレッスン", "Ünïcödé\u2028twice"])
def test_utf8_subject_round_trips(clock: ManualClock, subject: str) -> None:
    raw = build(clock.now(), subject=subject)
    assert raw.isascii()
    assert parse(raw)["subject"] == subject.replace("\u2028", " ")


@pytest.mark.parametrize(
    "subject",
    [
        " ".join(f"word{n}" for n in range(90)),  # long ASCII
        " ".join(f"wörd{n}" for n in range(90)),  # long non-ASCII
        "Lesson 3 of 9: " + "a" * 1200,  # one token longer than the hard limit
    ],
    ids=["ascii", "utf8", "one-long-token"],
)
def test_long_subject_folds_within_line_limits(clock: ManualClock, subject: str) -> None:
    raw = build(clock.now(), subject=subject)
    head = header_block(raw).split("\r\n")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    subject_lines = [head.index(next(line for line in head if line.startswith("Subject:")))]
    while head[subject_lines[-1] + 1].startswith((" ", "\t")):
        subject_lines.append(subject_lines[-1] + 1)
    assert len(subject_lines) > 1, "a long subject must be folded"
    assert all(len(head[i]) <= 78 for i in subject_lines), [len(head[i]) for i in subject_lines]
    assert parse(raw)["subject"] == subject


def test_one_click_unsubscribe_headers(clock: ManualClock) -> None:
    message = parse(build(clock.now()))
    targets = [part.strip() for part in message["list-unsubscribe"].split(",")]
    assert targets == ["<https://courses.example.org/u/abc.def>", "<mailto:unsubscribe@example.org>"]
    assert message["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"
    assert message["list-id"] == "Sourdough <sourdough.course.localhost>"
    without_mailto = parse(build(clock.now(), unsubscribe_mailto=""))
    assert without_mailto["list-unsubscribe"] == "<https://courses.example.org/u/abc.def>"
    no_list = parse(build(clock.now(), unsubscribe_url="", list_id=""))
    assert no_list["list-unsubscribe"] is None and no_list["list-unsubscribe-post"] is None and no_list["list-id"] is None


@pytest.mark.parametrize(
    ("text", "html", "encoding"),
    [
        ("Hi Ann,\n\nFeed the starter.\n", "<p>Feed the starter.</p>", "7bit"),
        ("Grüße, Zoë!\nLine two — ✓\n", "<p>Grüße, 日本</p>\n", "base64"),
        ("x" * 1500 + "\nshort\n", "<p>" + "y" * 1200 + "</p>", "base64"),  # ASCII, but a line over 998
        ("windows\r\nline\r\nendings", "<p>a</p>\r\n", "7bit"),
    ],
    ids=["ascii", "non-ascii", "long-line", "crlf-input"],
)
def test_body_parts_decode_to_the_input(clock: ManualClock, text: str, html: str, encoding: str) -> None:
    message = parse(build(clock.now(), text=text, html=html))
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert plain["content-transfer-encoding"] == encoding
    assert plain.get_content_charset() == "utf-8" and rich.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert rich.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n")


def test_non_ascii_display_names_are_encoded_and_round_trip(clock: ManualClock) -> None:
    message = parse(build(clock.now(), sender_name="Bäckerei Müller", recipient_name='Zoë "Z" O\'Neil'))
    assert message["from"].addresses[0].display_name == "Bäckerei Müller"
    assert message["to"].addresses[0].display_name == 'Zoë "Z" O\'Neil'
    assert message["to"].addresses[0].addr_spec == "ann@example.org"


@pytest.mark.parametrize("address", ["not-an-address", "ann@example.org\r\nBcc: evil@x.example", "a <b@c>", "@example.org"])
def test_format_address_refuses_what_is_not_one_address(address: str) -> None:
    with pytest.raises(ValueError, match="not an address"):
        format_address("Ann", address)


def test_date_header_is_each_messages_own_second_and_zone() -> None:
    # Formatted once per second and remembered: the same instant in another zone, or the next
    # second, must still print as itself.
    from datetime import timedelta, timezone

    utc = datetime(2026, 11, 26, 8, 40, 1, 999_999, tzinfo=timezone.utc)
    berlin = utc.astimezone(timezone(timedelta(hours=1)))
    dates = [utc, berlin, utc + timedelta(microseconds=1), utc.replace(microsecond=5)]
    printed = [parse(build(date))["Date"] for date in dates]
    assert printed == [
        "Thu, 26 Nov 2026 08:40:01 +0000",
        "Thu, 26 Nov 2026 09:40:01 +0100",
        "Thu, 26 Nov 2026 08:40:02 +0000",
        "Thu, 26 Nov 2026 08:40:01 +0000",
    ]
    assert [parsedate_to_datetime(p) for p in printed] == [d.replace(microsecond=0) for d in dates]
