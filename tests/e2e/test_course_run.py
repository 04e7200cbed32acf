"""The README's main command, as a new user runs it: `course run` on the embedded default (SQLite,
the embedded broker, the local mail sink), in a subprocess with its own var/ folder. It must deliver
the whole demo course to the three demo subscribers and leave the mail readable under var/mail/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from course.cli.local_stack import DEMO_PEOPLE
from course.devtools.mailsink import read_mailbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_course_run_delivers_the_demo_course_into_the_mail_folder(tmp_path: Path) -> None:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("COURSE_") and key != "REDIS_URL"
    }
    env.update(
        COURSE_VAR_DIR=str(tmp_path / "var"),
        COURSE_MAIL_DIR=str(tmp_path / "var" / "mail"),
        COURSE_SMTP_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "course.cli.main", "run", "--day-seconds", "2", "--until-done", "--timeout", "180",
         "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded+sqlite" in result.stdout  # no REDIS_URL: the embedded broker
    mails = read_mailbox(tmp_path / "var" / "mail")
    by_person: dict[str, list[str]] = defaultdict(list)
    for message in mails:
        by_person[str(message["To"].addresses[0].addr_spec)].append(str(message["Subject"]))
    assert sorted(by_person) == sorted(address for address, _, _ in DEMO_PEOPLE)
    for subjects in by_person.values():
        count = len(subjects)
        assert count >= 2
        assert [subject.split(":")[0] for subject in subjects] == [f"Lesson {n} of {count}" for n in range(1, count + 1)]
    index_lines = (tmp_path / "var" / "mail" / "index.tsv").read_text().splitlines()
    assert len(index_lines) == len(mails) + 1  # a header line, then one line per message

    # A second run on the same var/ has nothing more to send and says how to start afresh; a command
    # run beside it reads the demo's calendar, not the wall clock.
    again = subprocess.run(
        [sys.executable, "-m", "course.cli.main", "run", "--day-seconds", "2", "--until-done", "--timeout", "60",
         "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already have every lesson" in again.stdout and "--fresh" in again.stdout
    assert len(read_mailbox(tmp_path / "var" / "mail")) == len(mails)
    demo_clock = json.loads((tmp_path / "var" / "demo-clock.json").read_text())
    assert demo_clock["speed"] == 86400 / 2
