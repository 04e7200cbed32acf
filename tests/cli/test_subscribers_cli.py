"""`course subscribers show EMAIL [--json]`: one subscriber's profile, status, tags, enrollments and
timeline, as a person reads it or as JSON in the API's shape; an unknown address is one error line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from course.models import SubscriberTag
from tests.cli.test_cli import SLUG, db_of, folder, initialized_template, run_in  # noqa: F401 (fixtures)


def test_show_prints_the_subscriber_and_their_timeline(folder: Path, db_of: Callable[[Path], sessionmaker[Session]]) -> None:  # noqa: F811
    assert run_in(folder, "subscribe", "ann@example.org", "--course", SLUG, "--tz", "Europe/Berlin", "--name", "Ann").returncode == 0
    with db_of(folder).begin() as session:
        session.add(SubscriberTag(subscriber_id=1, tag="vip"))
    shown = run_in(folder, "subscribers", "show", "ANN@example.org", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert (body["email"], body["status"], body["timezone"], body["tags"]) == ("ann@example.org", "active", "Europe/Berlin", ["vip"])
    assert body["enrollments"][0]["course"] == SLUG and body["enrollments"][0]["lesson_count"] == 6
    kinds = [event["kind"] for event in body["events"]]
    assert kinds[0] == "enrolled" and body["events"][0]["detail"]["source"] == "cli"
    assert kinds.count("delivery") == 6
    table = run_in(folder, "subscribers", "show", "ann@example.org")
    assert table.returncode == 0 and "ann@example.org" in table.stdout and "Enrolled (Sourdough from Scratch)" in table.stdout
    missing = run_in(folder, "subscribers", "show", "nobody@example.org")
    assert missing.returncode != 0 and missing.stderr.strip().splitlines() == ["error: no subscriber with the address 'nobody@example.org'"]
