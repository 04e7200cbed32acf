"""The optional proof of work (ALTCHA v1, self-hosted): what a solution must be to pass."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from course.settings import Settings
from course.web.proof_of_work import CHALLENGE_LIFETIME, ProofOfWork, proof_of_work_from_settings, solve

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def work() -> ProofOfWork:
    return ProofOfWork(key="k" * 64, max_number=2000)


def tamper(answer: str, **changes: object) -> str:
    payload = json.loads(base64.b64decode(answer))
    payload.update(changes)
    return base64.b64encode(json.dumps(payload).encode()).decode()


def test_a_solution_passes_until_the_challenge_expires(work: ProofOfWork) -> None:
    challenge = work.challenge(now=NOW)
    assert set(challenge) == {"algorithm", "challenge", "maxNumber", "salt", "signature"}
    answer = solve(challenge)
    assert work.verify(answer, now=NOW) == challenge["challenge"]
    assert work.verify(answer, now=NOW + CHALLENGE_LIFETIME - timedelta(seconds=1)) is not None
    assert work.verify(answer, now=NOW + CHALLENGE_LIFETIME + timedelta(seconds=1)) is None


def test_wrong_or_forged_answers_fail(work: ProofOfWork) -> None:
    challenge = work.challenge(now=NOW)
    answer = solve(challenge)
    number = json.loads(base64.b64decode(answer))["number"]
    assert work.verify(tamper(answer, number=number + 1), now=NOW) is None
    assert work.verify(tamper(answer, signature="0" * 64), now=NOW) is None
    assert work.verify(tamper(answer, algorithm="SHA-1"), now=NOW) is None
    assert work.verify(tamper(answer, number=-1), now=NOW) is None
    assert work.verify(tamper(answer, number="7"), now=NOW) is None
    # A salt with a later expiry changes the hash, so the signature no longer matches.
    later = str(challenge["salt"]).replace("expires=", "expires=9")
    assert work.verify(tamper(answer, salt=later), now=NOW) is None
    # Another site's key (or secret) made the challenge: worthless here.
    assert ProofOfWork(key="x" * 64, max_number=2000).verify(answer, now=NOW) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "!!!", "e30=", base64.b64encode(b"[1,2]").decode(), base64.b64encode(b"\xff\xfe").decode(), "A" * 5000,
     base64.b64encode(b'{"algorithm":"SHA-256","challenge":1,"number":1,"salt":null,"signature":2}').decode()],
)
def test_malformed_answers_fail_quietly(work: ProofOfWork, garbage: str) -> None:
    assert work.verify(garbage, now=NOW) is None


def test_off_by_default_and_keyed_by_the_secret() -> None:
    assert proof_of_work_from_settings(Settings()) is None
    first = proof_of_work_from_settings(Settings(signup_proof_of_work=1000, secret_key="a" * 40))
    second = proof_of_work_from_settings(Settings(signup_proof_of_work=1000, secret_key="b" * 40))
    assert first is not None and second is not None and first.key != second.key
    assert first.key != "a" * 40, "a key derived for this purpose, not the secret itself"
