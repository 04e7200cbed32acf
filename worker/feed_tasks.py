"""The feed poll run by beat: a thin shell around course.audience.course_content.poll_course_feed.
Each course is polled in its own transaction, so one broken feed neither stops the others nor loses
what they brought."""

from __future__ import annotations

import logging
from functools import partial

from course.audience.course_content import feed_courses, poll_course_feed
from course.clock import get_clock
from course.content.article import ArticleError
from course.content.course_feeds import fetch_feed
from course.content.definition import CourseDefinitionError
from course.content.feeds import FeedError
from course.content.guides import GuideCatalogueError
from course.content.importer import guide_catalogue
from course.db import session_factory
from course.models import Course
from course.settings import get_settings
from worker.app import app

log = logging.getLogger(__name__)


@app.task(name="course.poll_feeds", ignore_result=True)
def poll_feeds() -> dict[str, int]:
    """Every feed course's new entries, appended as lessons; returns lessons added per course slug."""
    settings = get_settings()
    sessions = session_factory(settings)
    with sessions() as session:
        course_ids = [course.id for course in feed_courses(session)]
    added: dict[str, int] = {}
    for course_id in course_ids:
        try:
            with sessions.begin() as session:
                course = session.get(Course, course_id)
                if course is None or not course.feed_url:
                    continue
                polled = poll_course_feed(
                    session, course, catalogue=guide_catalogue(settings.content_dir), now=get_clock(settings).now(),
                    fetch=partial(fetch_feed, allow_private=settings.feed_allow_private_hosts),
                )
        except (FeedError, ArticleError, CourseDefinitionError, GuideCatalogueError) as exc:
            # Logged and left for the next poll: the course keeps what it has.
            log.warning("feed of course %d not polled: %s", course_id, exc)
            continue
        added[polled.slug] = polled.lessons_added
        if polled.articles_added:
            log.info("course %s: %d new feed entries, %d lessons", polled.slug, polled.articles_added, polled.lessons_added)
    return added
