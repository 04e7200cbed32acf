"""docker-compose.yml, as Debian's docker-compose reads it: the services exist, each app service runs
a real `course` subcommand, and all of them are wired to the stack's PostgreSQL, Redis and mail
catcher. No Docker engine is needed: `docker-compose config` only parses and interpolates."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from course.settings import PROJECT_ROOT


COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE_FILE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKER_COMPOSE = shutil.which("docker-compose")

TEST_SECRET_KEY = "compose-test-secret"
COURSE_SUBCOMMANDS = {"init", "web", "worker", "beat"}
SUBCOMMAND_BY_APP_SERVICE = {"migrate": "init", "web": "web", "worker": "worker", "beat": "beat"}
LONG_RUNNING_APP_SERVICES = ("web", "worker", "beat")
BACKING_SERVICES = {"postgres", "redis", "mailcatcher"}

needs_docker_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose is not installed (Debian package docker-compose; scripts/services.sh "
    "installs it when run as root)",
)


def run_compose_config(
    tmp_path: Path, environment: dict[str, str], env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with exactly `environment`: nothing from the caller's shell (a stray
    POSTGRES_PASSWORD or COMPOSE_FILE) and no .env a developer may keep next to the compose file."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.touch()
    assert DOCKER_COMPOSE is not None
    return subprocess.run(
        [
            DOCKER_COMPOSE,
            "--project-directory",
            str(PROJECT_ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "config",
        ],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "LC_ALL": "C.UTF-8",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if DOCKER_COMPOSE is None:
        pytest.skip("docker-compose is not installed")
    result = run_compose_config(tmp_path_factory.mktemp("compose"), {"COURSE_SECRET_KEY": TEST_SECRET_KEY})
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def command_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def published_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):  # long syntax: {published: 8000, target: 8000}
            ports.add(int(port["published"]))
        else:  # "127.0.0.1:8025:8025/tcp" or "8000:8000"
            ports.add(int(str(port).split("/")[0].split(":")[-2]))
    return ports


@needs_docker_compose
def test_the_stack_has_every_service(compose_config: dict[str, Any]) -> None:
    assert set(compose_config["services"]) == BACKING_SERVICES | set(SUBCOMMAND_BY_APP_SERVICE)


@needs_docker_compose
@pytest.mark.parametrize(("service_name", "subcommand"), sorted(SUBCOMMAND_BY_APP_SERVICE.items()))
def test_app_services_run_a_course_subcommand_from_the_image(
    compose_config: dict[str, Any], service_name: str, subcommand: str
) -> None:
    service = compose_config["services"][service_name]
    words = command_words(service)
    assert words[0] == "course", f"{service_name} does not run the course CLI: {words}"
    assert words[1] in COURSE_SUBCOMMANDS, f"{service_name} runs an unknown subcommand: {words}"
    assert words[1] == subcommand
    assert Path(service["build"]["context"]) == PROJECT_ROOT


@needs_docker_compose
@pytest.mark.parametrize("service_name", sorted(SUBCOMMAND_BY_APP_SERVICE))
def test_app_services_are_wired_to_the_stack(compose_config: dict[str, Any], service_name: str) -> None:
    services = compose_config["services"]
    environment = services[service_name]["environment"]
    postgres_environment = services["postgres"]["environment"]

    database_url = urlsplit(environment["COURSE_DATABASE_URL"])
    assert database_url.scheme == "postgresql+psycopg"
    assert database_url.hostname == "postgres"
    assert database_url.hostname in services
    assert database_url.port == 5432
    assert database_url.username == postgres_environment["POSTGRES_USER"]
    assert database_url.password == postgres_environment["POSTGRES_PASSWORD"]
    assert database_url.path == "/" + postgres_environment["POSTGRES_DB"]

    redis_url = urlsplit(environment["REDIS_URL"])
    assert redis_url.scheme == "redis"
    assert redis_url.hostname == "redis"
    assert redis_url.hostname in services
    assert redis_url.port == 6379

    assert environment["COURSE_SMTP_HOST"] == "mailcatcher"
    assert "mailcatcher" in services
    assert str(environment["COURSE_SMTP_PORT"]) == "1025"
    assert environment["COURSE_ENV"] == "production"
    assert environment["COURSE_SECRET_KEY"] == TEST_SECRET_KEY
    assert environment["COURSE_BASE_URL"] == "http://localhost:8000"


@needs_docker_compose
def test_start_order_waits_for_healthy_services_and_the_migration(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for backing_service in ("postgres", "redis"):
        assert "healthcheck" in services[backing_service], f"{backing_service} has no healthcheck to wait on"

    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"]["restart"] == "no"  # one-shot: restarting it would loop
    for service_name in LONG_RUNNING_APP_SERVICES:
        depends_on = services[service_name]["depends_on"]
        assert depends_on["postgres"] == {"condition": "service_healthy"}, service_name
        assert depends_on["redis"] == {"condition": "service_healthy"}, service_name
        assert depends_on["migrate"] == {"condition": "service_completed_successfully"}, service_name


@needs_docker_compose
def test_published_ports(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert 8000 in published_ports(services["web"])
    assert 8025 in published_ports(services["mailcatcher"])  # Mailpit's web UI


@needs_docker_compose
def test_config_fails_without_a_secret_key(tmp_path: Path) -> None:
    result = run_compose_config(tmp_path, {})
    assert result.returncode != 0
    assert "COURSE_SECRET_KEY" in result.stderr


@needs_docker_compose
def test_env_example_names_every_variable_and_leaves_the_secret_to_fill_in(tmp_path: Path) -> None:
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE_FILE.read_text(), re.MULTILINE))
    assert interpolated <= documented, f"missing from .env.example: {sorted(interpolated - documented)}"

    # Copied unedited, the example must not start a stack with a blank secret.
    result = run_compose_config(tmp_path, {}, env_file=ENV_EXAMPLE_FILE)
    assert result.returncode != 0
    assert "COURSE_SECRET_KEY" in result.stderr


def test_dockerfile_copies_only_paths_that_exist() -> None:
    # A COPY of a missing path fails the image build; globs (README.m[d]) may match nothing.
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(word.startswith("--") for word in words):
            continue
        for source in words[1:-1]:
            if not any(char in source for char in "*?["):
                assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"


@needs_docker_compose
@pytest.mark.parametrize("service_name", sorted(SUBCOMMAND_BY_APP_SERVICE))
def test_app_service_commands_parse_with_the_real_cli(compose_config: dict[str, Any], service_name: str) -> None:
    """The compose file stays true to how the app starts: its command line is accepted, options and
    all, by the `course` CLI itself (parsed, not run)."""
    import typer.main

    from course.cli.main import app

    words = command_words(compose_config["services"][service_name])
    group = typer.main.get_command(app)
    with group.make_context("course", list(words[1:2])) as group_context:
        command = group.get_command(group_context, words[1])
        assert command is not None, f"course has no subcommand {words[1]!r}"
        command.make_context(words[1], list(words[2:]), parent=group_context)  # raises on a bad option


@needs_docker_compose
@pytest.mark.parametrize("service_name", LONG_RUNNING_APP_SERVICES)
def test_long_running_services_have_a_health_check_the_cli_accepts(compose_config: dict[str, Any], service_name: str) -> None:
    """web, worker and beat each report their health with `course health <component>`: a command the
    real CLI parses, naming the service's own component."""
    import typer.main

    from course.cli.main import app

    check = compose_config["services"][service_name]["healthcheck"]
    words = [str(word) for word in check["test"]]
    assert words[0] == "CMD", words
    assert words[1:4] == ["course", "health", service_name], words
    group = typer.main.get_command(app)
    with group.make_context("course", ["health"]) as group_context:
        command = group.get_command(group_context, "health")
        assert command is not None
        command.make_context("health", words[3:], parent=group_context)  # raises on a bad option


def test_the_shipped_redis_keeps_the_send_journal_through_a_crash(tmp_path: Path) -> None:
    """Issue #24: the compose file's Redis, started with its own command line, is one the send
    journal trusts (append-only file, synced every second)."""
    from course.delivery.journal import journal_client, read_mode
    from tests.support.fault_stack import free_port, wait_until

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    port = free_port()
    server = subprocess.Popen(
        [*command, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = journal_client(f"redis://127.0.0.1:{port}/0")
        wait_until(lambda: client.ping(), 20, "redis-server")  # type: ignore[attr-defined]
        mode = read_mode(client)
    finally:
        server.kill()
        server.wait(10)
    assert mode.durable, mode.reason
