"""The courses in the admin: each course with its language, lessons, schedule, readers (enrolled,
active, finished, paused) and the next sends due, its public page and the two snippets that embed its
signup form elsewhere (a frame, or a plain HTML form); and a page per course with its settings,
lessons and funnel. Readers never see these: the public course page is for readers only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import escape
from sqlalchemy.orm import Session

from course.audience.course_content import preview_import
from course.audience.course_stats import CourseReaders, Funnel, NextSend, course_funnel, course_readers, next_sends
from course.content.article import ArticleError
from course.content.catalogue import find_course, list_courses, live_lessons
from course.content.definition import CourseDefinitionError
from course.content.guides import GuideCatalogueError
from course.delivery.compose import Composer
from course.delivery.lesson_preview import LessonPreview, LessonTestError, preview_lesson, send_lesson_test
from course.content.uploaded import course_articles
from course.models import AdminRole, Course, CourseArticle, Lesson
from course.delivery.render import course_language
from course.content.definition import WEEKDAY_NAMES as WEEKDAY_NAMES_TOML
from course.i18n import SUPPORTED_LANGUAGES, translate
from course.web.admin.auth import Actor, AdminPageError, EditorPage, SiteDep, ViewerPage, check_csrf
from course.web.admin.views import admin_page, see_other
from course.web.security import EMAIL_VIEW_CSP
from course.web.site import Site

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class EmbeddableCourse:
    title: str
    slug: str
    language: str
    lesson_count: int
    page_url: str
    frame_snippet: str
    form_snippet: str
    schedule: str
    readers: CourseReaders
    next_sends: list[NextSend]


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def schedule_words(days_between_lessons: int, send_time: str, weekdays: frozenset[int]) -> str:
    """A course's cadence in words: "Every 2 days at 09:00, Mon–Fri"."""
    every = "Every day" if days_between_lessons == 1 else f"Every {days_between_lessons} days"
    if weekdays == frozenset(range(7)):
        days = "any day of the week"
    elif weekdays == frozenset(range(5)):
        days = "Mon–Fri"
    else:
        days = ", ".join(WEEKDAY_NAMES[day] for day in sorted(weekdays))
    return f"{every} at {send_time}, {days} (each reader's own time zone)"


def schedule_of(course: Course) -> str:
    return schedule_words(course.days_between_lessons, course.send_time.strftime("%H:%M"), course.weekdays)


def frame_snippet(base_url: str, slug: str, title: str, language: str) -> str:
    """An iframe of the course's embeddable form (which fills in the reader's time zone)."""
    label = escape(translate(language, "Sign up for %(title)s", title=title))
    return (
        f'<iframe src="{base_url}/courses/{slug}/embed" title="{label}" width="100%" height="520" '
        'style="border:0;max-width:440px" loading="lazy"></iframe>'
    )


def form_snippet(base_url: str, slug: str, title: str, language: str) -> str:
    """A plain HTML form posting to the course's signup endpoint, its words in the course's language."""
    return "\n".join(
        (
            f'<form action="{base_url}/courses/{slug}/subscribe" method="post" accept-charset="utf-8">',
            f'  <label>{escape(translate(language, "Email address"))} <input type="email" name="email" required></label>',
            f'  <label>{escape(translate(language, "First name"))} <input type="text" name="name"></label>',
            f'  <!-- {escape(translate(language, "An IANA time zone such as Europe/Berlin; empty means UTC. Readers can change it later."))} -->',
            '  <input type="hidden" name="timezone" value="">',
            f'  <button type="submit">{escape(translate(language, "Start %(title)s", title=title))}</button>',
            "</form>",
        )
    )


