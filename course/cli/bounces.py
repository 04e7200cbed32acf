"""`course bounces poll [--folder DIR]`: read returned mail once and apply what it says (a thin
shell over course.bounces.poll)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from course.cli.errors import CommandError, clear_errors

bounces_app = typer.Typer(help="Bounces and complaints that come back by mail.", no_args_is_help=True)


@bounces_app.command("poll")
@clear_errors
def poll_command(
    folder: Annotated[Path | None, typer.Option("--folder", help="a folder of .eml files to read instead of the mailbox")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Read the bounce mailbox (or a folder of .eml files) once: hard bounces and complaints
    suppress their address, soft bounces count toward COURSE_BOUNCE_SOFT_THRESHOLD."""
    # Here, not at the top: every `course` command loads this module, and these (IMAP, the
    # migrations) would add a tenth of a second to each.
    from course import schema
    from course.bounces.imap import ImapConfig, ImapMailbox
    from course.bounces.mailbox import FolderMailbox, Mailbox, MailboxError
    from course.bounces.poll import PollReport, poll
    from course.bounces.record import BounceOptions
    from course.clock import get_wall_clock
    from course.db import session_factory
    from course.settings import get_settings

    settings = get_settings()
    mailbox: Mailbox
    if folder is not None:
        mailbox = FolderMailbox(folder)
    else:
        imap = ImapConfig.from_settings(settings)
        if imap is None:
            raise CommandError(
                "no bounce mailbox is configured: set COURSE_BOUNCE_IMAP_HOST (and _USER, _PASSWORD), "
                "or pass --folder DIR with the returned mail as .eml files"
            )
        mailbox = ImapMailbox(imap)
    schema.upgrade()
    wall_clock = get_wall_clock()
    columns = (TextColumn("reading returned mail"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        # A mailbox of thousands of bounces takes a while: a bar on stderr, gone once done (none with --json).
        with Progress(*columns, console=Console(stderr=True), transient=True, disable=as_json) as bar:
            task = bar.add_task("poll", total=None)

            def advance(report: PollReport) -> None:
                bar.update(task, completed=report.read, total=getattr(mailbox, "total", None))

            result = poll(
                mailbox, session_factory(settings), options=BounceOptions.from_settings(settings), now=wall_clock.now, progress=advance
            )
    except MailboxError as error:
        raise CommandError(str(error)) from error
    finally:
        if isinstance(mailbox, ImapMailbox):
            mailbox.close()
    if as_json:
        typer.echo(json.dumps({"read": result.read, "actions": dict(sorted(result.actions.items())), "errors": result.errors}))
    else:
        console = Console()
        console.print(f"read {result.read} message(s)")
        for action, count in sorted(result.actions.items()):
            console.print(f"  {action}: {count}")
        for error in result.errors:
            console.print(f"  not recorded: {error}")
    if result.errors:
        raise typer.Exit(1)
