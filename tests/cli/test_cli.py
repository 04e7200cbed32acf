"""The `course` command as a user runs it: a subprocess of the installed entry point with its
settings in the environment, an SQLite database in a temporary folder. Bad input ends in exactly
one "error:" line on stderr and a non-zero exit, and writes nothing."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from course.content.article import load_article
from course.content.blocks import BLOCK_KINDS, block_from_dict, join_pieces
from course.db import make_engine
from course.audience.enrollment import unsubscribe
from course.models import Delivery, Lesson, Subscriber
from tests.support.services import seed_article_path
from tests.support.content_fixtures import SEED_GUIDES
from tests.support.pipeline_fixtures import snapshot

COURSE = str(Path(sys.executable).parent / "course")
SLUG = "sourdough-from-scratch"
Run = Callable[..., subprocess.CompletedProcess[str]]


def environment(folder: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURSE_") and name != "REDIS_URL"}
    env.update(COURSE_DATABASE_URL=f"sqlite:///{folder / 'course.db'}", COURSE_VAR_DIR=str(folder / "var"), COLUMNS="120")
    return env


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COURSE, *args], env=environment(folder), cwd=folder, capture_output=True, text=True, timeout=60)


def run_all(folder: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Several independent commands at once (each is a separate process start-up, the slow part)."""
    processes = [
        subprocess.Popen([COURSE, *args], env=environment(folder), cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    results = []
    for args, process in zip(commands, processes):
        stdout, stderr = process.communicate(timeout=60)
        results.append(subprocess.CompletedProcess([COURSE, *args], process.returncode, stdout, stderr))
    return results


@pytest.fixture(scope="module")
def initialized_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli-template")
    result = run_in(folder, "init")
    assert result.returncode == 0, result.stderr
    assert f"{SLUG}: created (lessons: 6 added, 0 updated, 0 retired, 0 unchanged)" in result.stdout
    return folder / "course.db"


@pytest.fixture
def folder(tmp_path: Path, initialized_template: Path) -> Path:
    """A folder with a database that `course init` has set up (copied, to start each process once)."""
    shutil.copy(initialized_template, tmp_path / "course.db")
    return tmp_path


@pytest.fixture
def db_of() -> Iterator[Callable[[Path], sessionmaker[Session]]]:
    engines = []

    def open_(folder: Path) -> sessionmaker[Session]:
        engine = make_engine(f"sqlite:///{folder / 'course.db'}")
        engines.append(engine)
        return sessionmaker(engine)

    yield open_
    for engine in engines:
        engine.dispose()


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_init_twice_is_idempotent(
    initialized_template: Path, folder: Path, db_of: Callable[[Path], sessionmaker[Session]]
) -> None:
    """`folder` holds a copy of what the first `course init` made (see initialized_template)."""
    with db_of(folder)() as session:
        before = snapshot(session)
    assert len(before["lessons"]) == 6 and len(before["courses"]) == 1
    second = run_in(folder, "init")
    assert second.returncode == 0, second.stderr
    assert f"{SLUG}: unchanged (lessons: 0 added, 0 updated, 0 retired, 6 unchanged)" in second.stdout
    with db_of(folder)() as session:
        assert snapshot(session) == before


def test_subscribe_with_bad_input_prints_one_error_line_and_writes_nothing(
    folder: Path, db_of: Callable[[Path], sessionmaker[Session]]
) -> None:
    unknown_course, bad_address, bad_zone, markup, link_as_name = run_all(
        folder,
        [
            ["subscribe", "ann@example.org", "--course", "no-such-course"],
            ["subscribe", "not-an-address", "--course", SLUG],
            ["subscribe", "ann@example.org", "--course", SLUG, "--tz", "Mars/Base"],
            # Square brackets are Rich markup: the message must show them, not trip over them.
            ["subscribe", "[b]ann@example.org", "--course", "[/x]"],
            ["subscribe", "ann@example.org", "--course", SLUG, "--name", "https://evil.example/claim"],
        ],
    )
    assert_one_error_line(unknown_course, "unknown course 'no-such-course'", SLUG)
    assert_one_error_line(bad_address, "not-an-address")
    assert_one_error_line(bad_zone, "unknown time zone 'Mars/Base'")
    assert_one_error_line(markup, "unknown course '[/x]'")
    assert_one_error_line(link_as_name, "first name")
    for result in (unknown_course, bad_address, bad_zone, link_as_name):
        assert result.stdout == ""
    with db_of(folder)() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_subscribe_then_status_prints_the_counts(folder: Path, db_of: Callable[[Path], sessionmaker[Session]]) -> None:
    subscribed = run_in(folder, "subscribe", "Ann@Example.org", "--course", SLUG, "--tz", "Europe/Berlin", "--name", "Ann")
    assert subscribed.returncode == 0, subscribed.stderr
    assert f"Ann@example.org enrolled in {SLUG}: 6 lessons scheduled" in subscribed.stdout
    status = run_in(folder, "status")
    assert status.returncode == 0, status.stderr
    counts = dict(re.findall(r"^\W*(pending|held|leased|sending|sent|failed|bounced|cancelled)\W+(\d+)", status.stdout, re.M))
    assert counts == {"pending": "6", "held": "0", "leased": "0", "sending": "0", "sent": "0", "failed": "0", "bounced": "0", "cancelled": "0"}
    assert "subscribers: 1" in status.stdout
    assert f"course {SLUG}: 1 active" in status.stdout
    assert re.search(r"next due: \d{4}-\d\d-\d\dT", status.stdout)
    with db_of(folder)() as session:
        assert session.scalars(select(Subscriber.timezone)).one() == "Europe/Berlin"


def test_subscribe_by_hand_reactivates_a_former_unsubscriber(
    folder: Path, db_of: Callable[[Path], sessionmaker[Session]]
) -> None:
    assert run_in(folder, "subscribe", "ann@example.org", "--course", SLUG).returncode == 0
    with db_of(folder).begin() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        unsubscribe(session, subscriber, course_id=None, now=datetime.now(timezone.utc))
    with db_of(folder)() as session:
        assert set(session.scalars(select(Delivery.state))) == {"cancelled"}
    again = run_in(folder, "subscribe", "ann@example.org", "--course", SLUG)
    assert again.returncode == 0, again.stderr
    with db_of(folder)() as session:
        assert session.scalars(select(Subscriber.status)).one() == "active"
        assert set(session.scalars(select(Delivery.state))) == {"pending"}


def test_subscribe_refuses_a_bounced_address(folder: Path, db_of: Callable[[Path], sessionmaker[Session]]) -> None:
    assert run_in(folder, "subscribe", "ann@example.org", "--course", SLUG).returncode == 0
    with db_of(folder).begin() as session:
        session.scalars(select(Subscriber)).one().status = "bounced"
    refused = run_in(folder, "subscribe", "ann@example.org", "--course", SLUG)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: ann@example.org bounced permanently and is suppressed; not subscribing it"
    ]


def test_split_json_shows_blocks_with_kind_and_level_and_keeps_every_block(tmp_path: Path) -> None:
    seed = seed_article_path()
    guides = tmp_path / "guides.toml"
    guides.write_text(SEED_GUIDES)
    result = run_in(tmp_path, "split", str(seed), "--json", "--words", "150", "--guides", str(guides))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert set(plan) == {"title", "language", "lessons"} and isinstance(plan["title"], str)
    assert plan["language"] == "en"  # detected: the seed article is English
    assert len(plan["lessons"]) >= 2
    for lesson in plan["lessons"]:
        assert set(lesson) == {"title", "words", "minutes", "blocks", "references"}
        assert isinstance(lesson["title"], str) and lesson["title"] and not re.search(r"Part \d", lesson["title"])
        assert isinstance(lesson["words"], int) and lesson["words"] > 0
        assert lesson["blocks"] and all(block["kind"] in BLOCK_KINDS for block in lesson["blocks"])
        for block in lesson["blocks"]:
            if block["kind"] == "heading":
                assert block["level"] == 2
                assert block.get("title", False) == (block["text"] == lesson["title"])
        for reference in lesson["references"]:
            assert set(reference) == {"text", "guide"}
            assert isinstance(reference["text"], str) and (reference["guide"] is None or isinstance(reference["guide"], str))
    article = load_article(seed)
    assert plan["title"] == article.title
    blocks = [block_from_dict({k: v for k, v in block.items() if k != "title"}) for lesson in plan["lessons"] for block in lesson["blocks"]]
    assert join_pieces(blocks) == list(article.blocks)
    guides_found = {ref["guide"] for lesson in plan["lessons"] for ref in lesson["references"]}
    assert {"let-down", "anr-benefits"} <= guides_found


def test_import_feed_adds_entries_once_and_they_become_lessons(
    folder: Path, db_of: Callable[[Path], sessionmaker[Session]]
) -> None:
    content = folder / "content"
    shutil.copytree(Path(__file__).resolve().parents[2] / "content", content)
    feed = Path(__file__).resolve().parents[1] / "content" / "data" / "feeds" / "garden-rss.xml"
    first = run_in(folder, "import-feed", str(feed), "--course", SLUG, "--content", str(content))
    assert first.returncode == 0, first.stderr
    assert f"{SLUG}: 2 new entries, 0 imported before" in first.stdout
    assert re.search(rf"{SLUG}: updated \(lessons: [1-9]\d* added", first.stdout), first.stdout
    with db_of(folder)() as session:
        lessons_after_first = session.scalar(select(func.count()).select_from(Lesson))
    again = run_in(folder, "import-feed", str(feed), "--course", SLUG, "--content", str(content))
    assert again.returncode == 0, again.stderr
    assert f"{SLUG}: 0 new entries, 2 imported before" in again.stdout
    assert f"{SLUG}: unchanged" in again.stdout
    with db_of(folder)() as session:
        assert session.scalar(select(func.count()).select_from(Lesson)) == lessons_after_first
        titles = session.scalars(select(Lesson.title).order_by(Lesson.position)).all()
    assert titles[-2:] == ["Growing Tomatoes on a Balcony", "Saving Seeds From Your Tomatoes"]


def test_import_feed_with_bad_input_prints_one_error_line(tmp_path: Path) -> None:
    content = tmp_path / "content"
    shutil.copytree(Path(__file__).resolve().parents[2] / "content", content)
    not_a_feed = tmp_path / "page.xml"
    not_a_feed.write_text("<html><body>hello</body></html>")
    cases = [
        (["import-feed", str(not_a_feed), "--course", SLUG, "--content", str(content)], "not an RSS or Atom feed"),
        (["import-feed", str(not_a_feed), "--course", "nope", "--content", str(content)], "unknown course 'nope'"),
        (["import-feed", str(tmp_path / "missing.xml"), "--course", SLUG, "--content", str(content)], "cannot read the feed"),
    ]
    for args, expected in cases:
        result = run_in(tmp_path, *args)
        assert result.returncode == 1, result.stdout
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error:") and expected in line
    assert not (content / "feeds").exists()


def test_split_a_broken_file_prints_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "binary.txt").write_bytes(b"Title\n\n\x00\x01\x02\xff")
    (tmp_path / "empty.md").write_bytes(b"")
    binary, empty = run_all(tmp_path, [["split", "binary.txt"], ["split", "empty.md"]])
    for result in (binary, empty):
        assert result.returncode == 1
        assert result.stdout == ""
    assert_one_error_line(binary, "binary.txt", "binary")
    assert_one_error_line(empty, "empty.md", "empty")


