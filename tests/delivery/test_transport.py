"""The SMTP transport against a real server, with and without PIPELINING advertised: the pipelined
path (MAIL, RCPT and DATA in one write) must classify every failure exactly like smtplib's
sendmail path, and leave the connection usable for the next message."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest

from course.delivery.transports.smtp import (
    ConnectionFailed,
    PermanentSendError,
    SMTPConfig,
    SMTPTransport,
    TransientSendError,
)
from tests.support.smtp_server import RecordingSMTPServer

MESSAGE = b"Subject: hi\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\r\nline one\r\n.starts with a dot\r\n"


@pytest.fixture(params=[True, False], ids=["pipelining", "plain"])
def server(request: pytest.FixtureRequest) -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer(pipelining=request.param) as running:
        yield running


@pytest.fixture
def transport(server: RecordingSMTPServer) -> Iterator[SMTPTransport]:
    sending = SMTPTransport(SMTPConfig(host=server.host, port=server.port, timeout=5))
    yield sending
    sending.close()


def test_the_server_advertises_what_the_test_says(server: RecordingSMTPServer) -> None:
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert client.has_extn("pipelining") == server.pipelining


def test_messages_arrive_intact_over_one_connection(server: RecordingSMTPServer, transport: SMTPTransport) -> None:
    for recipient in ("b@example.org", "c@example.org"):
        transport.send("a@example.org", recipient, MESSAGE)
    received = server.wait_for(2, timeout=5)
    assert [mail.envelope_to for mail in received] == [["b@example.org"], ["c@example.org"]]
    assert all(mail.data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n") for mail in received)  # dot-stuffing undone


@pytest.mark.parametrize(
    ("stage", "code", "error"),
    [("RCPT", 550, PermanentSendError), ("RCPT", 451, TransientSendError), ("DATA", 554, PermanentSendError), ("DATA", 452, TransientSendError)],
)
def test_refusals_are_classified_and_the_next_message_still_goes(
    server: RecordingSMTPServer, transport: SMTPTransport, stage: str, code: int, error: type[Exception]
) -> None:
    server.fail_next(code, "scripted refusal", at=stage)  # type: ignore[arg-type]
    with pytest.raises(error) as raised:
        transport.send("a@example.org", "b@example.org", MESSAGE)
    assert raised.value.code == code  # type: ignore[attr-defined]
    transport.send("a@example.org", "c@example.org", MESSAGE)
    assert [mail.envelope_to for mail in server.wait_for(1, timeout=5)] == [["c@example.org"]]


def test_a_server_that_went_away_is_a_connection_failure(server: RecordingSMTPServer, transport: SMTPTransport) -> None:
    transport.send("a@example.org", "b@example.org", MESSAGE)
    server.stop()
    with pytest.raises(ConnectionFailed) as raised:
        transport.send("a@example.org", "c@example.org", MESSAGE)
    assert f"{server.host}:" in str(raised.value)


@pytest.mark.parametrize(
    "recipient",
    ["b@example.org>\r\nRCPT TO:<evil@example.org", "b@example.org> NOTIFY=NEVER", "<b@example.org>", "b@exa\x00mple.org"],
    ids=["crlf", "parameter", "brackets", "nul"],
)
def test_unsafe_envelope_addresses_are_refused_before_anything_is_written(
    server: RecordingSMTPServer, transport: SMTPTransport, recipient: str
) -> None:
    with pytest.raises(PermanentSendError, match="line break, space, control character or angle bracket"):
        transport.send("a@example.org", recipient, MESSAGE)
    transport.send("a@example.org", "c@example.org", MESSAGE)
    assert [mail.envelope_to for mail in server.wait_for(1, timeout=5)] == [["c@example.org"]]
