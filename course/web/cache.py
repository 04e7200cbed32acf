"""What a web process keeps from the course catalogue between requests: each course's id and title by
slug (every signup needs them) and the rendered course list, course pages and embed pages.

Courses and lessons change only on `course import`, usually run in another process, so the cache
asks the database for the catalogue's version (course.content.catalogue.catalogue_version: one small
SELECT) at most once every `recheck_seconds`, and drops everything when it changed. An import in
this same process drops it at once (catalogue_changed). Between two checks a page may be up to
`recheck_seconds` old (and while a check runs, the cached page still serves the requests that
arrive on the event loop, so up to a check's time older); nothing a reader does depends on a newer
one.

Threads: FastAPI runs the page handlers in a thread pool. Entries are whole values swapped in one
assignment, so two threads filling the same key at once render it twice and keep either."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.content.catalogue import catalogue_version, find_course, local_generation
from course.delivery.render import course_language
from course.models import Course

# Unknown slugs are not remembered one by one (a scan of made-up addresses must not grow the cache):
# the catalogue's slugs are, as one set read with a single SELECT after each change, so a made-up
# address is answered 404 from memory too. The pages kept are bounded all the same.
MAX_PAGES = 2_000


@dataclass(frozen=True)
class CourseCard:
    """What a signup needs of a course, safe to share between requests and threads."""

    id: int
    slug: str
    title: str
    language: str  # the course's language (course.delivery.render.course_language)

    @classmethod
    def of(cls, course: Course) -> CourseCard:
        return cls(id=course.id, slug=course.slug, title=course.title, language=course_language(course))


# A gzip member header: deflate, no name, no time, unknown OS (RFC 1952).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def _deflate(data: bytes, *, last: bool) -> bytes:
    """Raw deflate of data that another piece may follow: a full flush ends the piece on a byte
    boundary with the dictionary reset, so pieces compressed apart concatenate into one valid
    stream (the way pigz compresses in parallel)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)


@dataclass(frozen=True)
class PreparedPage:
    """A rendered page with a hole wherever a per-visitor value goes, kept both plain and
    compressed. Serving it gzipped costs a stored (uncompressed) deflate block around the visitor's
    value (a few dozen bytes) and one CRC of the page, not compressing the whole page (about 1 ms
    for a 25 KB course page)."""

    pieces: tuple[bytes, ...]  # the page split at each hole
    deflated: tuple[bytes, ...]  # each piece compressed apart; the last one ends the stream

    @classmethod
    def build(cls, html: str, hole: str) -> PreparedPage:
        pieces = tuple(piece.encode() for piece in html.split(hole))
        deflated = tuple(_deflate(piece, last=index == len(pieces) - 1) for index, piece in enumerate(pieces))
        return cls(pieces, deflated)

    def plain(self, value: str) -> bytes:
        return value.encode().join(self.pieces)

    def gzipped(self, value: str) -> bytes:
        data = value.encode()
        filler = _stored_block(data)
        crc, length = 0, len(data) * (len(self.pieces) - 1)
        for index, piece in enumerate(self.pieces):
            if index:
                crc = zlib.crc32(data, crc)
            crc = zlib.crc32(piece, crc)
            length += len(piece)
        trailer = struct.pack("<II", crc, length & 0xFFFFFFFF)
        return _GZIP_HEADER + filler.join(self.deflated) + trailer


def _stored_block(data: bytes) -> bytes:
    """data as one stored deflate block that another block follows (RFC 1951 3.2.4): a byte with
    BFINAL 0 and BTYPE 00 (the pieces around it end byte-aligned, so its padding is that byte's
    other bits), LEN and its complement, then the bytes. The visitor's value is a few dozen random
    characters, which compress to nothing worth having; a compressor per request cost ~60 µs, most
    of a cached page's whole answer."""
    if len(data) > 0xFFFF:
        raise ValueError("a stored block holds at most 65,535 bytes")
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


class CatalogueCache:
    def __init__(self, sessions: sessionmaker[Session], *, recheck_seconds: float) -> None:
        self.sessions = sessions
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._version: tuple[object, ...] | None = None
        self._generation = -1
        self._next_check = 0.0
        self._check_claimed_until = 0.0  # see holds()
        self._courses: dict[str, CourseCard] = {}
        self._slugs: frozenset[str] | None = None  # every course's slug, read when first needed
        self._by_id: dict[int, CourseCard | None] = {}
        self._pages: dict[tuple[str, ...], PreparedPage] = {}
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
                self._slugs = None
                self._by_id = {}
                self._pages = {}
                self._version = version
                self._generation = generation
            self._next_check = now + self.recheck_seconds
            self._check_claimed_until = 0.0

    def holds(self, page_key: tuple[str, ...], slug: str | None = None) -> bool:
        """Whether course(slug, check=False) and page(page_key, ..., check=False) answer from
        memory, so an async handler may serve them on the event loop: both are cached since the
        last change in this process, and the catalogue's version was checked within
        recheck_seconds, or another request is about to check it or checking it now.

        Call it on the event loop only. When the check is due, the first caller gets False and is
        the one to check (it goes to the thread pool, where course() and page() check); the
        callers after it get True until that check is done, or for a second if it never comes.
        Without that claim, every request arriving before the checking thread got the GIL went
        to the thread pool too and queued there: the course page's p99 at 64 connections was
        50-115 ms, against 14-15 ms with no checks at all."""
        if local_generation() != self._generation or page_key not in self._pages:
            return False
        if slug is not None and slug not in self._courses:
            return False
        now = time.monotonic()
        if now < self._next_check or now < self._check_claimed_until:
            return True
        self._check_claimed_until = now + max(1.0, self.recheck_seconds)
        return False

    def course(self, slug: str, *, check: bool = True) -> CourseCard | None:
        """The course's card by slug, None for no such course (from the set of slugs: no database
        for a made-up address, however many are tried). check=False: without the version check
        that may be due (on the event loop, after holds() said yes)."""
        if check:
            self._refresh()
        card = self._courses.get(slug)
        if card is None:
            slugs = self._slugs
            if slugs is None:
                # A drop always moves the version or the generation: one that came while the
                # slugs were read means this set may be older, so it answers this request only.
                cached_as = (self._version, self._generation)
                with self.sessions() as session:
                    slugs = frozenset(session.scalars(select(Course.slug)))
                if cached_as == (self._version, self._generation):
                    self._slugs = slugs
            if slug not in slugs:
                return None
            with self.sessions() as session:
                course = find_course(session, slug)
                if course is None:
                    return None  # deleted since the slugs were read: the next check drops them
                card = CourseCard.of(course)
            self._courses[slug] = card
        return card

    def course_by_id(self, course_id: int) -> CourseCard | None:
        """The course a signed link names (its id was signed by us, so a miss is remembered too:
        the id of a deleted course)."""
        self._refresh()
        if course_id in self._by_id:
            return self._by_id[course_id]
        with self.sessions() as session:
            course = session.get(Course, course_id)
            card = None if course is None else CourseCard.of(course)
        if len(self._by_id) < MAX_PAGES:
            self._by_id[course_id] = card
        return card

    def page(self, key: tuple[str, ...], render: Callable[[], str], *, hole: str, check: bool = True) -> PreparedPage:
        """The page cached under key, rendered by render() the first time after each change, with a
        hole wherever `hole` appears in it. check=False: as for course()."""
        if check:
            self._refresh()
        page = self._pages.get(key)
        if page is None:
            page = PreparedPage.build(render(), hole)
            if len(self._pages) < MAX_PAGES:
                self._pages[key] = page
        return page
