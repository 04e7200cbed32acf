"""Signed links: the fast dumping path makes exactly the tokens itsdangerous makes, every purpose
reads only its own tokens, and tampering is caught."""

from __future__ import annotations

import pytest
from itsdangerous import URLSafeTimedSerializer

from course.delivery.links import PATHS, InvalidLink, LinkPurpose, Signer

SECRET = "a-test-secret-that-is-long-enough"
PAYLOADS = [[1], [123456789, 42], [7, None], [2**53, 0], [99] * 40]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: str(len(p)))
@pytest.mark.parametrize("purpose", list(LinkPurpose))
def test_tokens_load_with_the_stock_serializer(purpose: LinkPurpose, payload: list[object]) -> None:
    token = Signer(SECRET, "https://c.example").token(purpose, *payload)
    stock = URLSafeTimedSerializer(SECRET, salt=f"course.{purpose}")
    assert stock.loads(token, max_age=60) == payload
    assert not token.startswith(".")  # never the compressed form: a few ids never get shorter


def test_tokens_are_the_stock_serializers_for_incompressible_payloads() -> None:
    stock = URLSafeTimedSerializer(SECRET, salt="course.view")
    signer = Signer(SECRET, "https://c.example")
    for _ in range(3):  # the two tokens carry a timestamp: retry if a second boundary fell between
        ours, theirs = signer.token(LinkPurpose.VIEW, 12345, None), stock.dumps([12345, None])
        if ours == theirs:
            return
    pytest.fail(f"{ours} != {theirs}")


def test_urls_round_trip_and_stay_with_their_purpose() -> None:
    signer = Signer(SECRET, "https://c.example/")
    url = signer.url(LinkPurpose.UNSUBSCRIBE, 5, 9)
    prefix = "https://c.example" + PATHS[LinkPurpose.UNSUBSCRIBE]
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    assert signer.read(LinkPurpose.UNSUBSCRIBE, token) == [5, 9]
    with pytest.raises(InvalidLink):
        signer.read(LinkPurpose.PREFERENCES, token)
    with pytest.raises(InvalidLink):
        Signer("another-secret", "https://c.example").read(LinkPurpose.UNSUBSCRIBE, token)
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidLink):
        signer.read(LinkPurpose.UNSUBSCRIBE, tampered)
