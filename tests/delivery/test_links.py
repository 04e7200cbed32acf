"""Signed links: the fast dumping path makes exactly the tokens itsdangerous makes, every purpose
reads only its own tokens, tampering is caught, only the canonical spelling of a token verifies,
and tokens age by the project's clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from itsdangerous import URLSafeTimedSerializer

from course.clock import ManualClock
from course.delivery.links import PATHS, InvalidLink, LinkPurpose, Signer, is_canonical

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


@pytest.mark.parametrize("stamp", [0, 1, 255, 256, 65536, 1_700_000_000, 2**40])
def test_the_fast_dumps_makes_the_stock_dumps_tokens(stamp: int) -> None:
    # _LinkSerializer.dumps builds the token in C calls; itsdangerous's own Serializer.dumps over the
    # same serializer (its payload, signer and clock) must spell every token the same.
    signer = Signer("ünïcode-" + SECRET, "https://c.example", now=lambda: float(stamp))
    for purpose in LinkPurpose:
        serializer = signer._serializers[purpose]
        for payload in [*PAYLOADS, [3, "é ü/+=", 7], ["x" * 50], [-1, 0.5, True, {"a": [1]}]]:
            assert serializer.dumps(payload) == URLSafeTimedSerializer.dumps(serializer, payload), (purpose, payload)


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


# --- the clock, canonical tokens ------------------------------------------------------------------


def manual_signer(clock: ManualClock, **max_ages: int) -> Signer:
    return Signer(
        SECRET,
        "https://c.example",
        now=lambda: clock.now().timestamp(),
        max_ages={LinkPurpose(purpose): seconds for purpose, seconds in max_ages.items()},
    )


def test_tokens_age_by_the_projects_clock() -> None:
    clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))  # months from the wall clock
    signer = manual_signer(clock, preferences=90 * 86400, confirm=7 * 86400)
    preferences, confirm, unsubscribe = (
        signer.token(LinkPurpose.PREFERENCES, 1),
        signer.token(LinkPurpose.CONFIRM, 1, 2),
        signer.token(LinkPurpose.UNSUBSCRIBE, 1),
    )
    clock.advance(timedelta(days=7))
    assert signer.read(LinkPurpose.CONFIRM, confirm) == [1, 2]
    clock.advance(timedelta(seconds=1))
    with pytest.raises(InvalidLink) as expired:
        signer.read(LinkPurpose.CONFIRM, confirm)
    assert expired.value.expired
    clock.set(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc) + timedelta(days=90))
    assert signer.read(LinkPurpose.PREFERENCES, preferences) == [1]
    clock.advance(timedelta(seconds=1))
    with pytest.raises(InvalidLink, match="expired"):
        signer.read(LinkPurpose.PREFERENCES, preferences)
    # A mail sent now carries a fresh one; unsubscribe links never expire.
    assert signer.read(LinkPurpose.PREFERENCES, signer.token(LinkPurpose.PREFERENCES, 1)) == [1]
    clock.advance(timedelta(days=3650))
    assert signer.read(LinkPurpose.UNSUBSCRIBE, unsubscribe) == [1]
    # An explicit max age still wins over the purpose's.
    with pytest.raises(InvalidLink, match="expired"):
        signer.read(LinkPurpose.UNSUBSCRIBE, unsubscribe, max_age_seconds=86400)


def spellings_of(token: str) -> list[str]:
    """Other spellings of a token that base64 decoding (which skips stray characters and ignores
    the spare low bits of a last character) reads as the same bytes."""
    others = [token + suffix for suffix in ("!", "=", "==", "~", "%", " ", "\n", "*", "$", ".", "'", "\x00")]
    others += ["." + token, " " + token, token.replace(".", "..", 1), token[:5] + "=" + token[5:]]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = token[-1]
    # The signature is 20 bytes: 27 characters whose last carries 2 spare bits.
    for spare in range(1, 4):
        variant = alphabet[alphabet.index(last) ^ spare]
        others.append(token[:-1] + variant)
    return others


@pytest.mark.parametrize("purpose", list(LinkPurpose))
def test_only_the_canonical_spelling_of_a_token_verifies(purpose: LinkPurpose) -> None:
    signer = Signer(SECRET, "https://c.example")
    token = signer.token(purpose, 123, 456)
    assert is_canonical(token)
    stock = URLSafeTimedSerializer(SECRET, salt=f"course.{purpose}")
    assert stock.loads(token + "=") == [123, 456], "the finding: itsdangerous alone accepts a trailing character"
    for other in spellings_of(token):
        assert not is_canonical(other), repr(other)
        with pytest.raises(InvalidLink):
            signer.read(purpose, other)
    assert signer.read(purpose, token) == [123, 456]
