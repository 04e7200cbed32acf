"""The demo's SMTP sink (course.mailsink) and the scripted test SMTP server (tests/smtp_server.py),
both driven with the standard library's smtplib, as the real sender would."""

from __future__ import annotations

import errno
import re
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.devtools import mailsink
from course.devtools.mailsink import MailSink, MailSinkError, read_mailbox, sanitise_for_file_name
from tests.support.smtp_server import RecordingSMTPServer

EML_NAME = re.compile(r"^(?P<utc>\d{8}T\d{6})-(?P<counter>\d{6})-(?P<recipient>[A-Za-z0-9._@+-]+)\.eml$")


def raw_message(subject: str, body: str = "Hello.\r\n", to: str = "reader@example.com") -> bytes:
    return (
        f"From: Course <course@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}"
    ).encode()


def send(host: str, port: int, sender: str, recipients: list[str], message: bytes) -> dict:
    with smtplib.SMTP(host, port, timeout=10) as client:
        return client.sendmail(sender, recipients, message)


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def sink(mail_dir: Path) -> Iterator[MailSink]:
    with MailSink(mail_dir, port=0) as running_sink:
        yield running_sink


def eml_files(mail_dir: Path) -> list[Path]:
    return sorted(mail_dir.glob("*.eml"))


def index_rows(mail_dir: Path) -> list[list[str]]:
    return [line.split("\t") for line in (mail_dir / "index.tsv").read_text(encoding="utf-8").splitlines()]


# --- MailSink -----------------------------------------------------------------------------------


def test_sink_stores_the_raw_bytes_and_read_mailbox_parses_them(sink: MailSink, mail_dir: Path) -> None:
    # A leading dot (dot-stuffed on the wire) and 8-bit UTF-8 must come back exactly as sent.
    sent = raw_message("Lesson 1: Ünïcode", body="Line one\r\n.leading dot\r\nCafé ☕\r\n")
    send(sink.host, sink.port, "course@example.com", ["reader@example.com", "second@example.com"], sent)

    [stored] = eml_files(mail_dir)
    # As a delivering server does (RFC 5321 4.4), the envelope sender is recorded on top.
    assert stored.read_bytes() == b"Return-Path: <course@example.com>\r\n" + sent
    match = EML_NAME.match(stored.name)
    assert match, stored.name
    assert match["counter"] == "000001"
    assert match["recipient"] == "reader@example.com"

    [message] = read_mailbox(mail_dir)
    assert message["Subject"] == "Lesson 1: Ünïcode"
    assert message["Return-Path"] == "<course@example.com>"
    # The stored file keeps SMTP's CRLF line ends; the parser hands them back as they are.
    assert message.get_content() == "Line one\r\n.leading dot\r\nCafé ☕\r\n"


def test_sink_appends_one_index_line_per_message(sink: MailSink, mail_dir: Path) -> None:
    encoded_subject = "=?utf-8?q?Le=C3=A7on_2?="  # RFC 2047: the index shows it decoded
    send(
        sink.host,
        sink.port,
        "bounces@example.com",
        ["a@example.com", "b@example.com"],
        raw_message(encoded_subject),
    )
    send(sink.host, sink.port, "bounces@example.com", ["c@example.com"], raw_message("Tab\there"))

    header, first, second = index_rows(mail_dir)
    assert header == ["received_at", "envelope_from", "recipients", "subject", "file"]
    assert first[1:4] == ["bounces@example.com", "a@example.com,b@example.com", "Leçon 2"]
    assert second[1:4] == ["bounces@example.com", "c@example.com", "Tab here"]
    assert [first[4], second[4]] == [path.name for path in eml_files(mail_dir)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", first[0])


def test_concurrent_senders_get_unique_complete_files(sink: MailSink, mail_dir: Path) -> None:
    thread_count, messages_per_thread = 8, 5
    failures: list[BaseException] = []

    def send_batch(thread_number: int) -> None:
        try:
            with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
                for message_number in range(messages_per_thread):
                    subject = f"thread {thread_number} message {message_number}"
                    client.sendmail(
                        "course@example.com", [f"t{thread_number}@example.com"], raw_message(subject)
                    )
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=send_batch, args=(number,)) for number in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures

    expected_total = thread_count * messages_per_thread
    names = [path.name for path in eml_files(mail_dir)]
    assert len(names) == len(set(names)) == expected_total
    counters = sorted(int(EML_NAME.match(name)["counter"]) for name in names)  # type: ignore[index]
    assert counters == list(range(1, expected_total + 1))
    assert not [path for path in mail_dir.iterdir() if path.name.endswith(".part")]  # no temp leftovers
    assert len(index_rows(mail_dir)) == 1 + expected_total
    subjects = {message["Subject"] for message in read_mailbox(mail_dir)}
    assert subjects == {
        f"thread {t} message {m}" for t in range(thread_count) for m in range(messages_per_thread)
    }


