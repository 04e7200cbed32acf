"""The optional proof of work (ALTCHA v1, self-hosted): what a solution must be to pass, the form
and the API asking for one when the site turns it on, and Chromium solving it with site.js."""

from __future__ import annotations

import base64
import html
import json
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from course.models import SignupRequest
from course.settings import Settings
from course.web.app import create_app
from course.web.proof_of_work import CHALLENGE_LIFETIME, ProofOfWork, proof_of_work_from_settings, solve
from tests.support.web_fixtures import COURSE_SLUG, WebStack, csrf_token_of

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


# --- on the real app ---------------------------------------------------------------------------

COURSE_URL = f"/courses/{COURSE_SLUG}"
_ATTRIBUTE = re.compile(r'data-altcha-([a-z]+)="([^"]*)"')


def challenge_in(page: str) -> dict[str, object]:
    found = dict(_ATTRIBUTE.findall(page))
    return {"algorithm": found["algorithm"], "challenge": found["challenge"], "maxNumber": int(found["max"]),
            "salt": html.unescape(found["salt"]), "signature": found["signature"]}  # fmt: skip


def queued(stack: WebStack) -> int:
    with stack.sessions() as session:
        return session.scalar(select(func.count()).select_from(SignupRequest)) or 0


def test_off_by_default_on_the_app(client: TestClient) -> None:
    assert "data-altcha" not in client.get(COURSE_URL).text
    assert client.get("/api/proof-of-work").status_code == 404


def test_the_form_needs_a_fresh_solution_when_asked(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"signup_proof_of_work": 3000})
    with TestClient(create_app(settings), base_url="http://testserver") as browser:
        page = browser.get(COURSE_URL).text
        form = {"email": "pow@example.org", "timezone": "UTC", "csrf_token": csrf_token_of(page)}
        refused = browser.post(COURSE_URL, data=form)
        assert refused.status_code == 422 and "check did not come through" in refused.text
        assert queued(web_stack) == 0
        answer = solve(challenge_in(page))
        assert browser.post(COURSE_URL, data={**form, "altcha": answer}).status_code == 200
        assert queued(web_stack) == 1
        # One solution, one signup: the same answer again is refused.
        assert browser.post(COURSE_URL, data={**form, "altcha": answer}).status_code == 422
        assert queued(web_stack) == 1
        embed = browser.get(f"{COURSE_URL}/embed").text
        stranger = {"email": "pow2@example.org", "embedded": "1", "altcha": solve(challenge_in(embed))}
        assert browser.post(f"{COURSE_URL}/subscribe", data=stranger).status_code == 200
        assert queued(web_stack) == 2
        # The course pages are cached for everyone but, with a proof of work asked for, each
        # visitor's form carries a challenge of its own: a shared one could buy one signup only.
        salts = {challenge_in(browser.get(path).text)["salt"] for path in (COURSE_URL, COURSE_URL, f"{COURSE_URL}/embed")}
        assert len(salts) == 3


def test_the_api_hands_out_challenges_and_needs_a_solution(web_stack: WebStack) -> None:
    settings = web_stack.settings.model_copy(update={"signup_proof_of_work": 3000})
    with TestClient(create_app(settings), base_url="http://testserver") as api:
        body = {"course": COURSE_SLUG, "email": "api-pow@example.org"}
        refused = api.post("/api/subscriptions", json=body)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "altcha"]
        challenge = api.get("/api/proof-of-work").json()
        answer = solve(challenge)
        assert api.post("/api/subscriptions", json={**body, "altcha": answer}).status_code == 202
        assert api.post("/api/subscriptions", json={**body, "altcha": answer}).status_code == 422
    assert queued(web_stack) == 1


@pytest.mark.browser
def test_chromium_solves_the_challenge_and_signs_up(web_stack: WebStack, tmp_path: Path) -> None:
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"Debian's Chromium is not installed at {chromium}")
    from playwright.sync_api import expect, sync_playwright

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    settings = web_stack.settings.model_copy(update={"signup_proof_of_work": 50_000, "base_url": f"http://127.0.0.1:{port}"})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    errors: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(chromium),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.goto(f"{settings.base_url}{COURSE_URL}")
            page.fill("#signup-email", "chromium-pow@example.org")
            started = time.monotonic()
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Check your inbox", timeout=30_000)
            took = time.monotonic() - started
            page.screenshot(path=tmp_path / "pow-check-inbox.png")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
    print(f"\nChromium solved a {settings.signup_proof_of_work}-number proof of work and signed up in {took:.2f} s")
    assert errors == []
    assert queued(web_stack) == 1
