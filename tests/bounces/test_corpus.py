"""The corpus of returned mail (tests/bounces/corpus/, written from the published formats of
Postfix, Exim, Gmail, Outlook/Exchange, Amazon SES and Yahoo) read by course.bounces.parse: each
sample gets the verdict expected.toml gives it, and names the original message."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from course.bounces.parse import Verdict, parse_report

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))
VERP = "bounce+42-abcdefghijklmnop@bounces.example.org"
RCPT = "reader@example.com"
MESSAGE_ID = "<delivery.42@course.example.org>"


def sample(name: str) -> bytes:
    text = (CORPUS / f"{name}.eml").read_text(encoding="utf-8")
    text = text.replace("{{VERP}}", VERP).replace("{{RCPT}}", RCPT).replace("{{MESSAGE_ID}}", MESSAGE_ID)
    return text.replace("\n", "\r\n").encode("utf-8")


def test_every_sample_has_an_expected_verdict() -> None:
    assert sorted(path.stem for path in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_gets_its_verdict(name: str) -> None:
    expected = EXPECTED[name]
    report = parse_report(sample(name))
    assert report.verdict == Verdict(expected["verdict"]), report.detail
    if "status" in expected:
        [recipient] = report.recipients
        assert recipient.status == expected["status"]
        assert recipient.verdict == report.verdict
        assert recipient.address == ("" if expected.get("recipient") is False else RCPT) or recipient.address.startswith("redacted")
        assert recipient.reason
    if report.verdict in (Verdict.HARD, Verdict.SOFT, Verdict.COMPLAINT):
        # What identifies the original: the VERP address it came back to, and its Message-ID.
        assert VERP in report.addressed_to
        assert report.original_message_id == MESSAGE_ID
    assert report.report_id.startswith("<") or report.report_id.startswith("sha256:")


def test_a_report_without_a_message_id_is_known_by_a_digest_of_its_bytes() -> None:
    raw = sample("postfix-user-unknown").replace(b"Message-Id: <20261207090211.5B2C1C0E13@mx.example.net>\r\n", b"")
    first, again = parse_report(raw), parse_report(raw)
    assert first.report_id.startswith("sha256:") and first.report_id == again.report_id
    assert first.verdict == Verdict.HARD


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff garbage", b"Subject: hi\r\n\r\nno report here", b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\n"],
)
def test_mail_that_is_no_report_is_said_to_be_none(raw: bytes) -> None:
    assert parse_report(raw).verdict == Verdict.NOT_A_REPORT