def test_campaign_commands_tag_schedule_list_and_cancel(folder: Path) -> None:
    (folder / "news.md").write_text("# November\n\nNew loaves this month.\n", encoding="utf-8")
    assert run_in(folder, "subscribe", "ann@example.org", "--course", SLUG).returncode == 0
    tagged = run_in(folder, "tag", "ann@example.org", "readers", "Bakers")
    assert tagged.returncode == 0, tagged.stderr
    assert tagged.stdout.strip() == "ann@example.org: bakers, readers"
    scheduled = run_in(
        folder, "campaign", "schedule", "--name", "nov", "--subject", "News", "--body", "news.md",
        "--tag", "readers", "--at", "2030-01-06T09:00+01:00",
    )  # fmt: skip
    assert scheduled.returncode == 0, scheduled.stderr
    assert scheduled.stdout.strip() == "campaign 1 scheduled for 2030-01-06T09:00:00+01:00"
    listed = run_in(folder, "campaign", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"│\s+1 │ nov\s+│ tagged readers │ scheduled │", listed.stdout), listed.stdout
    cancelled = run_in(folder, "campaign", "cancel", "1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == "campaign 1 cancelled (0 unsent deliveries cancelled)"
    unknown_tag, missing_body, no_offset, again, nobody = run_all(
        folder,
        [
            ["campaign", "schedule", "--name", "x", "--subject", "S", "--body", "news.md", "--tag", "nobody-has-it"],
            ["campaign", "schedule", "--name", "x", "--subject", "S", "--body", "missing.md"],
            ["campaign", "schedule", "--name", "x", "--subject", "S", "--body", "news.md", "--at", "2030-01-06T09:00"],
            ["campaign", "cancel", "1"],
            ["tag", "bob@example.org", "readers"],
        ],
    )
    assert_one_error_line(unknown_tag, "'nobody-has-it'", "would reach nobody")
    assert_one_error_line(missing_body, "missing.md")
    assert_one_error_line(no_offset, "has no UTC offset")
    assert_one_error_line(again, "campaign 1 is already cancelled")
    assert_one_error_line(nobody, "no subscriber with the address 'bob@example.org'")
    listed = run_in(folder, "campaign", "list")
    assert re.search(r"│\s+1 │ nov\s+│ tagged readers │ cancelled │", listed.stdout), listed.stdout
    assert " 2 │" not in listed.stdout  # the refused schedules stored nothing
    # At 80 columns (the runner's width here) the send time is shown whole, on one line.
    assert "2030-01-06 08:00" in listed.stdout, listed.stdout


def test_a_bug_inside_a_command_keeps_its_traceback(tmp_path: Path) -> None:
    """Only the project's own errors become one `error:` line: a KeyError from a bug (here planted
    in the settings loader `course status` calls first) exits non-zero and shows its traceback."""
    script = (
        "import course.cli.main as cli\n"
        "def broken_settings():\n"
        "    raise KeyError('planted-bug')\n"
        "cli.get_settings = broken_settings\n"
        "cli.app(['status'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr, result.stderr
    assert "KeyError" in result.stderr and "planted-bug" in result.stderr, result.stderr
    assert not result.stderr.startswith("error:"), result.stderr


def test_every_project_error_is_a_one_line_error_and_nothing_else_is() -> None:
    from course.audience.schedule import UnknownTimeZone
    from course.campaigns.refusals import CampaignRefused
    from course.cli.errors import project_errors

    caught = project_errors()
    assert UnknownTimeZone in caught and CampaignRefused in caught
    for bug in (KeyError, LookupError, IndexError, AttributeError, TypeError, ValueError, RuntimeError, OSError):
        assert not issubclass(bug, caught), bug
