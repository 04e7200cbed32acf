"""Create a course in the admin from an uploaded article: the split plan is shown before anything
is saved (lessons, titles, blocks, guide links found and references that matched no guide), the
target words can be changed and the plan shown again, then the course is published. The same
reading, splitting and import code as `course import` (course.content.uploaded). Editors create.

The uploaded article travels with the form after the first upload (a hidden field), so changing the
target or a setting re-plans without choosing the file again, and a refused form loses nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from course.campaigns.service import parse_senders
from course.content.article import ArticleError
from course.content.definition import WEEKDAY_NAMES, CourseDefinitionError
from course.content.course_feeds import FeedAnswer, fetch_feed, new_entry_articles
from course.content.feeds import FeedError
from course.content.guides import GuideCatalogueError
from course.content.importer import guide_catalogue
from course.audience.course_content import add_article
from course.content.catalogue import find_course, live_lessons
from course.content.uploaded import (
    UploadedArticle,
    SETTING_KEYS,
    change_settings,
    definition_from_form,
    delete_course,
    plan_appended,
    plan_summary,
    plan_uploads,
    publish_course,
    read_upload,
)
from course.models import Course
from course.web.admin.courses import no_such_course
from course.i18n import SUPPORTED_LANGUAGES
from course.web.admin.auth import Actor, AdminPageError, EditorPage, OwnerPage, SiteDep, check_csrf
from course.web.admin.views import admin_page, see_other
from course.web.site import Site

router = APIRouter(include_in_schema=False)
TextField = Annotated[str, Form()]

# The form's fields and their defaults (all text, as posted).
DEFAULTS = {
    "title": "", "slug": "", "description": "", "sender_name": "", "sender_email": "",
    "days_between_lessons": "1", "send_time": "09:00", "language": "en", "target_words": "300",
    "article_name": "", "article_text": "", "feed_url": "",
}  # fmt: skip


def feed_articles(url: str, *, allow_private: bool = False) -> tuple[list[UploadedArticle], FeedAnswer]:
    """A blog feed's entries as articles, oldest first (FeedError when it has none or cannot be read)."""
    answer = fetch_feed(url, allow_private=allow_private)
    uploads = new_entry_articles(answer.data or b"", url, "feed", set())
    if not uploads:
        raise FeedError(f"{url}: the feed has no entries yet")
    return uploads, answer


def _page(
    site: Site, request: Request, actor: Actor, form: dict[str, str], weekdays: list[str], *,
    plan: dict[str, Any] | None = None, error: str = "", status: int = 200,
) -> HTMLResponse:  # fmt: skip
    return admin_page(
        site, request, "course_new.html", actor=actor, status=status, form=form, weekdays=weekdays,
        weekday_names=WEEKDAY_NAMES, languages=SUPPORTED_LANGUAGES, plan=plan, error=error,
    )  # fmt: skip


@router.get("/admin/courses/new", response_class=HTMLResponse)
def new_course(request: Request, site: SiteDep, actor: EditorPage) -> HTMLResponse:
    form = dict(DEFAULTS)
    senders = parse_senders(site.settings.campaign_senders)
    if senders:
        form["sender_name"], form["sender_email"] = senders[0].name, senders[0].email
    return _page(site, request, actor, form, list(WEEKDAY_NAMES[:5]))


