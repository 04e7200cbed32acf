"""The courses as a publisher puts them on their own site: each imported course with its public
page and the two snippets that embed its signup form elsewhere (a frame, or a plain HTML form).
Readers never see these: they were on the public course page, which is for readers only."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import escape

from course.content.catalogue import list_courses
from course.delivery.render import course_language
from course.i18n import translate
from course.web.admin.auth import SiteDep, ViewerPage
from course.web.admin.views import admin_page

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
        courses = [
            EmbeddableCourse(
                title=listing.course.title,
                slug=listing.course.slug,
                language=course_language(listing.course),
                lesson_count=listing.lesson_count,
                page_url=f"{base_url}/courses/{listing.course.slug}",
                frame_snippet=frame_snippet(base_url, listing.course.slug, listing.course.title, course_language(listing.course)),
                form_snippet=form_snippet(base_url, listing.course.slug, listing.course.title, course_language(listing.course)),
            )
            for listing in list_courses(session)
        ]
    return admin_page(site, request, "courses.html", actor=actor, courses=courses)
