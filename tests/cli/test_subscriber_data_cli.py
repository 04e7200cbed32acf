"""`course subscribers import|export|erase` as scripts call them: exit codes, the summary line,
the report file, and one error line for a malformed file."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from course.models import AuditEntry, Subscriber, SubscriberStatus

COURSE = str(Path(sys.executable).parent / "course")
SLUG = "sourdough-from-scratch"


def run_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURSE_") and name != "REDIS_URL"}
    env.update(COURSE_DATABASE_URL=f"sqlite:///{folder / 'course.db'}", COURSE_VAR_DIR=str(folder / "var"), COLUMNS="200")
    return subprocess.run([COURSE, *args], env=env, cwd=folder, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("subscribers-cli")
    assert run_in(folder, "init").returncode == 0
    return folder / "course.db"


@pytest.fixture
def folder(tmp_path: Path, initialized: Path) -> Path:
    shutil.copy(initialized, tmp_path / "course.db")
    return tmp_path


def test_import_export_erase(folder: Path) -> None:
    listing = folder / "list.csv"
    listing.write_text("email;name;tags;colour\nann@example.org;Ann;=SUM(1);red\nbad;Bob;;\nann@example.org;;x;\n=cmd@x;;;\n")
    result = run_in(folder, "subscribers", "import", str(listing), "--course", SLUG, "--report", "report.csv")
    assert result.returncode == 0, result.stderr
    assert "list.csv: 4 rows: 1 accepted, 0 updated, 0 unchanged, 2 rejected, 1 duplicates merged, 0 suppressed" in result.stdout
    assert "unknown column 'colour' ignored" in result.stderr
    with (folder / "report.csv").open(newline="") as report:
        rows = list(csv.DictReader(report))
    assert [(row["line"], row["outcome"]) for row in rows] == [("2", "duplicate"), ("3", "rejected"), ("4", "accepted"), ("5", "rejected")]
    assert rows[3]["email"] == "'=cmd@x"  # neutralised for spreadsheets

    exported = run_in(folder, "subscribers", "export", "--course", SLUG, "--status", "pending")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[1].startswith("ann@example.org,Ann,UTC,pending,'=SUM(1);x,")

    refused = run_in(folder, "subscribers", "erase", "ann@example.org")
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    erased = run_in(folder, "subscribers", "erase", "ann@example.org", "--yes")
    assert erased.returncode == 0, erased.stderr
    engine = create_engine(f"sqlite:///{folder / 'course.db'}")
    with engine.connect() as connection:
        assert connection.scalars(select(Subscriber.status)).all() == [SubscriberStatus.ERASED]
        actions = connection.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    engine.dispose()
    assert actions == ["import", "export", "subscriber.erase"]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"name\nAnn\n", (), "no email column"),
        (b"email\nann@example.org\n", ("--mode", "confirmed"), "consent"),
        (b"email\nann@example.org\n", ("--course", "nope"), "unknown course 'nope'"),
    ],
)
def test_bad_import_is_one_error_line(folder: Path, content: bytes, args: tuple[str, ...], message: str) -> None:
    (folder / "list.csv").write_bytes(content)
    result = run_in(folder, "subscribers", "import", "list.csv", *(args or ("--course", SLUG)))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
