"""`course admin …` as a user runs it: the installed entry point in a subprocess, SQLite in a
temporary folder. The one-time password it prints signs in (and must then be changed); bad input
is one error line and nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from course.settings import Settings
from course.web.app import create_app
from tests.support.admin_fixtures import sign_in

COURSE = str(Path(sys.executable).parent / "course")


def run(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURSE_") and name != "REDIS_URL"}
    env.update(COURSE_DATABASE_URL=f"sqlite:///{folder / 'course.db'}", COURSE_VAR_DIR=str(folder / "var"), COLUMNS="120")
    return subprocess.run([COURSE, *args], env=env, cwd=folder, capture_output=True, text=True, timeout=60, input=stdin)


def test_admin_create_prints_a_one_time_password_that_signs_in(tmp_path: Path) -> None:
    created = run(tmp_path, "admin", "create", "Owner@Example.org")
    assert created.returncode == 0, created.stderr
    assert "admin Owner@example.org created (owner)" in created.stdout
    assert "sign in at http://127.0.0.1:8000/admin/" in created.stdout
    password = re.search(r"one-time password: (\S+)", created.stdout).group(1)  # type: ignore[union-attr]

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'course.db'}", var_dir=tmp_path / "var", base_url="http://testserver")
    with TestClient(create_app(settings), base_url="http://testserver") as browser:
        assert sign_in(browser, "owner@example.org", password) == "/admin/dashboard"
        assert browser.get("/admin/campaigns", follow_redirects=False).headers["location"] == "/admin/account/password"

    listed = run(tmp_path, "admin", "list")
    assert "Owner@example.org" in listed.stdout and "owner" in listed.stdout

    again = run(tmp_path, "admin", "create", "owner@example.org", "--role", "viewer")
    bad_role = run(tmp_path, "admin", "create", "ed@example.org", "--role", "boss")
    bad_address = run(tmp_path, "admin", "create", "not-an-address")
    for result, message in [(again, "already an admin"), (bad_role, "unknown role 'boss'"), (bad_address, "not a valid email")]:
        assert result.returncode == 1 and result.stderr.count("error:") == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

    asked = run(tmp_path, "admin", "create", "ed@example.org", "--role", "editor", "--ask-password", stdin="my own password here\nmy own password here\n")
    assert asked.returncode == 0 and "one-time password" not in asked.stdout
    reset = run(tmp_path, "admin", "reset-password", "ed@example.org")
    assert reset.returncode == 0 and re.search(r"one-time password for ed@example.org: \S+", reset.stdout)
    assert run(tmp_path, "admin", "reset-password", "nobody@example.org").returncode == 1


def test_admin_token_create_prints_a_token_once_that_calls_the_api_until_revoked(tmp_path: Path) -> None:
    created = run(tmp_path, "admin", "token", "create", "CI deploy", "--role", "editor")
    assert created.returncode == 0, created.stderr
    token = re.search(r"^(course_\S+)$", created.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]
    token_id = re.search(r"token (\d+) “CI deploy” created \(editor\)", created.stdout).group(1)  # type: ignore[union-attr]

    listed = run(tmp_path, "admin", "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert "CI deploy" in listed.stdout and "editor" in listed.stdout and token[:12] in listed.stdout
    assert token not in listed.stdout  # shown once: the list has only its first characters

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'course.db'}", var_dir=tmp_path / "var", base_url="http://testserver")
    with TestClient(create_app(settings), base_url="http://testserver") as api:
        assert api.get("/api/admin/campaigns", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # an editor token: owner operations are refused
        assert api.get("/api/admin/tokens", headers={"Authorization": f"Bearer {token}"}).status_code == 403

        revoked = run(tmp_path, "admin", "token", "revoke", token_id)
        assert revoked.returncode == 0 and f"token {token_id} “CI deploy” revoked" in revoked.stdout, revoked.stderr
        assert api.get("/api/admin/campaigns", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert "revoked" in run(tmp_path, "admin", "token", "list").stdout

    bad_role = run(tmp_path, "admin", "token", "create", "x", "--role", "boss")
    no_name = run(tmp_path, "admin", "token", "create", " ", "--role", "viewer")
    unknown = run(tmp_path, "admin", "token", "revoke", "999")
    for result, message in [(bad_role, "unknown role 'boss'"), (no_name, "a token needs a name"), (unknown, "no API token with id 999")]:
        assert result.returncode == 1 and result.stderr.count("error:") == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert run(tmp_path, "admin", "token", "list").stdout.count("course_") == 1  # nothing half-made
