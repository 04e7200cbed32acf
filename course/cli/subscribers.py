"""`course subscribers …`: one subscriber as the admin's page shows them (profile, status, tags,
enrollments, and the timeline of events and deliveries), for a person or, with --json, a script.
A thin shell over course.audience.directory, registered by course/cli/main.py."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course.audience.directory import SubscriberDetail, find_by_email, subscriber_detail
from course.cli.errors import CommandError, clear_errors
from course.db import transaction
from course.settings import get_settings

subscribers_app = typer.Typer(help="Subscribers: show one with their courses and timeline.", no_args_is_help=True)
console = Console()


def detail_json(detail: SubscriberDetail) -> dict[str, object]:
    """What `show --json` prints: the API's shape (GET /api/admin/subscribers/{id})."""
    return {
        "id": detail.id, "email": detail.email, "name": detail.name, "status": detail.status, "timezone": detail.timezone,
        "created_at": detail.created_at.isoformat(),
        "confirmed_at": detail.confirmed_at.isoformat() if detail.confirmed_at else None,
        "unsubscribed_at": detail.unsubscribed_at.isoformat() if detail.unsubscribed_at else None,
        "tags": list(detail.tags),
        "enrollments": [
            {"course": e.course_slug, "course_title": e.course_title, "status": e.status, "lessons_sent": e.lessons_sent,
             "lesson_count": e.lesson_count, "send_time": e.send_time,
             "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None}
            for e in detail.enrollments
        ],
        "events": [
            {"at": e.at.isoformat(), "kind": e.kind, "summary": e.summary, "actor": e.actor, "detail": e.detail}
            for e in detail.timeline
        ],
    }  # fmt: skip


@subscribers_app.command("show")
@clear_errors
def show_command(
    email: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (the API's shape) instead of tables")] = False,
) -> None:
    """Profile, status, tags, enrollments with progress, and every event in time order."""
    with transaction(get_settings()) as session:
        subscriber_id = find_by_email(session, email)
        detail = subscriber_detail(session, subscriber_id) if subscriber_id is not None else None
    if detail is None:
        raise CommandError(f"no subscriber with the address {email.strip()!r}")
    if as_json:
        typer.echo(json.dumps(detail_json(detail), indent=2, ensure_ascii=False))
        return
    console.print(f"[bold]{escape(detail.email)}[/bold] {escape(detail.name)}  status {detail.status}  zone {detail.timezone}")
    console.print(f"signed up {detail.created_at:%Y-%m-%d %H:%M} UTC  tags: {escape(', '.join(detail.tags)) or 'none'}")
    courses = Table("course", "status", "sent", "next lesson")
    for e in detail.enrollments:
        courses.add_row(escape(e.course_slug), e.status, f"{e.lessons_sent}/{e.lesson_count}", e.next_due_local or "-")
    console.print(courses)
    timeline = Table("when (UTC)", "what", "by", "SMTP answer")
    for entry in detail.timeline:
        timeline.add_row(
            f"{entry.at:%Y-%m-%d %H:%M}", escape(entry.summary), escape(entry.actor or ""), escape(str(entry.detail.get("smtp_answer", "")))
        )
    console.print(timeline)
