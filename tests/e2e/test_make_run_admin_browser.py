"""The README's admin flow on `make run`'s demo clock (issue #21, Proof): `course run --day-seconds
10` in a subprocess on its own var/ folder and free ports, then Debian's Chromium signs in at
/admin/ with the printed one-time password, waits 5 s between steps (about 14 course hours each),
replaces the password, composes a campaign, sends a test, schedules it and watches it go out. Each
step's visible outcome is asserted; screenshots go to the artefacts folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.devtools.mailsink import read_mailbox
from tests.support.browser import chromium, new_context, serious_axe_violations

pytestmark = pytest.mark.browser

STEP_PAUSE_MS = 5000  # the brief's "wait 5 s between steps": a session must outlive them
NEW_PASSWORD = "a phrase of my own choosing"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(pattern: str, log: Path, process: subprocess.Popen[bytes], timeout: float = 90) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(pattern, text)
        if found:
            return found
        if process.poll() is not None:
            pytest.fail(f"course run exited with {process.returncode}:\n{text}")
        time.sleep(0.2)
    pytest.fail(f"course run never printed {pattern!r}:\n{log.read_text(errors='replace')}")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """`make run` (`course run --day-seconds 10`) on this test's own var/ and ports; its output log."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COURSE_") and key != "REDIS_URL"}
    env.update(
        COURSE_VAR_DIR=str(tmp_path / "var"), COURSE_MAIL_DIR=str(tmp_path / "var" / "mail"), COURSE_SMTP_PORT=str(free_port())
    )
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "course.cli.main", "run", "--day-seconds", "10", "--port", str(free_port())],
            env={**env, "COLUMNS": "250"}, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield str(tmp_path / "var"), log, process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_readme_admin_flow_on_the_demo_clock(make_run: tuple[str, Path, subprocess.Popen[bytes]], artefacts: Path) -> None:
    from playwright.sync_api import expect

    var_dir, log, process = make_run
    admin = _wait_for(r"admin +(http://\S+)/admin/ +sign in as (\S+), one-time password (\S+)", log, process)
    base, email, one_time = admin[1], admin[2], admin[3]
    slug = _wait_for(r"enrolled in (\S+); watch", log, process)[1]
    violations: list[str] = []
    with chromium() as browser:
        context = new_context(browser, "desktop")
        page = context.new_page()

        def step(name: str) -> None:
            page.screenshot(path=str(artefacts / f"make-run-{name}.png"), full_page=True)
            violations.extend(serious_axe_violations(page, name))
            page.wait_for_timeout(STEP_PAUSE_MS)

        # 1. Sign in with the printed one-time password: it must be replaced first.
        page.goto(f"{base}/admin/")
        expect(page).to_have_url(re.compile(r"/admin/login"))
        page.fill("#email", email)
        page.fill("#password", one_time)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{base}/admin/account/password")
        expect(page.get_by_text("You signed in with a one-time password")).to_be_visible()
        step("1-replace-password")

        # 2. Replace it, 5 s (half a course day) after signing in.
        page.fill("#current_password", one_time)
        page.fill("#new_password", NEW_PASSWORD)
        page.fill("#repeat_password", NEW_PASSWORD)
        page.click("button:has-text('Save password')")
        expect(page).to_have_url(f"{base}/admin/account?changed=password")
        expect(page.get_by_role("status")).to_contain_text("Password saved")
        step("2-password-saved")

        # 3. Compose a campaign for the demo course's readers.
        page.goto(f"{base}/admin/campaigns/new")
        page.fill("#name", "Demo letter")
        page.fill("#subject", "News from the bakery")
        page.fill("#body_markdown", "# Hello\n\nNew loaves every **Friday**.")
        page.select_option("#course", slug)
        page.click("button[value=count]")
        expect(page).to_have_url(re.compile(r"/admin/campaigns/\d+/edit\?notice=saved&count=1$"))
        expect(page.locator(".notice-info")).to_contain_text("3 subscribers would get this campaign now")
        campaign_url = page.url.split("/edit")[0]
        step("3-composed")

        # 4. Send a test to the operator's own address: it lands in var/mail/, marked [Test].
        page.goto(f"{campaign_url}/preview")
        page.fill("#test_address", "me@example.net")
        page.click("button:has-text('Send test')")
        expect(page.get_by_role("status")).to_contain_text("A test is on its way to me@example.net")
        deadline = time.monotonic() + 30
        while not any("me@example.net" in str(m["To"]) for m in read_mailbox(Path(var_dir) / "mail")):
            assert time.monotonic() < deadline, "the test mail never reached var/mail/"
            time.sleep(0.5)
        test_mail = next(m for m in read_mailbox(Path(var_dir) / "mail") if "me@example.net" in str(m["To"]))
        assert str(test_mail["Subject"]).startswith("[Test]")
        step("4-test-sent")

        # 5. Schedule it now and watch it go out on the campaign page, without a reload.
        page.goto(campaign_url)
        page.check("input[name=mode][value=now]")
        page.click("button:has-text('Schedule…')")
        # The step before: what will happen, said in one sentence; nothing is scheduled yet.
        expect(page.locator("[data-confirm-summary]")).to_have_text("Send to 3 readers now.")
        page.screenshot(path=str(artefacts / "make-run-5-confirm.png"), full_page=True)
        violations.extend(serious_axe_violations(page, "5-confirm"))
        page.click(".confirm-panel button[type=submit]")
        expect(page.locator(".notice-ok")).to_contain_text("Scheduled for 3 recipients")
        expect(page.locator('[data-progress="sent"]')).to_have_text("3", timeout=45_000)
        expect(page.locator("[data-progress-status] .badge")).to_have_text("done", timeout=15_000)
        page.reload()  # for the actions of a finished campaign (the note says so)
        expect(page.locator("button:has-text('Pause')")).to_have_count(0)
        page.screenshot(path=str(artefacts / "make-run-6-sent.png"), full_page=True)
        violations.extend(serious_axe_violations(page, "6-sent"))
        context.close()
    assert violations == []
    sent = [m for m in read_mailbox(Path(var_dir) / "mail") if str(m["Subject"]) == "News from the bakery"]
    assert len(sent) == 3
