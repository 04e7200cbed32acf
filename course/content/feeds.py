"""RSS and Atom feeds → articles of a course: a publisher's blog becomes a course that grows.

``course import-feed URL-or-FILE --course SLUG`` reads the feed with feedparser and adds each entry
it has not seen before as an HTML article of the course, oldest first, after the course's own
articles. What has been imported is recorded per course in ``content/feeds/<slug>.toml`` (one
``[[entry]]`` per feed entry id), and each entry's article is written under
``content/articles/feeds/<slug>/``. The content folder stays the one source of truth: the normal
import turns the new articles into lessons, and importing the same feed again adds nothing.

Pure parts (:func:`parse_feed`, :func:`plan_feed_import`) decide; :func:`write_feed_import` writes.
Every entry is turned into an article and checked before anything is written, so a broken entry
leaves the content folder as it was.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import re
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import lxml.html
from lxml import etree

from course.content.article import Article, ArticleError, parse_article

FEEDS_DIR = "feeds"  # content/feeds/<slug>.toml
FEED_ARTICLES_DIR = Path("articles") / "feeds"  # content/articles/feeds/<slug>/<file>.html
FETCH_TIMEOUT_SECONDS = 30
MAX_FEED_BYTES = 20 * 1024 * 1024


class FeedError(ValueError):
    """The feed cannot be read or one of its entries cannot become an article; names the feed."""


@dataclass(frozen=True)
class FeedEntry:
    entry_id: str  # the entry's <id>/<guid>, else its link, else a hash of title and content
    title: str
    link: str
    published: datetime.datetime | None
    html: str  # the entry's content (or summary) as HTML


@dataclass(frozen=True)
class ImportedEntry:
    """One line of the course's feed record: which entry became which article."""

    entry_id: str
    article: str  # path relative to the content folder
    title: str
    link: str
    published: str  # ISO 8601, or "" when the feed gave no date


@dataclass(frozen=True)
class PlannedEntry:
    entry: FeedEntry
    record: ImportedEntry
    article_html: str
    article: Article  # the entry as parsed, proof that it imports


