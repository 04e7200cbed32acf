"""What a web process keeps from the course catalogue between requests: each course's id and title by
slug (every signup needs them) and the rendered course list, course pages and embed pages.

Courses and lessons change only on `course import`, usually run in another process, so the cache
asks the database for the catalogue's version (course.content.catalogue.catalogue_version: one small
SELECT) at most once every `recheck_seconds`, and drops everything when it changed. An import in
this same process drops it at once (catalogue_changed). Between two checks a page may be up to
`recheck_seconds` old; nothing a reader does depends on a newer one.

Threads: FastAPI runs the page handlers in a thread pool. Entries are whole values swapped in one
assignment, so two threads filling the same key at once render it twice and keep either."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from course.content.catalogue import catalogue_version, find_course, local_generation

# Unknown slugs are not remembered (a scan of made-up addresses must not grow the cache), and
# the pages kept are bounded all the same.
MAX_PAGES = 2_000


@dataclass(frozen=True)
class CourseCard:
    """What a signup needs of a course, safe to share between requests and threads."""

    id: int
    slug: str
    title: str


class CatalogueCache:
    def __init__(self, sessions: sessionmaker[Session], *, recheck_seconds: float) -> None:
        self.sessions = sessions
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._version: tuple[object, ...] | None = None
        self._generation = -1
        self._next_check = 0.0
        self._courses: dict[str, CourseCard] = {}
        self._pages: dict[tuple[str, ...], str] = {}
        self.version_checks = 0  # how often the database was asked (tests read it)

    def _refresh(self) -> None:
        """Drop everything if the catalogue changed since it was cached."""
        now = time.monotonic()
        generation = local_generation()
        if generation == self._generation and now < self._next_check:
            return
        with self._lock:
            if generation == self._generation and now < self._next_check:
                return  # another thread checked meanwhile
            with self.sessions() as session:
                version = catalogue_version(session)
            self.version_checks += 1
            if version != self._version or generation != self._generation:
                self._courses = {}
                self._pages = {}
                self._version = version
                self._generation = generation
            self._next_check = now + self.recheck_seconds

    def course(self, slug: str) -> CourseCard | None:
        self._refresh()
        card = self._courses.get(slug)
        if card is None:
            with self.sessions() as session:
                course = find_course(session, slug)
                if course is None:
                    return None
                card = CourseCard(id=course.id, slug=course.slug, title=course.title)
            self._courses[slug] = card
        return card

    def page(self, key: tuple[str, ...], render: Callable[[], str]) -> str:
        """The page cached under key, rendered by render() the first time after each change."""
        self._refresh()
        html = self._pages.get(key)
        if html is None:
            html = render()
            if len(self._pages) < MAX_PAGES:
                self._pages[key] = html
        return html
