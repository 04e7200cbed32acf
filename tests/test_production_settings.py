"""Production refuses to run unsafe: a missing, default or weak secret, an http base URL, localhost
mail domains. Each problem is one line naming the variable; `course check-config` prints them all,
and the web app, `course worker`, `course beat` and a bare `celery -A worker.app beat` all refuse."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from course.settings import (
    DEFAULT_SECRET,
    InsecureConfiguration,
    Settings,
    production_problems,
    refuse_unsafe,
    secret_entropy_bytes,
)

COURSE = str(Path(sys.executable).parent / "course")
CELERY = str(Path(sys.executable).parent / "celery")
GOOD = {
    "env": "production",
    "secret_key": secrets.token_urlsafe(32),
    "base_url": "https://courses.example.com",
    "unsubscribe_mailto": "unsubscribe@example.com",
    "list_id_domain": "courses.example.com",
}


def production(**overrides: object) -> Settings:
    return Settings(**{**GOOD, **overrides})  # type: ignore[arg-type]


def variables_named(problems: list[str]) -> list[str]:
    return [problem.split()[0] for problem in problems]


def test_good_production_settings_pass() -> None:
    assert production_problems(production()) == []
    refuse_unsafe(production())


@pytest.mark.parametrize(
    "secret",
    ["", "x", DEFAULT_SECRET, "a" * 100, "correct horse battery staple", secrets.token_hex(15), "0123456789abcdef" * 2],
    ids=["empty", "one-char", "default", "repeated", "four-words", "15-random-bytes-hex", "pattern"],
)
def test_weak_secrets_are_refused(secret: str) -> None:
    problems = production_problems(production(secret_key=secret))
    assert variables_named(problems) == ["COURSE_SECRET_KEY"], problems
    with pytest.raises(InsecureConfiguration, match="COURSE_SECRET_KEY"):
        refuse_unsafe(production(secret_key=secret))


@pytest.mark.parametrize(
    "secret",
    [secrets.token_urlsafe(32), secrets.token_hex(32), "ZmFrZS1iYXNlNjQtYnV0LWxvbmctZW5vdWdoLXRvLXBhc3M=xyzQ9!"],
    ids=["token_urlsafe-32", "token_hex-32", "long-mixed"],  # fixed: every xdist worker collects the same tests
)
def test_strong_secrets_pass(secret: str) -> None:
    assert secret_entropy_bytes(secret) >= 32
    assert production_problems(production(secret_key=secret)) == []


def test_every_problem_is_one_line_naming_its_variable() -> None:
    settings = Settings(env="production", secret_key="short")  # every other value is the development default
    problems = production_problems(settings)
    assert variables_named(problems) == [
        "COURSE_SECRET_KEY",
        "COURSE_BASE_URL",
        "COURSE_UNSUBSCRIBE_MAILTO",
        "COURSE_LIST_ID_DOMAIN",
    ]
    assert all("\n" not in problem for problem in problems)
    with pytest.raises(InsecureConfiguration) as raised:
        refuse_unsafe(settings)
    assert raised.value.problems == problems


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("base_url", "http://courses.example.com", "COURSE_BASE_URL"),
        ("base_url", "https://localhost:8000", "COURSE_BASE_URL"),
        ("base_url", "https://127.0.0.1", "COURSE_BASE_URL"),
        ("base_url", "courses.example.com", "COURSE_BASE_URL"),
        ("unsubscribe_mailto", "unsubscribe@localhost", "COURSE_UNSUBSCRIBE_MAILTO"),
        ("unsubscribe_mailto", "unsubscribe@mail.localhost", "COURSE_UNSUBSCRIBE_MAILTO"),
        ("unsubscribe_mailto", "unsubscribe", "COURSE_UNSUBSCRIBE_MAILTO"),
        ("list_id_domain", "course.localhost", "COURSE_LIST_ID_DOMAIN"),
        ("list_id_domain", "localhost", "COURSE_LIST_ID_DOMAIN"),
        ("trusted_proxies", "10.0.0.1, not-an-address", "COURSE_TRUSTED_PROXIES"),
    ],
)
def test_each_unsafe_value_names_its_variable(field: str, value: str, variable: str) -> None:
    assert variables_named(production_problems(production(**{field: value}))) == [variable]


def test_development_runs_with_the_defaults_but_not_with_broken_values() -> None:
    refuse_unsafe(Settings())
    with pytest.raises(InsecureConfiguration, match="COURSE_TRUSTED_PROXIES"):
        refuse_unsafe(Settings(trusted_proxies="10.0.0.0/33"))


# --- the processes, as a deployer starts them -------------------------------------------------------


def environment(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("COURSE_") and name != "REDIS_URL"}
    env.update(COURSE_VAR_DIR=str(tmp_path), COURSE_DATABASE_URL=f"sqlite:///{tmp_path / 'c.db'}", COURSE_BROKER_URL="memory://")
    env.update(variables)
    return env


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_check_config_prints_every_problem_and_exits_non_zero(tmp_path: Path) -> None:
    result = run([COURSE, "check-config"], environment(tmp_path, COURSE_ENV="production", COURSE_SECRET_KEY="x"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert [line.split()[1] for line in lines] == [
        "COURSE_SECRET_KEY",
        "COURSE_BASE_URL",
        "COURSE_UNSUBSCRIBE_MAILTO",
        "COURSE_LIST_ID_DOMAIN",
    ]
    assert all(line.startswith("error: ") for line in lines)

    good = {f"COURSE_{name.upper()}": value for name, value in GOOD.items()}
    result = run([COURSE, "check-config"], environment(tmp_path, **good))
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout

    # In development it still reports what production would refuse, and says so.
    result = run([COURSE, "check-config"], environment(tmp_path))
    assert result.returncode == 1 and "development" in result.stderr


@pytest.mark.parametrize(
    "command",
    [[COURSE, "worker", "--pool", "solo"], [COURSE, "beat"], [COURSE, "web", "--port", "0"], [CELERY, "-A", "worker.app", "beat"]],
    ids=["course-worker", "course-beat", "course-web", "celery-beat"],
)
def test_every_process_refuses_to_start_in_production_with_the_default_secret(tmp_path: Path, command: list[str]) -> None:
    good = {f"COURSE_{name.upper()}": value for name, value in GOOD.items()}
    del good["COURSE_SECRET_KEY"]
    result = run(command, environment(tmp_path, **good))
    assert result.returncode != 0
    assert "COURSE_SECRET_KEY" in result.stderr
    if command[0] == COURSE:
        assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[0]], "one line, no traceback"
        assert result.stderr.startswith("error: COURSE_SECRET_KEY")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("COURSE_ENV", "PRODUCTION"), ("COURSE_ENV", "prod"), ("COURSE_SMTP_PORT", "seventy")],
)
def test_check_config_names_a_setting_it_cannot_read_in_one_line(tmp_path: Path, variable: str, value: str) -> None:
    # Issue #22, item 4: a value the settings refuse was a traceback, not one `error:` line.
    result = run([COURSE, "check-config"], environment(tmp_path, **{variable: value}))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {variable} ") and repr(value) in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("persistent", [True, False])
def test_check_config_warns_in_production_when_the_send_journal_does_not_persist(tmp_path: Path, persistent: bool) -> None:
    from tests.support.fault_stack import RedisServer

    server = RedisServer(tmp_path, persistent=persistent)
    server.start()
    try:
        good = {f"COURSE_{name.upper()}": value for name, value in GOOD.items()}
        result = run([COURSE, "check-config"], environment(tmp_path, **good, COURSE_BROKER_URL=server.url))
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr  # a warning, not a refusal
    assert "configuration ok" in result.stdout
    if persistent:
        assert result.stderr == ""
    else:
        assert result.stderr.startswith("warning: the send journal's Redis does not persist: Redis keeps no append-only file")
        assert "appendfsync everysec" in result.stderr