@router.get("/admin/courses", response_class=HTMLResponse)
def course_list(request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    base_url = site.settings.base_url.rstrip("/")
    with site.sessions.begin() as session:
        listings = list_courses(session)
        readers = course_readers(session, [listing.course.id for listing in listings])
        courses = [
            EmbeddableCourse(
                title=listing.course.title,
                slug=listing.course.slug,
                language=course_language(listing.course),
                lesson_count=listing.lesson_count,
                page_url=f"{base_url}/courses/{listing.course.slug}",
                frame_snippet=frame_snippet(base_url, listing.course.slug, listing.course.title, course_language(listing.course)),
                form_snippet=form_snippet(base_url, listing.course.slug, listing.course.title, course_language(listing.course)),
                schedule=schedule_of(listing.course),
                readers=readers[listing.course.id],
                next_sends=next_sends(session, listing.course.id, limit=3),
            )
            for listing in listings
        ]
    return admin_page(site, request, "courses.html", actor=actor, courses=courses, can_edit=actor.may(AdminRole.EDITOR))


@dataclass(frozen=True)
class CoursePage:
    course: Course
    language: str
    schedule: str
    page_url: str
    lessons: list[Lesson]
    readers: CourseReaders
    next_sends: list[NextSend]
    funnel: Funnel
    articles: list[CourseArticle]  # an admin course's sources, newest feed entries last


def read_course_page(site_base_url: str, session: Session, slug: str) -> CoursePage | None:
    course = find_course(session, slug)
    if course is None:
        return None
    readers = course_readers(session, [course.id])[course.id]
    return CoursePage(
        course=course,
        language=course_language(course),
        schedule=schedule_of(course),
        page_url=f"{site_base_url}/courses/{course.slug}",
        lessons=live_lessons(session, course),
        readers=readers,
        next_sends=next_sends(session, course.id),
        funnel=course_funnel(session, course.id, readers=readers),  # the readers' GROUP BY once
        articles=course_articles(session, course.id),
    )


def no_such_course(slug: str) -> AdminPageError:
    return AdminPageError(404, "No such course", f"There is no course {slug[:100]!r}. The courses page lists them all.")


@router.get("/admin/courses/{slug}", response_class=HTMLResponse)
def course_page(
    slug: str, request: Request, site: SiteDep, actor: ViewerPage, published: str = "", saved: str = "", added: int | None = None
) -> HTMLResponse:
    with site.sessions.begin() as session:
        page = read_course_page(site.settings.base_url.rstrip("/"), session, slug)
        if page is None:
            raise no_such_course(slug)
        return admin_page(
            site, request, "course.html", actor=actor, page=page, chart=funnel_chart(page.funnel),
            published=bool(published), saved=bool(saved), added=added, can_edit=actor.may(AdminRole.EDITOR),
            can_delete=actor.may(AdminRole.OWNER), weekday_names=WEEKDAY_NAMES_TOML, languages=SUPPORTED_LANGUAGES,
        )  # fmt: skip


@dataclass(frozen=True)
class ChartBar:
    label: str
    value: int
    y: int  # top of the row: its label, then its bar below
    width: int


@dataclass(frozen=True)
class FunnelChart:
    """A horizontal bar chart of the funnel's rows, drawn on the server as SVG (no script, no
    style attribute: the CSP is unchanged). Each row is a label with its bar and number below."""

    bars: list[ChartBar]
    height: int
    plot_width: int
    bar_height: int
    label_height: int


def funnel_chart(funnel: Funnel, *, plot_width: int = 360, bar_height: int = 14, label_height: int = 16, gap: int = 8) -> FunnelChart:
    """Bar lengths relative to the largest step (the enrolled count), leaving room for the number."""
    rows = funnel.rows()
    widest = max((value for _, _, value in rows), default=0) or 1
    row_height = label_height + bar_height + gap
    bars = [
        ChartBar(_shorten(label, 52), value, index * row_height, round(value / widest * (plot_width - 50)))
        for index, (_, label, value) in enumerate(rows)
    ]
    return FunnelChart(bars=bars, height=len(bars) * row_height, plot_width=plot_width, bar_height=bar_height, label_height=label_height)


def _shorten(label: str, most: int) -> str:
    return label if len(label) <= most else label[: most - 1].rstrip() + "…"


# --- a lesson as the email it is --------------------------------------------------------------

TextField = Annotated[str, Form()]


def _lesson(session: Session, slug: str, position: int) -> Lesson:
    course = find_course(session, slug)
    if course is None:
        raise no_such_course(slug)
    lesson = next((lesson for lesson in live_lessons(session, course) if lesson.position == position), None)
    if lesson is None:
        raise AdminPageError(404, "No such lesson", f"{course.title} has no lesson {position}. Its page lists them all.")
    return lesson


def _preview(site: Site, slug: str, position: int, subscriber: str) -> tuple[Lesson, str, LessonPreview]:
    """The lesson, its course's title, and the lesson composed for `subscriber`."""
    with site.sessions.begin() as session:
        lesson = _lesson(session, slug, position)
        course_title = lesson.course.title
        preview = preview_lesson(session, Composer.from_settings(site.settings, renderer=site.renderer), lesson, subscriber[:320])
        session.expunge_all()
    return lesson, course_title, preview


def _lesson_page(
    site: Site, request: Request, actor: Actor, slug: str, position: int, subscriber: str, *,
    status: int = 200, test_sent: str = "", test_error: str = "", test_address: str = "",
) -> HTMLResponse:  # fmt: skip
    lesson, course_title, preview = _preview(site, slug, position, subscriber)
    shown_as = preview.reader.email if preview.reader is not None else ""
    return admin_page(
        site, request, "lesson.html", actor=actor, status=status, slug=slug, lesson=lesson, preview=preview,
        course_title=course_title, subscriber=shown_as,
        frame_query=urlencode({"subscriber": shown_as}), can_edit=actor.may(AdminRole.EDITOR),
        test_sent=test_sent, test_error=test_error, test_address=test_address or (actor.admin.email if actor.admin else ""),
    )  # fmt: skip


@router.get("/admin/courses/{slug}/lessons/{position}", response_class=HTMLResponse)
def lesson_page(
    slug: str, position: int, request: Request, site: SiteDep, actor: ViewerPage, subscriber: str = "", sent: str = ""
) -> HTMLResponse:
    """The lesson as the chosen reader gets it: the HTML part in frames 600 and 375 px wide, and the text part."""
    return _lesson_page(site, request, actor, slug, position, subscriber, test_sent=sent[:320])


@router.get("/admin/courses/{slug}/lessons/{position}/preview.html", response_class=HTMLResponse)
def lesson_preview_html(slug: str, position: int, site: SiteDep, actor: ViewerPage, subscriber: str = "") -> HTMLResponse:
    """The lesson's HTML part alone, for the lesson page's frames: its own CSP, like the public
    view-in-browser page (inline styles, remote images, no script), framable by our pages only."""
    _, _, preview = _preview(site, slug, position, subscriber)
    return HTMLResponse(
        preview.composed.email.html,
        headers={
            "content-security-policy": EMAIL_VIEW_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'"),
            "x-frame-options": "SAMEORIGIN",
            "cache-control": "no-store",
        },
    )


@router.post("/admin/courses/{slug}/lessons/{position}/test")
def lesson_test(
    slug: str, position: int, request: Request, site: SiteDep, actor: EditorPage,
    test_address: TextField = "", preview_as: TextField = "", csrf_token: TextField = "",
) -> Response:  # fmt: skip
    """"Send me this lesson": through the ledger ahead of bulk mail, in no count; back to the lesson."""
    check_csrf(site, request, csrf_token)
    try:
        with site.sessions.begin() as session:
            send_lesson_test(session, _lesson(session, slug, position), address=test_address[:320], preview_as=preview_as[:320], now=site.now())
    except LessonTestError as exc:
        return _lesson_page(
            site, request, actor, slug, position, preview_as, status=422,
            test_error=str(exc)[:1].upper() + str(exc)[1:] + ".", test_address=test_address[:320],
        )  # fmt: skip
    query = urlencode({"subscriber": preview_as[:320], "sent": test_address.strip()[:320]})
    return see_other(f"/admin/courses/{slug}/lessons/{position}?{query}")


@router.get("/admin/courses/{slug}/import-preview", response_class=HTMLResponse)
def import_preview(slug: str, request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    """What `course import` would change in a course kept as files, and the readers it touches."""
    try:
        with site.sessions.begin() as session:
            course = find_course(session, slug)
            if course is None:
                raise no_such_course(slug)
            title = course.title
            preview = next((p for p in preview_import(session, site.settings.content_dir) if p.changes.slug == slug), None)
    except (ArticleError, CourseDefinitionError, GuideCatalogueError) as exc:
        raise AdminPageError(422, "The content cannot be imported", str(exc)) from None
    return admin_page(site, request, "import_preview.html", actor=actor, slug=slug, course_title=title, preview=preview)
