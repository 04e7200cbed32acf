"""Optional proof of work on the public signup form, ALTCHA-style and self-hosted: no third-party
call, no cookie, nothing for the reader to click. Off unless COURSE_SIGNUP_PROOF_OF_WORK is set.

1. Each form carries a challenge: a random salt (with its expiry in it), the SHA-256 of the salt
   and a secret random number below `max_number`, and our HMAC of that hash (the `altcha` library,
   protocol v1, so the official widget or any ALTCHA solver can answer it too).
2. The browser (static/site.js) tries numbers until the hash matches (about max_number / 2
   SHA-256s, a second or two for a person once, a real cost for a bot sending thousands) and
   submits the answer in the `altcha` field.
3. The server checks the HMAC, the hash and the expiry by the project's clock; the signup handler
   then spends the challenge (once only: web/public/signups records it), so one solution buys one
   signup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from altcha import PayloadV1, create_challenge_v1, verify_solution_v1

from course.settings import Settings

FIELD = "altcha"
CHALLENGE_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True)
class ProofOfWork:
    key: str  # HMAC key, derived from the settings' secret
    max_number: int  # work per signup: about max_number / 2 hashes on average

    def challenge(self, *, now: datetime) -> dict[str, object]:
        """A new challenge as the ALTCHA widget reads it (algorithm, challenge, maxNumber, salt, signature)."""
        created = create_challenge_v1(hmac_key=self.key, max_number=self.max_number, expires=now + CHALLENGE_LIFETIME)
        return created.to_dict()

    def verify(self, answer: str, *, now: datetime) -> str | None:
        """The challenge id (to spend it once) when `answer` solves one of our challenges that has
        not expired; None for anything else, malformed input included."""
        if not answer or len(answer) > 2000:
            return None
        try:
            payload = PayloadV1.from_base64(answer)
            if payload.algorithm != "SHA-256" or not isinstance(payload.number, int) or not 0 <= payload.number <= self.max_number:
                return None
            _, expires, _ = payload.parse_salt()
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if expires is None or expires < now.timestamp():
            return None
        ok, _ = verify_solution_v1(payload, self.key, check_expires=False)
        if not ok or not hmac.compare_digest(_signature(self.key, payload.challenge), str(payload.signature)):
            return None
        return str(payload.challenge)


def _signature(key: str, challenge: str) -> str:
    return hmac.new(key.encode(), challenge.encode(), hashlib.sha256).hexdigest()


def proof_of_work_from_settings(settings: Settings) -> ProofOfWork | None:
    if settings.signup_proof_of_work <= 0:
        return None
    key = hmac.new(settings.secret_key.encode(), b"course.altcha", hashlib.sha256).hexdigest()
    return ProofOfWork(key=key, max_number=settings.signup_proof_of_work)


def solve(challenge: dict[str, object]) -> str:
    """The answer a browser would send (for tests and scripted clients): brute force, as site.js does."""
    salt, target = str(challenge["salt"]), str(challenge["challenge"])
    for number in range(int(challenge["maxNumber"]) + 1):  # type: ignore[call-overload]
        if hashlib.sha256(f"{salt}{number}".encode()).hexdigest() == target:
            answer = {key: challenge[key] for key in ("algorithm", "challenge", "salt", "signature")}
            return base64.b64encode(json.dumps({**answer, "number": number}).encode()).decode()
    raise ValueError("challenge has no solution below maxNumber")
