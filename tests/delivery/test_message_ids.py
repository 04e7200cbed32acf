"""Message-IDs (course/ledger.py): stable per delivery, opaque (no id, no order, no count in them),
and read back to their delivery by the bounce side without a search. Pure."""

from __future__ import annotations

from course.ledger import message_ids_from_secret

IDS = message_ids_from_secret("course.example.org", "secret-one")


def test_a_message_id_is_stable_opaque_and_read_back() -> None:
    first, second = IDS.for_delivery(41), IDS.for_delivery(42)
    assert first == IDS.for_delivery(41)  # a resend carries the same Message-ID
    assert first.endswith("@course.example.org>") and len(first.split("@")[0]) == 27  # "<" and 26 base32 characters
    assert "41" not in first and "42" not in second
    # Neighbouring ids share nothing that shows they are neighbours (no common prefix to speak of).
    tokens = [IDS.for_delivery(n).split("@")[0][1:] for n in range(1, 200)]
    assert len({token[:4] for token in tokens}) > 190
    assert sorted(tokens) != tokens
    assert [IDS.delivery_of(IDS.for_delivery(n)) for n in (1, 42, 2**40)] == [1, 42, 2**40]


def test_message_ids_of_others_name_no_delivery() -> None:
    other = message_ids_from_secret("course.example.org", "secret-two")
    assert other.for_delivery(42) != IDS.for_delivery(42)
    assert IDS.delivery_of(other.for_delivery(42)) is None  # another installation's key
    assert IDS.delivery_of(IDS.for_delivery(42).replace("course.example.org", "elsewhere.example")) is None
    for foreign in ("<delivery.42@course.example.org>", "<abc@course.example.org>", "", "no-brackets", "<" + "a" * 26 + "@course.example.org>"):
        assert IDS.delivery_of(foreign) is None, foreign


def test_the_block_encoding_is_base32() -> None:
    import base64
    import random

    from course.ledger import _base32_block

    rng = random.Random(5)
    for block in [bytes(16), b"\xff" * 16, *(rng.randbytes(16) for _ in range(20_000))]:
        assert _base32_block(block) == base64.b32encode(block).decode("ascii").rstrip("=").lower()
