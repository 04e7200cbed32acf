"""Course definitions (``content/courses/<slug>.toml``) and the plan of lessons they produce.

A definition says which articles make up a course, in which order, and when lessons go out. Loading
validates every key with an error that names the file and the key, because these values end up in
email headers and schedules. :func:`plan_course` then turns the definition into numbered lessons with
their guide references, without touching the database: the importer stores the plan.

Example::

    title = "Sourdough from Scratch"
    description = "Two weeks from a jar of flour and water to your first open-crumbed loaf."
    articles = ["articles/starter.md", "articles/first-loaf.md"]
    days_between_lessons = 1
    send_time = "09:00"
    weekdays = ["mon", "tue", "wed", "thu", "fri"]   # or "weekdays" / "everyday"
    sender_name = "The Sourdough Letter"
    sender_email = "lessons@example.com"
    target_words = 300
    language = "en"                                  # "en", "de" or "fr": the email and page frame
    feed = "https://blog.example.com/feed.xml"       # optional; with it, articles may be left out
    provider = "ses"                                 # optional: the mail provider its lessons take first
"""

from __future__ import annotations

import datetime
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from course.content.article import HTML_SUFFIXES, MARKDOWN_SUFFIXES, TEXT_SUFFIXES, Article, load_article
from course.content.feeds import FEEDS_DIR, FeedError, feed_article_paths
from course.content.blocks import Block, map_inline
from course.content.guides import GuideCatalogue, Reference, find_references, link_markdown
from course.content.split import DEFAULT_TARGET_WORDS, LessonPlan, split_article
from course.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")
_SEND_TIME = re.compile(r"(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")
# A deliberately simple address check: one @, no whitespace or characters that are special in
# headers, and a dotted domain. Deliverability is the SMTP server's business, not ours.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"  # local part: printable characters that need no quoting
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"  # first domain label
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"  # at least one more label
)
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NUMBERS = {name: number for number, name in enumerate(WEEKDAY_NAMES)} | {
    full: number
    for number, full in enumerate("monday tuesday wednesday thursday friday saturday sunday".split())
}
_WEEKDAY_SETS = {
    "weekdays": frozenset(range(5)),
    "everyday": frozenset(range(7)),
    "weekends": frozenset({5, 6}),
}
_KNOWN_KEYS = frozenset(
    {
        "title",
        "description",
        "articles",
        "days_between_lessons",
        "send_time",
        "weekdays",
        "sender_name",
        "sender_email",
        "target_words",
        "language",
        "feed",
        "provider",
    }
)
DEFAULT_SEND_TIME = datetime.time(9, 0)


