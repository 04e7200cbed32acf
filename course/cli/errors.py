"""Which errors the `course` command prints as one `error:` line, and the decorator that does it.

Only the project's own error types are a user's to fix (a broken article, an unknown course, a bad
address or time zone, a service that is not running): each carries a message that names the thing it
concerns. Anything else, a KeyError or an AttributeError from a bug, keeps its traceback so it can be
reported and fixed; it never shrinks to one misleading line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from course.settings import InsecureConfiguration

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)


class CommandError(Exception):
    """Bad command-line input found by the command itself (an unknown course, a missing folder)."""


def project_errors() -> tuple[type[Exception], ...]:
    """The project's own error types: raised for input a user can correct, never for a bug.

    Imported here rather than at the top so that `course --help` does not load the worker or the
    bench (and Celery with them)."""
    from course.audience.enrollment import SubscriptionError
    from course.audience.schedule import UnknownTimeZone
    from course.campaigns.refusals import CampaignRefused
    from course.cli.local_stack import StackError
    from course.content.article import ArticleError
    from course.content.definition import CourseDefinitionError
    from course.content.feeds import FeedError
    from course.content.guides import GuideCatalogueError
    from course.devtools.bench.config import BenchError
    from course.devtools.mailsink import MailSinkError
    from worker.config import BrokerUnavailable

    return (
        CommandError,
        ArticleError,
        CourseDefinitionError,
        FeedError,
        GuideCatalogueError,
        SubscriptionError,
        UnknownTimeZone,
        CampaignRefused,
        StackError,
        MailSinkError,
        BrokerUnavailable,
        BenchError,
        # A path named on the command line that is not there: the user's to fix, and the message
        # names the path.
        FileNotFoundError,
    )


def print_error(message: str) -> None:
    # Escaped: the message quotes user input, whose [brackets] Rich would read as markup.
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def clear_errors(command: F) -> F:
    """Run a command; the project's own errors and database errors end in one `error:` line and
    exit status 1. Every other exception propagates with its traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except InsecureConfiguration as exc:
            for problem in exc.problems:  # one line each, naming the variable to set
                print_error(problem)
            raise typer.Exit(1) from None
        except project_errors() as exc:
            print_error(str(exc))
            raise typer.Exit(1) from None
        except SQLAlchemyError as exc:
            print_error(f"database: {str(exc).splitlines()[0]}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
