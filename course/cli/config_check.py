"""`course check-config`: everything production would refuse about the current settings, one line
each naming the variable, before a deployer finds out from a service that will not start."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import AliasChoices, ValidationError
from rich.console import Console
from rich.markup import escape

from course.delivery.journal import journal_mode_of
from course.settings import Settings, get_settings, production_problems


def unreadable_settings(error: ValidationError) -> list[str]:
    """One line per value the settings could not read, naming its variable and the value as given
    (`COURSE_ENV is 'prod': input should be 'development' or 'production'`)."""
    return [f"{_variable(problem['loc'])} is {problem['input']!r}: {_lower_first(problem['msg'])}" for problem in error.errors()]


def _variable(location: tuple[Any, ...]) -> str:
    name = str(location[0]) if location else ""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"COURSE_{name.upper()}" if name else "a setting"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def check_config_command() -> None:
    """Check the settings (the environment) against what production requires; exit 1 on any problem."""
    console = Console(soft_wrap=True)
    err_console = Console(stderr=True, soft_wrap=True)
    try:
        settings = get_settings()
    except ValidationError as exc:
        # A value no process could start with (COURSE_ENV=prod): named, not a traceback.
        for problem in unreadable_settings(exc):
            err_console.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(1) from None
    problems = production_problems(settings)
    for problem in problems:
        err_console.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
    journal = journal_mode_of(settings)
    if journal.name == "volatile" and settings.env == "production":
        err_console.print(
            f"[yellow]warning:[/yellow] the send journal's Redis does not persist: {escape(journal.reason)}; outcome groups stay "
            "small, and a Redis crash with a lost worker re-sends up to one of them per process. Run Redis with "
            "`appendonly yes` and `appendfsync everysec` (docker-compose.yml does), or set COURSE_SEND_JOURNAL_WAIT_REPLICAS",
            highlight=False,
        )
    if problems:
        if settings.env != "production":
            err_console.print("(COURSE_ENV is development, which runs anyway; production refuses to start with these)")
        raise typer.Exit(1)
    note = "" if settings.env == "production" else " (COURSE_ENV=production enforces it at every start)"
    console.print(f"configuration ok for production{note}")
