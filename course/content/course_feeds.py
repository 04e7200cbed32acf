"""An admin course made from a blog's feed, and the feed polled afterwards: the feed is fetched with
a conditional GET (If-None-Match / If-Modified-Since from the last answer's ETag / Last-Modified, so
an unchanged feed costs a 304), its entries become HTML articles exactly as `course import-feed`
makes them (course.content.feeds), and the ones the course has not seen (by entry id) are appended
as articles (course.content.uploaded). The scheduling of their lessons for running readers is the
audience's (course.audience.course_content.poll_course_feed)."""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from course.content.feeds import FETCH_TIMEOUT_SECONDS, MAX_FEED_BYTES, FeedError, ImportedEntry, parse_feed, plan_feed_import
from course.content.uploaded import UploadedArticle

_HTTP = re.compile(r"https?://[^\s/]+\S*", re.IGNORECASE)


@dataclass(frozen=True)
class FeedAnswer:
    """What a (conditional) fetch of a feed got: its bytes, or None when unchanged (304), and the
    validators to send next time."""

    data: bytes | None
    etag: str | None
    last_modified: str | None


Fetch = Callable[[str, str | None, str | None], FeedAnswer]


def public_address_only(url: str) -> None:
    """An editor, not the operator, gives this address, and the server fetches it: refuse a host
    that is or resolves to a loopback, private, link-local or otherwise non-global address (the
    cloud metadata service, the database), so the admin is no door into the server's network."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError) as exc:
        raise FeedError(f"{url}: cannot resolve {host!r}: {exc}") from exc
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise FeedError(f"{url}: {host!r} is a private or local address; feeds are fetched from the public internet only")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        public_address_only(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_feed(url: str, etag: str | None = None, last_modified: str | None = None, *, allow_private: bool = False) -> FeedAnswer:
    """GET the feed, conditionally when validators are known. Raises FeedError naming the feed.
    `allow_private` (COURSE_FEED_ALLOW_PRIVATE_HOSTS): also from local and private addresses, for a
    blog on the same network; by default only public ones (each redirect checked too)."""
    if not _HTTP.fullmatch(url):
        raise FeedError(f"{url!r} is not an http(s) address of a feed")
    if not allow_private:
        public_address_only(url)
    headers = {"User-Agent": "course-feed-poll/1"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener() if allow_private else urllib.request.build_opener(_CheckedRedirects)
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            data = response.read(MAX_FEED_BYTES + 1)
            answer = FeedAnswer(data, response.headers.get("ETag"), response.headers.get("Last-Modified"))
    except urllib.error.HTTPError as exc:
        if exc.code == 304:  # unchanged: keep the validators we sent
            return FeedAnswer(None, exc.headers.get("ETag") or etag, exc.headers.get("Last-Modified") or last_modified)
        raise FeedError(f"{url}: cannot fetch the feed: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise FeedError(f"{url}: cannot fetch the feed: {exc}") from exc
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"{url}: the feed is larger than {MAX_FEED_BYTES // (1024 * 1024)} MB")
    return answer


def new_entry_articles(data: bytes, source: str, slug: str, seen_entry_ids: set[str]) -> list[UploadedArticle]:
    """The feed's entries the course has not seen, oldest first, each as the HTML article
    `course import-feed` would write (raises FeedError for an entry that is no usable article)."""
    known = [ImportedEntry(entry_id=entry_id, article="", title="", link="", published="") for entry_id in seen_entry_ids]
    planned = plan_feed_import(parse_feed(data, source), slug, known, source)
    return [
        UploadedArticle(PurePosixPath(item.record.article).name, item.article_html, item.entry.entry_id) for item in planned
    ]
