"""`course campaign …` and `course tag …`: thin shells over course.campaigns, registered by
course/cli/main.py. They parse the command line, call the campaign service in one transaction, and
print; the project's errors end in one `error:` line (course/cli/errors.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from course.campaigns.refusals import InputRefused
from course.cli.errors import CommandError, clear_errors
from course.clock import get_clock
from course.db import transaction
from course.models import UNSETTLED_DELIVERY_STATES, DeliveryState
from course.settings import get_settings

campaign_app = typer.Typer(help="Newsletters: schedule one for a tag, list them, cancel one.", no_args_is_help=True)


def parse_moment(raw: str) -> datetime:
    """An --at value: ISO 8601 with a UTC offset (a time without one would be ambiguous)."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InputRefused(f"--at {raw!r} is not an ISO 8601 time such as 2026-03-05T09:00+01:00") from exc
    if moment.tzinfo is None:
        raise InputRefused(f"--at {raw!r} has no UTC offset: add one, e.g. {raw}+00:00")
    return moment


def _read_body(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the newsletter body {str(path)!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(f"the newsletter body {str(path)!r} is not UTF-8 text") from exc


@campaign_app.command("schedule")
@clear_errors
def schedule_command(
    name: Annotated[str, typer.Option("--name", help="internal name")],
    subject: Annotated[str, typer.Option("--subject", help="subject line")],
    body: Annotated[Path, typer.Option("--body", help="Markdown file with the newsletter body")],
    tag: Annotated[str | None, typer.Option("--tag", help="send to active subscribers with this tag (default: all)")] = None,
    at: Annotated[str | None, typer.Option("--at", help="send time, ISO 8601 with offset (default: now)")] = None,
    sender_name: Annotated[str, typer.Option("--from-name", help="sender name")] = "Newsletter",
    sender_email: Annotated[str, typer.Option("--from", help="sender address")] = "newsletter@example.org",
) -> None:
    """Schedule a newsletter (a draft scheduled at once, as the admin does it); the workers fan it
    out and send it when its time comes."""
    from course.campaigns.service import schedule_campaign  # here: it loads the newsletter composer

    settings = get_settings()
    now = get_clock(settings).now()
    body_markdown = _read_body(body)
    send_at = parse_moment(at) if at else None
    with transaction(settings) as session:
        campaign = schedule_campaign(
            session,
            name=name,
            subject=subject,
            body_markdown=body_markdown,
            segment_tag=tag,
            sender_name=sender_name,
            sender_email=sender_email,
            send_at=send_at,
            now=now,
        )
        campaign_id, scheduled_for = campaign.id, campaign.send_at
    if send_at is not None:  # said in the offset it was given in
        scheduled_for = scheduled_for.astimezone(send_at.tzinfo)
    typer.echo(f"campaign {campaign_id} scheduled for {scheduled_for.isoformat()}")


@campaign_app.command("list")
@clear_errors
def list_command() -> None:
    """Campaigns with their status and delivery counts."""
    from course.campaigns.service import audience_of, campaign_counts

    with transaction() as session:
        rows = campaign_counts(session)
        table = Table(title="campaigns")
        # At 80 columns rich shrinks the widest columns first: the name and audience give way
        # (ellipsis), never the id, the status, the counts or the send time.
        for column in ("id", "name", "audience", "status", "send at (UTC)", "pending", "sent", "failed", "cancelled"):
            counts = column in {"id", "pending", "sent", "failed", "cancelled"}
            shrinks = column in {"name", "audience"}
            table.add_column(
                column, justify="right" if counts else "left", no_wrap=not shrinks, overflow="ellipsis" if shrinks else "fold",
                min_width=len(column) if not shrinks else 4,
            )
        for campaign, counts in rows:
            waiting = sum(counts.get(state, 0) for state in UNSETTLED_DELIVERY_STATES)
            failed = counts.get(DeliveryState.FAILED, 0) + counts.get(DeliveryState.BOUNCED, 0)
            table.add_row(
                str(campaign.id),
                campaign.name,
                audience_of(campaign).summary(),
                campaign.status,
                campaign.send_at.strftime("%Y-%m-%d %H:%M") if campaign.send_at else "",
                str(waiting),
                str(counts.get(DeliveryState.SENT, 0)),
                str(failed),
                str(counts.get(DeliveryState.CANCELLED, 0)),
            )
    Console(soft_wrap=True).print(table)


@campaign_app.command("cancel")
@clear_errors
def cancel_command(campaign_id: Annotated[int, typer.Argument(help="the campaign's id (see `course campaign list`)")]) -> None:
    """Stop a campaign before it is done: its unsent rows are cancelled."""
    from course.campaigns.service import cancel

    with transaction() as session:
        cancelled = cancel(session, campaign_id)
    typer.echo(f"campaign {campaign_id} cancelled ({cancelled} unsent deliveries cancelled)")


@clear_errors
def tag_command(
    email: Annotated[str, typer.Argument(help="subscriber address")],
    tags: Annotated[list[str], typer.Argument(help="one or more tags")],
) -> None:
    """Tag a subscriber (campaigns are sent to a tag)."""
    from course.campaigns.service import tag_subscribers

    with transaction() as session:
        now_tagged = tag_subscribers(session, email, tags)
    typer.echo(f"{email}: {', '.join(now_tagged)}")
