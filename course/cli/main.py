"""The `course` command: set up, import content, split articles, subscribe, watch, and run the
workers. Bad input (the project's own error types, course/cli/errors.py) ends in one clear error line
and a non-zero exit; a bug keeps its traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from course.audience.enrollment import accepted_name, enroll, get_or_create_subscriber
from course.audience.events import record_event
from course.cli.errors import CommandError, clear_errors, err_console
from course.clock import get_clock
from course.content import DEFAULT_TARGET_WORDS
from course.db import transaction
from course.models import SUPPRESSED_SUBSCRIBER_STATUSES, Course, Delivery, DeliveryState, Enrollment, Subscriber, SubscriberEventKind, SubscriberStatus
from course.settings import get_settings, refuse_unsafe

app = typer.Typer(help="Email courses: articles become drip lessons sent by Celery workers.", no_args_is_help=True)
console = Console(soft_wrap=True)


def _migrate_and_import(content_dir: Path) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from course import schema
    from course.audience.course_content import import_content

    schema.upgrade()
    settings = get_settings()
    labels = {"plan": "reading and splitting courses", "import": "writing courses"}
    bar = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    # Transient and only on a terminal: logs and error output stay one clean line each.
    with Progress(*bar, console=err_console, transient=True, disable=not err_console.is_terminal) as progress:
        tasks = {stage: progress.add_task(label, total=None) for stage, label in labels.items()}

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(tasks[stage], completed=done, total=total)

        with transaction(settings) as session:
            return import_content(session, content_dir, now=get_clock(settings).now(), on_progress=on_progress)


def _print_imports(results: list[Any]) -> None:
    for result in results:
        state = "created" if result.created else ("updated" if result.changed else "unchanged")
        console.print(
            f"{result.slug}: {state} (lessons: {result.lessons_added} added, {result.lessons_updated} updated, "
            f"{result.lessons_retired} retired, {result.lessons_unchanged} unchanged)"
        )
        for text in result.unmatched_references:
            err_console.print(f"[yellow]warning:[/yellow] {result.slug}: no guide matches the reference {text!r}")


@app.command()
@clear_errors
def init() -> None:
    """Create or migrate the database schema and import content/."""
    _print_imports(_migrate_and_import(get_settings().content_dir))


@app.command("import")
@clear_errors
def import_(directory: Annotated[Path | None, typer.Argument(help="content folder (default: content/)")] = None) -> None:
    """Load courses, articles and guides into the database (idempotent)."""
    content_dir = directory or get_settings().content_dir
    if not content_dir.is_dir():
        raise CommandError(f"no content folder at {content_dir}")
    _print_imports(_migrate_and_import(content_dir))


@app.command("import-feed")
@clear_errors
def import_feed(
    source: Annotated[str, typer.Argument(help="the feed's http(s) URL or a file")],
    course: Annotated[str, typer.Option("--course", help="slug of the course the entries join")],
    directory: Annotated[Path | None, typer.Option("--content", help="content folder (default: content/)")] = None,
) -> None:
    """Add a feed's new entries (RSS or Atom) to a course as articles, then import (idempotent: an
    entry already imported is skipped, by its id)."""
    from course.content.definition import load_course_definitions
    from course.content.feeds import load_feed_record, parse_feed, plan_feed_import, read_feed_source, write_feed_import

    content_dir = directory or get_settings().content_dir
    if not content_dir.is_dir():
        raise CommandError(f"no content folder at {content_dir}")
    slugs = [definition.slug for definition in load_course_definitions(content_dir)]
    if course not in slugs:
        raise CommandError(f"unknown course {course!r}; courses in {content_dir}: {', '.join(slugs) or 'none'}")
    known = load_feed_record(content_dir, course)
    planned = plan_feed_import(parse_feed(read_feed_source(source), source), course, known, source)
    write_feed_import(content_dir, course, known, planned)
    for item in planned:
        console.print(f"{course}: added {item.entry.title!r} as {item.record.article}")
    console.print(f"{course}: {len(planned)} new entr{'y' if len(planned) == 1 else 'ies'}, {len(known)} imported before")
    _print_imports(_migrate_and_import(content_dir))


@app.command()
@clear_errors
def split(
    path: Path,
    words: Annotated[int, typer.Option("--words", min=50, help="target words per lesson")] = DEFAULT_TARGET_WORDS,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
    guides: Annotated[Path | None, typer.Option(help="guide catalogue (default: content/guides.toml)")] = None,
    language: Annotated[
        str | None, typer.Option(help="the article's language (default: declared in the article, else detected)")
    ] = None,
) -> None:
    """Show how an article splits into lessons: each lesson's title, blocks (kind, heading level) and
    guide links."""
    # The splitter (sentence segmentation, readability, markdown) loads here, for this command only.
    from course.content.article import load_article
    from course.content.blocks import block_to_dict, inline_texts
    from course.content.guides import find_references, load_guides
    from course.content.language import article_language
    from course.content.split import split_article

    article = load_article(path)
    catalogue_path = guides or get_settings().content_dir / "guides.toml"
    catalogue = load_guides(catalogue_path) if catalogue_path.exists() else None
    language = language or article_language(article)
    lessons = split_article(article, words, language=language)
    plan = {
        "title": article.title,
        "language": language,
        "lessons": [
            {
                "title": lesson.title,
                "words": round(lesson.length),  # reading time in words (CJK characters converted)
                "minutes": lesson.reading_minutes,
                # The heading the lesson is titled by is marked: the email leaves it out of the body.
                "blocks": [
                    block_to_dict(block) | ({"title": True} if index == lesson.title_heading else {})
                    for index, block in enumerate(lesson.body)
                ],
                "references": [
                    {"text": ref.text, "guide": ref.guide.key if ref.guide else None}
                    for text in inline_texts(lesson.body)
                    for ref in (find_references(text, catalogue) if catalogue else [])
                ],
            }
            for lesson in lessons
        ],
    }
    if as_json:
        sys.stdout.write(json.dumps(plan, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table(title=f"{article.title} ({language})")
    table.add_column("#", justify="right")
    table.add_column("lesson")
    table.add_column("words", justify="right")
    table.add_column("min", justify="right")
    table.add_column("blocks")
    table.add_column("guide links")
    for number, (lesson, planned) in enumerate(zip(lessons, plan["lessons"], strict=True), start=1):
        links = ", ".join(ref["guide"] or f"unmatched: {ref['text']}" for ref in planned["references"])
        kinds = " ".join(
            f"h{block['level']}" if block["kind"] == "heading" else block["kind"] for block in planned["blocks"]
        )
        table.add_row(str(number), lesson.title, str(round(lesson.length)), str(lesson.reading_minutes), kinds, links)
    console.print(table)


@app.command()
@clear_errors
def subscribe(
    email: str,
    course: Annotated[str, typer.Option("--course", help="course slug")],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin")] = "UTC",
    name: Annotated[str, typer.Option(help="first name")] = "",
) -> None:
    """Subscribe an address to a course (confirmed; the web form does double opt-in)."""
    settings = get_settings()
    now = get_clock(settings).now()
    with transaction(settings) as session:
        found = session.scalars(select(Course).where(Course.slug == course)).first()
        if found is None:
            known = ", ".join(session.scalars(select(Course.slug).order_by(Course.slug))) or "none imported yet"
            raise CommandError(f"unknown course {course!r} (known: {known})")
        subscriber = get_or_create_subscriber(
            session, email, name=accepted_name(name), timezone_name=tz, now=now, language=found.language, source="cli"
        )
        if subscriber.status in SUPPRESSED_SUBSCRIBER_STATUSES:
            why = "bounced permanently" if subscriber.status == SubscriberStatus.BOUNCED else "complained of our mail as spam"
            raise CommandError(f"{subscriber.email} {why} and is suppressed; not subscribing it")
        if subscriber.status != SubscriberStatus.ACTIVE:
            # An operator subscribing an address by hand is its consent: a former unsubscriber or
            # a pending sign-up becomes active again (their earlier lessons are still not resent).
            subscriber.status = SubscriberStatus.ACTIVE
            subscriber.unsubscribed_at = None
            subscriber.confirmed_at = subscriber.confirmed_at or now
        enrollment = enroll(session, subscriber, found, now=now)
        record_event(session, subscriber.id, SubscriberEventKind.ENROLLED, now=now, detail={"course_id": found.id, "source": "cli"})
        scheduled = session.scalar(
            select(func.count()).where(Delivery.enrollment_id == enrollment.id, Delivery.state == DeliveryState.PENDING)
        )
    console.print(f"{subscriber.email} enrolled in {course}: {scheduled} lessons scheduled, the first one now")


@app.command()
@clear_errors
def status() -> None:
    """Deliveries per state, enrollments per course, and what is due next."""
    settings = get_settings()
    with transaction(settings) as session:
        states = dict(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
        next_due = session.scalar(select(func.min(Delivery.due_at)).where(Delivery.state == DeliveryState.PENDING))
        courses = session.execute(
            select(Course.slug, Enrollment.status, func.count())
            .join(Enrollment, Enrollment.course_id == Course.id)
            .group_by(Course.slug, Enrollment.status)
            .order_by(Course.slug)
        ).all()
        subscribers = session.scalar(select(func.count()).select_from(Subscriber))
    table = Table(title="deliveries")
    table.add_column("state")
    table.add_column("count", justify="right")
    for state in DeliveryState:
        table.add_row(state.value, str(states.get(state.value, 0)))
    console.print(table)
    console.print(f"subscribers: {subscribers}")
    for slug, enrollment_status, count in courses:
        console.print(f"course {slug}: {count} {enrollment_status}")
    console.print(f"next due: {next_due.isoformat() if next_due else 'nothing pending'}")
    from course.cli.ops import print_heartbeats

    print_heartbeats()


@app.command()
@clear_errors
def worker(
    concurrency: Annotated[int, typer.Option(help="send processes (default: number of cores)")] = 0,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo")] = "prefork",
    queues: Annotated[str, typer.Option(help="queues to consume")] = "priority,dispatch,bulk",
    beat: Annotated[bool, typer.Option("--beat", help="also run the dispatcher schedule in this process")] = False,
    loglevel: str = "INFO",
) -> None:
    """Run a Celery worker (sends mail; scale out by running more of these)."""
    from course.cli.ops import prepare_worker_metrics

    prepare_worker_metrics()  # before Celery (and prometheus_client) are imported
    from worker.app import app as celery_app

    refuse_unsafe(get_settings())

    argv = ["worker", f"--loglevel={loglevel}", f"--pool={pool}", f"--queues={queues}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if beat:
        argv.append("--beat")
    celery_app.worker_main(argv)


@app.command()
@clear_errors
def beat(loglevel: str = "INFO") -> None:
    """Run Celery beat: it starts the dispatcher every few seconds. Run exactly one."""
    from worker.app import app as celery_app

    refuse_unsafe(get_settings())

    celery_app.start(["beat", f"--loglevel={loglevel}"])


@app.command()
@clear_errors
def web(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request (off: the proxy in front logs them)")] = False,
) -> None:
    """Serve the signup, confirmation, preference and unsubscribe pages (and the JSON API)."""
    from course.web.server import serve

    settings = get_settings()
    refuse_unsafe(settings)  # create_app checks again; this way the refusal is one clean line
    serve(host=host, port=port, workers=workers, access_log=access_log, settings=settings)


@app.command()
@clear_errors
def run(
    day_seconds: Annotated[float, typer.Option(min=0.5, help="length of a course day in seconds (86400: real time)")] = 86400,
    demo: Annotated[bool, typer.Option(help="enroll three demo subscribers and show their progress")] = True,
    course_slug: Annotated[str | None, typer.Option("--course", help="course for the demo subscribers")] = None,
    host: Annotated[str, typer.Option(help="web address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="web port")] = 8000,
    mail_sink: Annotated[bool, typer.Option(help="run the local SMTP sink that stores mail under var/mail/")] = True,
    until_done: Annotated[bool, typer.Option(help="exit once the demo course is delivered")] = False,
    timeout: Annotated[float, typer.Option(help="with --until-done: give up after this many seconds")] = 600,
    fresh: Annotated[bool, typer.Option(help="start afresh: remove the embedded database, broker, mail and demo clock under var/")] = False,
) -> None:
    """Run everything on this machine: database, broker, worker with beat, web app, mail sink."""
    from course.cli.local_stack import RunOptions, run_local_stack

    options = RunOptions(
        day_seconds=day_seconds, demo=demo, host=host, port=port, mail_sink=mail_sink,
        until_done=until_done, timeout_seconds=timeout, fresh=fresh,
    )  # fmt: skip
    status_code = run_local_stack(options, console=console, course_slug=course_slug)
    raise typer.Exit(status_code)


def _register_bench_and_campaigns() -> None:
    from course.cli.campaigns import campaign_app, tag_command
    from course.cli.config_check import check_config_command
    from course.devtools.bench.command import bench_command

    app.command("check-config")(check_config_command)
    app.command("bench")(bench_command)
    app.add_typer(campaign_app, name="campaign", help="Schedule and list newsletter campaigns.")
    app.command("tag")(tag_command)
    from course.cli.ops import audit_command, health_command, metrics_command, retry_failed_command

    app.command("audit")(clear_errors(audit_command))
    app.command("health")(health_command)
    app.command("metrics")(metrics_command)
    app.command("retry-failed")(clear_errors(retry_failed_command))
    from course.cli.providers import providers_command

    app.command("providers")(clear_errors(providers_command))


_register_bench_and_campaigns()


def _register_admin() -> None:
    from course.cli.admin import admin_app

    app.add_typer(admin_app, name="admin", help="Web admin accounts.")


_register_admin()


def _register_subscribers() -> None:
    """One `course subscribers` group: show (with the timeline), import, export, erase."""
    from course.cli.subscriber_data import register
    from course.cli.subscribers import subscribers_app

    register(subscribers_app)
    app.add_typer(subscribers_app, name="subscribers", help="Subscribers: show one with their timeline, import and export CSV, erase (GDPR).")


_register_subscribers()


def _register_bounces() -> None:
    from course.cli.bounces import bounces_app

    app.add_typer(bounces_app, name="bounces", help="Bounces and complaints that come back by mail.")


_register_bounces()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # python -m course.cli.main
    app()