class CourseDefinitionError(ValueError):
    """A course definition is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class CourseDefinition:
    slug: str
    title: str
    description: str
    articles: tuple[Path, ...]  # resolved paths, in order
    days_between_lessons: int  # >= 1
    send_time: datetime.time  # local send time
    weekdays: frozenset[int]  # allowed weekdays, 0=Monday..6=Sunday
    sender_name: str
    sender_email: str
    target_words: int
    language: str = DEFAULT_LANGUAGE  # of the email and page frame (articles are split in their own)
    # The blog feed whose entries `course import-feed` adds (http(s) URL); with one, `articles` may be
    # left out, so a blog becomes a course without a first hand-written article.
    feed: str = ""
    # The mail provider (a COURSE_PROVIDERS name, or "default") its lessons take first; "" routes
    # them by their From domain and the fallback order (course/delivery/routing.py).
    provider: str = ""


@dataclass(frozen=True)
class PlannedLesson:
    position: int  # 1-based across the whole course
    article_source: str
    plan: LessonPlan
    # What the reader gets: the blocks shown under the title with guide links written in, and every
    # guide reference found in them (matched or not), in reading order.
    body: tuple[Block, ...]
    found: tuple[Reference, ...]


@dataclass(frozen=True)
class CoursePlan:
    definition: CourseDefinition
    lessons: tuple[PlannedLesson, ...]

    @property
    def unmatched_references(self) -> tuple[Reference, ...]:
        return tuple(reference for lesson in self.lessons for reference in lesson.found if reference.guide is None)


def load_course_definition(path: Path) -> CourseDefinition:
    """Load and validate one course file.

    1. The slug is the file stem and must be lowercase letters, digits and hyphens.
    2. The file must be TOML with only known keys (a typo such as ``send_tme`` is an error, not a
       silently ignored setting).
    3. Each key is checked by its own function below; articles are resolved against the content
       directory, the parent of the folder holding the course file, and must exist inside it.
    """
    slug = path.stem
    if not _SLUG.fullmatch(slug):
        raise CourseDefinitionError(
            f"{path}: course slug {slug!r} (the file name) must be lowercase letters, digits and hyphens"
        )
    try:
        with path.open("rb") as course_file:
            document = tomllib.load(course_file)
    except OSError as exc:
        raise CourseDefinitionError(f"{path}: cannot read course definition: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CourseDefinitionError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise CourseDefinitionError(f"{path}: not UTF-8 text: {exc}") from exc

    unknown = sorted(set(document) - _KNOWN_KEYS)
    if unknown:
        raise CourseDefinitionError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(_KNOWN_KEYS))}"
        )
    content_dir = path.resolve().parent.parent
    feed = _feed(path, document)
    return CourseDefinition(
        slug=slug,
        title=_header_text(path, document, "title", required=True),
        description=_description(path, document),
        articles=_articles(path, document, content_dir, optional=bool(feed)) + _feed_articles(path, slug, content_dir),
        feed=feed,
        days_between_lessons=_positive_int(path, document, "days_between_lessons", default=1),
        send_time=_send_time(path, document),
        weekdays=_weekdays(path, document),
        sender_name=_header_text(path, document, "sender_name", required=True),
        sender_email=_sender_email(path, document),
        target_words=_positive_int(path, document, "target_words", default=DEFAULT_TARGET_WORDS),
        language=_language(path, document),
        provider=_provider(path, document),
    )


def _provider(path: Path, document: dict[str, object]) -> str:
    """A provider's name as settings spell it (whether it is configured is checked at send time,
    where the settings are: a course file may name a provider only production configures)."""
    value = _header_text(path, document, "provider", required=False)
    if value and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
        raise CourseDefinitionError(f"{path}: key 'provider' must be a provider name (lower-case letters, digits, '-', '_'), got {value!r}")
    return value


def load_course_definitions(content_dir: Path) -> list[CourseDefinition]:
    """Load every ``content_dir/courses/*.toml``, sorted by slug. No ``courses`` folder: no courses."""
    if not content_dir.is_dir():
        raise CourseDefinitionError(f"{content_dir}: content directory does not exist")
    courses_dir = content_dir / "courses"
    if not courses_dir.is_dir():
        return []
    definitions = [load_course_definition(path) for path in courses_dir.glob("*.toml")]
    return sorted(definitions, key=lambda definition: definition.slug)


def plan_course(definition: CourseDefinition, catalogue: GuideCatalogue) -> CoursePlan:
    """Turn a definition into numbered lessons.

    For each article in order: load it, split it with ``definition.target_words`` (sentences cut in
    the article's own language), and number its lessons after the previous article's; in the blocks each
    lesson shows, find the guide references and write the matched ones in as links
    (:func:`link_lesson`).
    """
    return plan_articles(definition, [load_article(article_path) for article_path in definition.articles], catalogue)


def plan_articles(definition: CourseDefinition, articles: Sequence[Article], catalogue: GuideCatalogue) -> CoursePlan:
    """:func:`plan_course` for articles already read (the admin's uploads): each split with the
    definition's target in its own language, numbered on from the previous article's lessons, linked."""
    lessons: list[PlannedLesson] = []
    for article in articles:
        # Sentences and "(continued)" follow the article's own language; the course's is the frame's.
        for plan in split_article(article, definition.target_words):
            body, found = link_lesson(plan, catalogue)
            lessons.append(
                PlannedLesson(
                    position=len(lessons) + 1, article_source=article.source, plan=plan, body=body, found=found
                )
            )
    return CoursePlan(definition=definition, lessons=tuple(lessons))


def definition_from_fields(slug: str, fields: dict[str, object], *, where: str) -> CourseDefinition:
    """A definition from values given some other way than a course file (the admin's form), checked
    by the same validators as a file's keys; `where` names the source in error messages. It lists no
    article files: the caller plans the articles it holds (:func:`plan_articles`)."""
    label = Path(where)
    if not _SLUG.fullmatch(slug) or len(slug) > 100:
        raise CourseDefinitionError(f"{where}: the slug {slug!r} must be lowercase letters, digits and hyphens (at most 100)")
    unknown = sorted(set(fields) - (_KNOWN_KEYS - {"articles", "feed"}))
    if unknown:
        raise CourseDefinitionError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return CourseDefinition(
        slug=slug,
        title=_header_text(label, fields, "title", required=True),
        description=_description(label, fields),
        articles=(),
        days_between_lessons=_positive_int(label, fields, "days_between_lessons", default=1),
        send_time=_send_time(label, fields),
        weekdays=_weekdays(label, fields),
        sender_name=_header_text(label, fields, "sender_name", required=True),
        sender_email=_sender_email(label, fields),
        target_words=_positive_int(label, fields, "target_words", default=DEFAULT_TARGET_WORDS),
        language=_language(label, fields),
    )


def link_lesson(plan: LessonPlan, catalogue: GuideCatalogue) -> tuple[tuple[Block, ...], tuple[Reference, ...]]:
    """The blocks a reader sees in ``plan`` (:attr:`LessonPlan.shown`), with every matched guide
    reference turned into a link (an existing link is never linked again), and the references found."""
    found: list[Reference] = []

    def link(text: str) -> str:
        references = find_references(text, catalogue)
        found.extend(references)
        return link_markdown(text, references)

    return tuple(map_inline(block, link) for block in plan.shown), tuple(found)


# ---------------------------------------------------------------------------------------------------
# One validator per key. Each takes the file path for its error messages.


def _header_text(path: Path, document: dict[str, object], key: str, *, required: bool) -> str:
    """One line of text that may end up in an email header: CR or LF would allow header injection."""
    value = document.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise CourseDefinitionError(f"{path}: missing required key {key!r}")
    if not isinstance(value, str) or not value.strip():
        raise CourseDefinitionError(f"{path}: key {key!r} must be non-empty text, got {value!r}")
    if "\r" in value or "\n" in value:
        raise CourseDefinitionError(f"{path}: key {key!r} must be a single line (no CR or LF characters)")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise CourseDefinitionError(f"{path}: key {key!r} must not contain control characters")
    return value.strip()


def _description(path: Path, document: dict[str, object]) -> str:
    # Shown in the web page and the welcome email body, never in a header: newlines are fine.
    value = document.get("description", "")
    if not isinstance(value, str):
        raise CourseDefinitionError(f"{path}: key 'description' must be text, got {value!r}")
    return value.strip()


def _articles(path: Path, document: dict[str, object], content_dir: Path, *, optional: bool = False) -> tuple[Path, ...]:
    """`optional`: the course names a feed, whose entries may be all its articles."""
    value = document.get("articles")
    if optional and (value is None or value == []):
        return ()
    if value is None:
        raise CourseDefinitionError(f"{path}: missing required key 'articles' (or a 'feed' whose entries are the articles)")
    if not isinstance(value, list) or not value:
        raise CourseDefinitionError(
            f"{path}: key 'articles' must be a non-empty list of paths such as \"articles/intro.md\""
        )
    resolved: list[Path] = []
    for index, entry in enumerate(value):
        where = f"{path}: key 'articles'[{index}]"
        if not isinstance(entry, str) or not entry.strip():
            raise CourseDefinitionError(f"{where}: must be a path string, got {entry!r}")
        relative = Path(entry)
        if relative.is_absolute():
            raise CourseDefinitionError(
                f"{where}: {entry!r} must be relative to the content directory {content_dir}"
            )
        article_path = (content_dir / relative).resolve()
        if not article_path.is_relative_to(content_dir):
            raise CourseDefinitionError(
                f"{where}: {entry!r} points outside the content directory {content_dir}"
            )
        if article_path.suffix.lower() not in MARKDOWN_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES:
            raise CourseDefinitionError(
                f"{where}: {entry!r} is not a .md, .markdown, .txt, .text, .html or .htm article"
            )
        if not article_path.is_file():
            raise CourseDefinitionError(f"{where}: {entry!r} does not exist (looked for {article_path})")
        if article_path in resolved:
            raise CourseDefinitionError(
                f"{where}: {entry!r} is listed twice; its lessons would be sent twice"
            )
        resolved.append(article_path)
    return tuple(resolved)


_FEED_URL = re.compile(r"https?://[^\s/]+\S*", re.IGNORECASE)


def _feed(path: Path, document: dict[str, object]) -> str:
    value = document.get("feed")
    if value is None:
        return ""
    if not isinstance(value, str) or not _FEED_URL.fullmatch(value.strip()):
        raise CourseDefinitionError(f"{path}: key 'feed' must be the blog feed's http(s) address, got {value!r}")
    return value.strip()


def _feed_articles(path: Path, slug: str, content_dir: Path) -> tuple[Path, ...]:
    """The articles ``course import-feed`` added to this course (``content/feeds/<slug>.toml``)."""
    try:
        paths = feed_article_paths(content_dir, slug)
    except FeedError as exc:
        raise CourseDefinitionError(f"{path}: {exc}") from exc
    for article_path in paths:
        if not article_path.is_relative_to(content_dir) or not article_path.is_file():
            raise CourseDefinitionError(
                f"{path}: the feed record {FEEDS_DIR}/{slug}.toml lists {article_path}, which does not exist"
            )
    return tuple(paths)


def _positive_int(path: Path, document: dict[str, object], key: str, *, default: int) -> int:
    value = document.get(key, default)
    # bool is an int subclass; `true` is not a number of days.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CourseDefinitionError(
            f"{path}: key {key!r} must be a whole number of at least 1, got {value!r}"
        )
    return value


def _send_time(path: Path, document: dict[str, object]) -> datetime.time:
    value = document.get("send_time")
    if value is None:
        return DEFAULT_SEND_TIME
    # TOML local times (send_time = 09:00:00) arrive as datetime.time already.
    if isinstance(value, datetime.time) and value.second == 0 and value.microsecond == 0:
        return value
    if isinstance(value, str) and (matched := _SEND_TIME.fullmatch(value.strip())):
        return datetime.time(int(matched.group("hour")), int(matched.group("minute")))
    raise CourseDefinitionError(
        f"{path}: key 'send_time' must be \"HH:MM\" on a 24-hour clock, got {value!r}"
    )


def _weekdays(path: Path, document: dict[str, object]) -> frozenset[int]:
    value = document.get("weekdays", "everyday")
    allowed = "a list of day names such as [\"mon\", \"wed\", \"fri\"], or \"weekdays\" or \"everyday\""
    if isinstance(value, str):
        if value.strip().lower() in _WEEKDAY_SETS:
            return _WEEKDAY_SETS[value.strip().lower()]
        raise CourseDefinitionError(f"{path}: key 'weekdays' must be {allowed}, got {value!r}")
    if not isinstance(value, list) or not value:
        raise CourseDefinitionError(f"{path}: key 'weekdays' must be {allowed}, got {value!r}")
    numbers: set[int] = set()
    for entry in value:
        if not isinstance(entry, str) or entry.strip().lower() not in _WEEKDAY_NUMBERS:
            raise CourseDefinitionError(
                f"{path}: key 'weekdays': {entry!r} is not a day name (use {', '.join(WEEKDAY_NAMES)})"
            )
        numbers.add(_WEEKDAY_NUMBERS[entry.strip().lower()])
    return frozenset(numbers)


def _language(path: Path, document: dict[str, object]) -> str:
    value = document.get("language", DEFAULT_LANGUAGE)
    if not isinstance(value, str) or value.strip().lower() not in SUPPORTED_LANGUAGES:
        raise CourseDefinitionError(
            f"{path}: key 'language' must be one of {', '.join(SUPPORTED_LANGUAGES)}, got {value!r}"
        )
    return value.strip().lower()


def _sender_email(path: Path, document: dict[str, object]) -> str:
    value = _header_text(path, document, "sender_email", required=True)
    if not _EMAIL.fullmatch(value):
        raise CourseDefinitionError(f"{path}: key 'sender_email' is not an email address: {value!r}")
    return value
