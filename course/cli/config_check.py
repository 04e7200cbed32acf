"""`course check-config`: everything production would refuse about the current settings, one line
each naming the variable, before a deployer finds out from a service that will not start."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from course.settings import get_settings, production_problems


def check_config_command() -> None:
    """Check the settings (the environment) against what production requires; exit 1 on any problem."""
    console = Console(soft_wrap=True)
    err_console = Console(stderr=True, soft_wrap=True)
    settings = get_settings()
    problems = production_problems(settings)
    for problem in problems:
        err_console.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
    if problems:
        if settings.env != "production":
            err_console.print("(COURSE_ENV is development, which runs anyway; production refuses to start with these)")
        raise typer.Exit(1)
    note = "" if settings.env == "production" else " (COURSE_ENV=production enforces it at every start)"
    console.print(f"configuration ok for production{note}")
