"""`course subscribers import|export|erase`: readers' data from the command line, thin shells over
course.audience.imports, .export and .erasure. Each is recorded in the audit log as done by
"cli:<user>"."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from course.accounts.audit_log import Who, record
from course.audience.csv_rows import ImportFileError
from course.audience.erasure import ErasureError, access_export, erase, find
from course.audience.export import ExportFilter, ExportFilterError, export_csv
from course.audience.imports import ImportOptions, process, report_csv, report_rows, start_import, summary_line
from course.cli.errors import CommandError, clear_errors, err_console
from course.clock import get_clock, get_wall_clock
from course.db import session_factory
from course.models import ImportStatus
from course.settings import get_settings

_out = Console(soft_wrap=True)


def _who() -> Who:
    return Who(actor=f"cli:{getpass.getuser()}")


def _sessions():  # type: ignore[no-untyped-def]
    return session_factory(get_settings())


@clear_errors
def import_command(
    file: Annotated[Path, typer.Argument(help="a CSV file with an email column (name, timezone, language, tags, created_at too)")],
    course: Annotated[str | None, typer.Option("--course", help="enroll the readers in this course (slug)")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="tag every imported reader")] = None,
    mode: Annotated[str, typer.Option("--mode", help="opt-in (a confirmation mail each) or confirmed (needs --consent)")] = "opt-in",
    consent: Annotated[str | None, typer.Option("--consent", help="how these people agreed to receive mail (confirmed mode)")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="write the per-row report here (CSV)")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="the file's encoding (default: detected)")] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="the file's delimiter (default: detected)")] = None,
) -> None:
    """Import subscribers from a CSV file: all rows in one transaction, a report per row. Exit 0
    when the file was processed, even with rejected rows."""
    if not file.is_file():
        raise CommandError(f"no file at {file}")
    settings = get_settings()
    sessions = _sessions()
    options = ImportOptions(mode=mode, course_slug=course, tag=tag, consent=consent, encoding=encoding, delimiter=delimiter)
    now, wall = get_clock(settings).now(), get_wall_clock().now()
    try:
        with sessions.begin() as session:
            import_id = start_import(session, filename=file.name, options=options, source="cli", actor=_who().actor, admin_id=None, now=wall).id
    except ImportFileError as exc:
        raise CommandError(str(exc)) from None
    columns = (TextColumn("importing {task.fields[name]}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("import", total=file.stat().st_size, name=file.name)
        done = process(
            sessions, import_id, file, options=options, secret=settings.secret_key, now=now,
            on_progress=lambda read, total: bar.update(task, completed=read, total=total),
        )  # fmt: skip
    with sessions.begin() as session:
        record(session, _who(), "import", now=wall, target=f"import {import_id}", file=file.name, mode=mode, status=done.status, **done.counts)
        if report is not None and done.status == ImportStatus.DONE:
            with report.open("w", encoding="utf-8", newline="") as out:
                for chunk in report_csv(report_rows(session, import_id)):
                    out.write(chunk)
    if done.status == ImportStatus.FAILED:
        raise CommandError(f"{file}: {done.error}")
    for column in done.unknown_columns:
        err_console.print(f"[yellow]warning:[/yellow] unknown column {column!r} ignored", highlight=False)
    _out.print(f"{file.name}: {done.total_rows:,} rows: {summary_line(done.counts)}", highlight=False)


@clear_errors
def export_command(
    status: Annotated[str | None, typer.Option("--status", help="only subscribers with this status")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="only subscribers with this tag")] = None,
    course: Annotated[str | None, typer.Option("--course", help="only readers of this course (slug)")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write here (default: standard output)")] = None,
) -> None:
    """Export subscribers as CSV (streamed: any number of rows in constant memory)."""
    sessions = _sessions()
    wanted = ExportFilter(status=status, tag=tag, course_slug=course)
    with sessions.begin() as session:
        try:
            chunks = export_csv(session, wanted)
            first = next(chunks)
        except ExportFilterError as exc:
            raise CommandError(str(exc)) from None
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            out.write(first)
            for chunk in chunks:
                out.write(chunk)
        finally:
            if output:
                out.close()
        record(session, _who(), "export", now=get_wall_clock().now(), status=status or "", tag=tag or "", course=course or "")


@clear_errors
def erase_command(
    email: Annotated[str, typer.Argument(help="the subscriber's address")],
    yes: Annotated[bool, typer.Option("--yes", help="erase without asking (required)")] = False,
    show: Annotated[bool, typer.Option("--print-data", help="print their data as JSON first (an access request)")] = False,
) -> None:
    """Erase a subscriber's personal data (GDPR): the address is kept only as a keyed hash on the
    suppression list; delivery rows stay, anonymised."""
    if not yes:
        raise CommandError("erasure cannot be undone: add --yes")
    settings = get_settings()
    with _sessions().begin() as session:
        try:
            subscriber = find(session, email)
        except ErasureError as exc:
            raise CommandError(str(exc)) from None
        if show:
            _out.print_json(json.dumps(access_export(session, subscriber)))
        subscriber_id = subscriber.id
        erased = erase(session, subscriber, secret=settings.secret_key, now=get_clock(settings).now())
        if erased:
            record(session, _who(), "subscriber.erase", now=get_wall_clock().now(), target=f"subscriber {subscriber_id}")
    _out.print(f"subscriber {subscriber_id}: {'erased' if erased else 'already erased'}", highlight=False)


def register(subscribers_app: typer.Typer) -> None:
    subscribers_app.command("import")(import_command)
    subscribers_app.command("export")(export_command)
    subscribers_app.command("erase")(erase_command)