def read_feed_source(source: str) -> bytes:
    """The feed's bytes from an http(s) URL or a file path."""
    if re.match(r"https?://", source, re.IGNORECASE):
        request = urllib.request.Request(source, headers={"User-Agent": "course-import-feed/1"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
                data = response.read(MAX_FEED_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise FeedError(f"{source}: cannot fetch the feed: {exc}") from exc
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise FeedError(f"{source}: cannot read the feed: {exc.strerror or exc}") from exc
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"{source}: the feed is larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
    return data


def parse_feed(data: bytes, source: str) -> list[FeedEntry]:
    """Parse RSS or Atom ``data`` into entries, oldest first.

    1. feedparser reads any RSS or Atom dialect; a document that is no feed at all is an error, while
       a feed with a minor flaw (feedparser's "bozo" bit with entries) is accepted.
    2. An entry's id is its ``<id>``/``<guid>``, else its link, else a hash of its title and content.
    3. Its HTML is the full content when the feed has it (``content:encoded``, Atom ``content``),
       else the summary. An entry without a title or without any content is an error naming it.
    4. Entries are ordered by publication date, oldest first; undated ones keep the feed's order
       reversed (feeds list the newest first).
    """
    parsed: Any = feedparser.parse(data)
    if parsed.get("bozo") and not parsed.entries:
        raise FeedError(f"{source}: not an RSS or Atom feed ({parsed.get('bozo_exception')})")
    if not parsed.get("version") and not parsed.entries:
        raise FeedError(f"{source}: not an RSS or Atom feed")
    entries: list[FeedEntry] = []
    for number, raw in enumerate(parsed.entries, start=1):
        title = " ".join(str(raw.get("title", "")).split())
        contents = raw.get("content") or []
        html = str(contents[0].get("value", "")) if contents else str(raw.get("summary", ""))
        link = str(raw.get("link", ""))
        where = f"{source}: entry {number}" + (f" ({title!r})" if title else "")
        if not title:
            raise FeedError(f"{where}: has no title")
        if not html.strip():
            raise FeedError(f"{where}: has no content or summary")
        entry_id = str(raw.get("id") or link or "sha256:" + hashlib.sha256((title + html).encode()).hexdigest())
        published_struct = raw.get("published_parsed") or raw.get("updated_parsed")
        published = (
            datetime.datetime(*published_struct[:6], tzinfo=datetime.UTC) if published_struct else None
        )
        entries.append(FeedEntry(entry_id, title, link, published, html))
    entries.reverse()  # feeds are newest first; undated entries then stay oldest first
    dated = sorted((entry for entry in entries if entry.published), key=lambda entry: entry.published)  # type: ignore[arg-type, return-value]
    undated = [entry for entry in entries if entry.published is None]
    return dated + undated


def load_feed_record(content_dir: Path, slug: str) -> list[ImportedEntry]:
    """The entries already imported into course ``slug`` (empty when none were)."""
    path = content_dir / FEEDS_DIR / f"{slug}.toml"
    if not path.exists():
        return []
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FeedError(f"{path}: cannot read the feed record: {exc}") from exc
    records = []
    for number, table in enumerate(document.get("entry", []), start=1):
        try:
            records.append(
                ImportedEntry(
                    entry_id=str(table["id"]),
                    article=str(table["article"]),
                    title=str(table.get("title", "")),
                    link=str(table.get("link", "")),
                    published=str(table.get("published", "")),
                )
            )
        except (KeyError, TypeError) as exc:
            raise FeedError(f"{path}: entry #{number} lacks 'id' or 'article'") from exc
    return records


def plan_feed_import(
    entries: list[FeedEntry], slug: str, known: list[ImportedEntry], source: str
) -> list[PlannedEntry]:
    """The entries not imported yet, each as the HTML article it becomes, parsed to prove it imports.

    Raises FeedError naming the first entry that is no usable article.
    """
    seen = {record.entry_id for record in known}
    taken = {record.article for record in known}
    planned: list[PlannedEntry] = []
    for entry in entries:
        if entry.entry_id in seen:
            continue
        seen.add(entry.entry_id)
        article_html = entry_article_html(entry)
        relative = _article_path(slug, entry, taken)
        taken.add(relative)
        try:
            article = parse_article(article_html, source=f"{source} entry {entry.title!r}", fmt="html")
        except ArticleError as exc:
            raise FeedError(f"{source}: entry {entry.title!r} cannot become an article: {exc}") from exc
        record = ImportedEntry(
            entry_id=entry.entry_id,
            article=relative,
            title=entry.title,
            link=entry.link,
            published=entry.published.isoformat() if entry.published else "",
        )
        planned.append(PlannedEntry(entry, record, article_html, article))
    return planned


def entry_article_html(entry: FeedEntry) -> str:
    """An HTML fragment article: the entry's title as ``<h1>``, then its content with links and
    images made absolute against the entry's own address."""
    content = entry.html
    if entry.link and re.match(r"https?://", entry.link):
        try:
            root = lxml.html.fragment_fromstring(content, create_parent="div")
            root.make_links_absolute(entry.link, resolve_base_href=False, handle_failures="ignore")
            content = "".join(
                [root.text or ""] + [lxml.html.tostring(child, encoding="unicode") for child in root]
            )
        except (etree.ParserError, ValueError):
            pass
    return f"<h1>{html.escape(entry.title)}</h1>\n{content}\n"


def _article_path(slug: str, entry: FeedEntry, taken: set[str]) -> str:
    """``articles/feeds/<slug>/<date>-<title words>.html``, unique within the course."""
    words = re.sub(r"[^a-z0-9]+", "-", entry.title.lower()).strip("-")[:60].strip("-") or "entry"
    date = entry.published.date().isoformat() + "-" if entry.published else ""
    stem = f"{date}{words}"
    candidate = (FEED_ARTICLES_DIR / slug / f"{stem}.html").as_posix()
    number = 2
    while candidate in taken:
        candidate = (FEED_ARTICLES_DIR / slug / f"{stem}-{number}.html").as_posix()
        number += 1
    return candidate


def write_feed_import(content_dir: Path, slug: str, known: list[ImportedEntry], planned: list[PlannedEntry]) -> None:
    """Write the new articles, then the course's feed record listing old and new entries.

    The record is written last and replaced atomically, so an interrupted run leaves at worst an
    article file no course lists yet, which the next run overwrites.
    """
    for item in planned:
        path = content_dir / item.record.article
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(item.article_html, encoding="utf-8")
    record_path = content_dir / FEEDS_DIR / f"{slug}.toml"
    record_path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Entries of a feed imported into the course {slug!r} by `course import-feed`, in lesson order.",
        "# Their articles come after the course's own; remove an entry here to stop importing it.",
    ]
    for record in [*known, *(item.record for item in planned)]:
        lines += [
            "",
            "[[entry]]",
            f"id = {_toml_string(record.entry_id)}",
            f"article = {_toml_string(record.article)}",
            f"title = {_toml_string(record.title)}",
            f"link = {_toml_string(record.link)}",
            f"published = {_toml_string(record.published)}",
        ]
    temporary = record_path.with_suffix(".toml.tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(record_path)


def _toml_string(value: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda found: f"\\u{ord(found.group(0)):04x}", escaped)
    return f'"{escaped}"'


def feed_article_paths(content_dir: Path, slug: str) -> list[Path]:
    """The articles the course's feed record adds after its own, as absolute paths."""
    return [(content_dir / record.article).resolve() for record in load_feed_record(content_dir, slug)]
