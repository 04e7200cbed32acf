"""RSS/Atom feeds become articles of a course, idempotently by entry id."""

from __future__ import annotations

import datetime
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.content.blocks import Code, Heading, ListBlock, Table
from course.content.definition import CourseDefinitionError, load_course_definition
from course.content.feeds import (
    FeedError,
    load_feed_record,
    parse_feed,
    plan_feed_import,
    read_feed_source,
    write_feed_import,
)

FEEDS = Path(__file__).parent / "data" / "feeds"


def course_content(tmp_path: Path) -> Path:
    content = tmp_path / "content"
    (content / "articles").mkdir(parents=True)
    (content / "courses").mkdir()
    (content / "articles" / "intro.md").write_text("# Welcome\n\nWhat this course is about.\n", encoding="utf-8")
    (content / "courses" / "garden.toml").write_text(
        'title = "Garden"\narticles = ["articles/intro.md"]\nsender_name = "Garden"\nsender_email = "g@example.com"\n',
        encoding="utf-8",
    )
    return content


def import_feed(content: Path, source: str) -> int:
    known = load_feed_record(content, "garden")
    planned = plan_feed_import(parse_feed(read_feed_source(source), source), "garden", known, source)
    write_feed_import(content, "garden", known, planned)
    return len(planned)


def test_rss_entries_become_articles_oldest_first_with_their_blocks() -> None:
    entries = parse_feed((FEEDS / "garden-rss.xml").read_bytes(), "garden-rss.xml")
    assert [entry.title for entry in entries] == ["Growing Tomatoes on a Balcony", "Saving Seeds From Your Tomatoes"]
    assert entries[0].entry_id == "https://garden.example.com/?p=207"
    assert entries[0].published == datetime.datetime(2024, 3, 3, 8, 30, tzinfo=datetime.UTC)
    planned = plan_feed_import(entries, "garden", [], "garden-rss.xml")
    seeds = planned[1].article
    assert seeds.title == "Saving Seeds From Your Tomatoes"
    assert Heading("Ferment the pulp", 2) in seeds.blocks
    assert any(isinstance(block, ListBlock) and block.ordered for block in seeds.blocks)
    # Relative links are made absolute against the entry's address.
    assert "(https://garden.example.com/guides/seed-storage/)" in seeds.blocks[-1].text  # type: ignore[union-attr]
    assert any(isinstance(block, Table) for block in planned[0].article.blocks)
    assert planned[0].record.article == "articles/feeds/garden/2024-03-03-growing-tomatoes-on-a-balcony.html"


def test_atom_content_is_preferred_to_the_summary() -> None:
    [entry] = parse_feed((FEEDS / "kitchen-atom.xml").read_bytes(), "kitchen-atom.xml")
    [planned] = plan_feed_import([entry], "kitchen", [], "kitchen-atom.xml")
    assert planned.article.title == "Messer richtig schärfen"
    assert Code("Winkel: 15–20 Grad", "text") in planned.article.blocks


def test_importing_a_feed_twice_adds_its_entries_once(tmp_path: Path) -> None:
    content = course_content(tmp_path)
    assert import_feed(content, str(FEEDS / "garden-rss.xml")) == 2
    definition = load_course_definition(content / "courses" / "garden.toml")
    assert [path.name for path in definition.articles] == [
        "intro.md",
        "2024-03-03-growing-tomatoes-on-a-balcony.html",
        "2024-08-16-saving-seeds-from-your-tomatoes.html",
    ]
    record = (content / "feeds" / "garden.toml").read_text(encoding="utf-8")
    assert import_feed(content, str(FEEDS / "garden-rss.xml")) == 0
    assert (content / "feeds" / "garden.toml").read_text(encoding="utf-8") == record


def test_a_new_entry_in_the_feed_is_appended_after_the_imported_ones(tmp_path: Path) -> None:
    content = course_content(tmp_path)
    feed = (FEEDS / "garden-rss.xml").read_text(encoding="utf-8")
    older_only = tmp_path / "older.xml"
    start = feed.index("  <item>")
    end = feed.index("  </item>", start) + len("  </item>\n")
    older_only.write_text(feed[:start] + feed[end:], encoding="utf-8")  # without the newest entry
    assert import_feed(content, str(older_only)) == 1
    assert import_feed(content, str(FEEDS / "garden-rss.xml")) == 1
    titles = [record.title for record in load_feed_record(content, "garden")]
    assert titles == ["Growing Tomatoes on a Balcony", "Saving Seeds From Your Tomatoes"]


@pytest.fixture
def feed_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the test feeds."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(FEEDS), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_feed_is_fetched_over_http(tmp_path: Path, feed_server: str) -> None:
    content = course_content(tmp_path)
    assert import_feed(content, f"{feed_server}/garden-rss.xml") == 2
    with pytest.raises(FeedError, match="cannot fetch the feed"):
        read_feed_source(f"{feed_server}/missing.xml")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<html><body>Not a feed</body></html>", "not an RSS or Atom feed"),
        (b"", "not an RSS or Atom feed"),
        (
            b'<rss version="2.0"><channel><title>x</title><item><description>Body only</description></item></channel></rss>',
            "has no title",
        ),
        (
            b'<rss version="2.0"><channel><title>x</title><item><title>Empty</title></item></channel></rss>',
            "has no content",
        ),
    ],
)
def test_broken_feeds_are_errors_that_write_nothing(tmp_path: Path, document: bytes, expected: str) -> None:
    content = course_content(tmp_path)
    path = tmp_path / "feed.xml"
    path.write_bytes(document)
    with pytest.raises(FeedError, match=expected):
        import_feed(content, str(path))
    assert not (content / "feeds").exists()
    assert not (content / "articles" / "feeds").exists()


def test_a_record_pointing_at_a_missing_article_is_a_course_error(tmp_path: Path) -> None:
    content = course_content(tmp_path)
    import_feed(content, str(FEEDS / "garden-rss.xml"))
    shutil.rmtree(content / "articles" / "feeds")
    with pytest.raises(CourseDefinitionError, match="does not exist"):
        load_course_definition(content / "courses" / "garden.toml")