@router.post("/admin/courses/new", response_class=HTMLResponse)
async def new_course_posted(
    request: Request, site: SiteDep, actor: EditorPage, article: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """"Show the plan" re-plans and shows it (nothing saved); "Publish" plans and writes the course."""
    posted = await request.form()
    check_csrf(site, request, str(posted.get("csrf_token", "")))
    form = {key: str(posted.get(key, default))[:200_000 if key == "article_text" else 2000] for key, default in DEFAULTS.items()}
    weekdays = [str(day) for day in posted.getlist("weekdays")]
    publish = posted.get("action") == "publish"
    feed = None
    try:
        if article is not None and article.filename:
            uploads = [read_upload(article.filename, await article.read())]
            form["article_name"], form["article_text"], form["feed_url"] = uploads[0].filename, uploads[0].text, ""
        elif form["article_text"] or not form["feed_url"].strip():
            uploads = [read_upload(form["article_name"], form["article_text"].encode())]
        else:  # a blog's feed: its entries are the articles, fetched again for each plan
            uploads, feed = await run_in_threadpool(
                feed_articles, form["feed_url"].strip(), allow_private=site.settings.feed_allow_private_hosts
            )
        definition = definition_from_form(form, weekdays, uploads[0])
        plan = plan_uploads(definition, uploads, guide_catalogue(site.settings.content_dir))
        if not publish:
            return _page(site, request, actor, form, weekdays, plan=plan_summary(plan))
        with site.sessions.begin() as session:
            publish_course(
                session, plan, uploads, content_dir=site.settings.content_dir, now=site.now(),
                feed_url=form["feed_url"].strip() if feed else "",
                feed_etag=feed.etag if feed else None, feed_last_modified=feed.last_modified if feed else None,
            )  # fmt: skip
    except (ArticleError, CourseDefinitionError, GuideCatalogueError, FeedError) as exc:
        message = str(exc)
        return _page(site, request, actor, form, weekdays, error=message[:1].upper() + message[1:], status=422)
    return see_other(f"/admin/courses/{definition.slug}?published=1")


# --- an admin course after it is published: settings, another article, deletion -------------------


def _admin_course(session: Any, slug: str) -> Course:
    course = find_course(session, slug)
    if course is None:
        raise no_such_course(slug)
    return course


@router.post("/admin/courses/{slug}/settings", response_class=HTMLResponse)
async def settings_posted(slug: str, request: Request, site: SiteDep, actor: EditorPage) -> Response:
    """Title, description, sender, schedule and language of a course made in the admin."""
    posted = await request.form()
    check_csrf(site, request, str(posted.get("csrf_token", "")))
    form = {key: str(posted.get(key, ""))[:2000] for key in SETTING_KEYS}
    weekdays = [str(day) for day in posted.getlist("weekdays")]
    try:
        with site.sessions.begin() as session:
            change_settings(session, _admin_course(session, slug), form, weekdays, now=site.now())
    except CourseDefinitionError as exc:
        message = str(exc)
        raise AdminPageError(422, "Nothing was changed", message[:1].upper() + message[1:] + ".") from None
    return see_other(f"/admin/courses/{slug}?saved=1")


@router.post("/admin/courses/{slug}/articles", response_class=HTMLResponse)
async def article_posted(
    slug: str, request: Request, site: SiteDep, actor: EditorPage, article: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Add an article after the course's lessons: "Show the plan" first (nothing saved), then "Add"."""
    posted = await request.form()
    check_csrf(site, request, str(posted.get("csrf_token", "")))
    carried = {"article_name": str(posted.get("article_name", ""))[:255], "article_text": str(posted.get("article_text", ""))[:200_000]}
    add = posted.get("action") == "add"
    try:
        if article is not None and article.filename:
            upload = read_upload(article.filename, await article.read())
        else:
            upload = read_upload(carried["article_name"], carried["article_text"].encode())
        with site.sessions.begin() as session:
            course = _admin_course(session, slug)
            plan = plan_appended(session, course, upload, guide_catalogue(site.settings.content_dir))
            if add:
                result = add_article(session, course, upload, plan, now=site.now())
                return see_other(f"/admin/courses/{slug}?added={result.lessons_added}")
            lessons_now = len(live_lessons(session, course))
            title = course.title
    except (ArticleError, CourseDefinitionError, GuideCatalogueError) as exc:
        message = str(exc)
        raise AdminPageError(422, "Nothing was added", message[:1].upper() + message[1:] + ".") from None
    summary = plan_summary(plan)
    summary["lessons"] = [lesson for lesson in summary["lessons"] if lesson["position"] > lessons_now]
    return admin_page(
        site, request, "course_article.html", actor=actor, slug=slug, course_title=title, plan=summary,
        article_name=upload.filename, article_text=upload.text,
    )  # fmt: skip


@router.post("/admin/courses/{slug}/delete", response_class=HTMLResponse)
async def delete_posted(slug: str, request: Request, site: SiteDep, actor: OwnerPage) -> Response:
    """An admin course nobody ever enrolled in (a course with readers keeps their history)."""
    posted = await request.form()
    check_csrf(site, request, str(posted.get("csrf_token", "")))
    try:
        with site.sessions.begin() as session:
            delete_course(session, _admin_course(session, slug))
    except CourseDefinitionError as exc:
        message = str(exc)
        raise AdminPageError(409, "Not deleted", message[:1].upper() + message[1:] + ".") from None
    return see_other("/admin/courses")