def test_a_restarted_sink_continues_the_counter(mail_dir: Path) -> None:
    for _ in range(2):
        with MailSink(mail_dir, port=0) as sink:
            send(sink.host, sink.port, "course@example.com", ["reader@example.com"], raw_message("hi"))
    counters = [EML_NAME.match(path.name)["counter"] for path in eml_files(mail_dir)]  # type: ignore[index]
    assert counters == ["000001", "000002"]
    assert len(index_rows(mail_dir)) == 3  # one header, not one per start


def test_a_message_that_cannot_be_stored_gets_a_transient_reply(sink: MailSink, mail_dir: Path) -> None:
    # 451, not 250 (the message would be lost) nor 5xx (the sender would give up on it).
    (mail_dir / "index.tsv").unlink(missing_ok=True)
    mail_dir.rmdir()
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(sink.host, sink.port, "course@example.com", ["reader@example.com"], raw_message("lost?"))
    assert refused.value.smtp_code == 451


def test_taken_port_is_a_clear_error_naming_host_and_port(mail_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken_port = squatter.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(MailSinkError) as error:
            MailSink(mail_dir, port=taken_port).start()
    assert error.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{taken_port}" in str(error.value)
    assert "taken" in str(error.value)
    assert time.monotonic() - started < 2, "the trial bind should answer at once"


def test_port_taken_after_the_trial_bind_is_still_a_clear_error(
    mail_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race the trial bind cannot close: aiosmtpd's own bind fails, after its ready timeout.
    monkeypatch.setattr(mailsink, "_raise_if_port_taken", lambda host, port: None)
    monkeypatch.setattr(mailsink, "READY_TIMEOUT_SECONDS", 0.5)
    monkeypatch.delenv("AIOSMTPD_CONTROLLER_TIMEOUT", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken_port = squatter.getsockname()[1]
        sink = MailSink(mail_dir, port=taken_port)
        with pytest.raises(MailSinkError, match=f"127.0.0.1:{taken_port}"):
            sink.start()
    assert not sink.is_running


def test_read_mailbox_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert read_mailbox(tmp_path / "never-created") == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("reader@example.com", "reader@example.com"),
        ("first.last+tag@example.com", "first.last+tag@example.com"),
        ("../../etc/passwd", "etc_passwd"),
        ("ünï@exämple.com", "n_@ex_mple.com"),
        ("", "unknown"),
        ("a" * 200 + "@example.com", "a" * 64),
    ],
)
def test_recipient_in_file_name_is_sanitised(address: str, expected: str) -> None:
    assert sanitise_for_file_name(address) == expected


# --- RecordingSMTPServer ------------------------------------------------------------------------


# `smtp_server` is the conftest fixture: a started RecordingSMTPServer.


def test_recording_server_records_what_it_accepts(smtp_server: RecordingSMTPServer) -> None:
    assert smtp_server.host == "127.0.0.1"
    assert smtp_server.port > 0
    sent = raw_message("Recorded")
    send(smtp_server.host, smtp_server.port, "course@example.com", ["a@example.com", "b@example.com"], sent)

    [mail] = smtp_server.wait_for(1, timeout=5)
    assert mail.envelope_from == "course@example.com"
    assert mail.envelope_to == ["a@example.com", "b@example.com"]
    assert mail.data == sent
    assert mail.message["Subject"] == "Recorded"
    assert mail.received_at.tzinfo is not None


def test_fail_next_refuses_data_for_the_next_messages_only(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.fail_next(451, "4.3.2 Try again later", times=2)
    for attempt in range(2):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(
                smtp_server.host,
                smtp_server.port,
                "c@example.com",
                ["r@example.com"],
                raw_message(f"try {attempt}"),
            )
        assert refused.value.smtp_code == 451
        assert b"Try again later" in refused.value.smtp_error
    send(smtp_server.host, smtp_server.port, "c@example.com", ["r@example.com"], raw_message("third time"))

    assert [mail.message["Subject"] for mail in smtp_server.wait_for(1, timeout=5)] == ["third time"]


def test_fail_next_at_rcpt_refuses_every_recipient_of_one_message(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.fail_next(550, "5.7.1 Relaying denied", at="RCPT")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(
            smtp_server.host,
            smtp_server.port,
            "c@example.com",
            ["a@example.com", "b@example.com"],
            raw_message("x"),
        )
    assert {address: code for address, (code, _) in refused.value.recipients.items()} == {
        "a@example.com": 550,
        "b@example.com": 550,
    }
    # Same connection pattern again: the script is used up, the message goes through.
    send(
        smtp_server.host,
        smtp_server.port,
        "c@example.com",
        ["a@example.com", "b@example.com"],
        raw_message("y"),
    )
    assert smtp_server.wait_for(1, timeout=5)[0].envelope_to == ["a@example.com", "b@example.com"]


def test_reject_recipient_by_pattern(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.reject_recipient("bounce-*@example.com", 550, "5.1.1 No such user")
    smtp_server.reject_recipient("full@example.com", 452, "4.2.2 Mailbox full")

    # Some recipients refused: smtplib sends to the rest and reports the refused ones.
    refused_recipients = send(
        smtp_server.host,
        smtp_server.port,
        "c@example.com",
        ["ok@example.com", "Bounce-7@Example.com", "full@example.com"],
        raw_message("mixed"),
    )
    assert {address: code for address, (code, _) in refused_recipients.items()} == {
        "Bounce-7@Example.com": 550,
        "full@example.com": 452,
    }
    assert smtp_server.wait_for(1, timeout=5)[0].envelope_to == ["ok@example.com"]

    # Every recipient refused: SMTPRecipientsRefused with the scripted code.
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_server.host, smtp_server.port, "c@example.com", ["bounce-1@example.com"], raw_message("x"))
    assert refused.value.recipients["bounce-1@example.com"] == (550, b"5.1.1 No such user")


def test_wait_for_names_what_arrived_when_it_times_out(smtp_server: RecordingSMTPServer) -> None:
    smtp_server.fail_next(554, "5.6.0 Rejected")
    with pytest.raises(smtplib.SMTPDataError):
        send(
            smtp_server.host, smtp_server.port, "c@example.com", ["r@example.com"], raw_message("refused one")
        )
    send(smtp_server.host, smtp_server.port, "c@example.com", ["r@example.com"], raw_message("only one"))

    with pytest.raises(AssertionError) as error:
        smtp_server.wait_for(2, timeout=0.2)
    assert "expected at least 2 messages" in str(error.value)
    assert "'only one'" in str(error.value)
    assert "554 5.6.0 Rejected" in str(error.value)


def test_clear_forgets_messages_and_scripts(smtp_server: RecordingSMTPServer) -> None:
    send(smtp_server.host, smtp_server.port, "c@example.com", ["r@example.com"], raw_message("before"))
    smtp_server.wait_for(1, timeout=5)
    smtp_server.fail_next(451, "4.3.2 later")
    smtp_server.reject_recipient("*", 550, "5.1.1 nobody")
    smtp_server.clear()

    assert smtp_server.received == []
    send(smtp_server.host, smtp_server.port, "c@example.com", ["r@example.com"], raw_message("after"))
    assert [mail.message["Subject"] for mail in smtp_server.wait_for(1, timeout=5)] == ["after"]


def test_scripted_codes_must_be_failures(smtp_server: RecordingSMTPServer) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_server.fail_next(250, "OK")
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_server.reject_recipient("*", 354, "go ahead")


def test_port_is_unknown_before_start() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = RecordingSMTPServer().port


def test_sink_records_a_verp_envelope_sender_and_the_null_sender_as_return_path(sink: MailSink, mail_dir: Path) -> None:
    send(sink.host, sink.port, "bounce+12-abcdefghijklmnop@bounces.example.org", ["reader@example.com"], raw_message("VERP"))
    send(sink.host, sink.port, "", ["reader@example.com"], raw_message("A bounce"))
    first, second = read_mailbox(mail_dir)
    assert first["Return-Path"] == "<bounce+12-abcdefghijklmnop@bounces.example.org>"
    assert second["Return-Path"] == "<>"
    assert len(first.get_all("Return-Path")) == 1
