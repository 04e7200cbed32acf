"""HTML articles → title and blocks: a WordPress or Ghost export, or a page saved from a browser.

1. A whole page (it has ``<html>``, ``<body>``, navigation or a footer) goes through readability-lxml,
   which keeps the article and drops the site around it: menus, sidebars, footers, comments.
   A fragment (a CMS export of the post body) is used as it is.
2. The kept HTML is tidied with lxml: scripts, styles, forms and HTML comments go, a figure's caption
   becomes its image's title, and the code language is read from ``class="language-…"``.
3. markdownify turns it into Markdown, which the Markdown reader turns into blocks, so headings,
   lists, links, images, tables and code come out exactly as from a Markdown article.

The title is the article's first ``<h1>``, else the page's ``og:title``, else its ``<title>`` without
the site name.
"""

from __future__ import annotations

import re

import lxml.html
from lxml import etree
from markdownify import MarkdownConverter
from readability import Document

from course.content.reading import ArticleError, FrozenMeta
from course.content.blocks import escape_inline

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_PAGE_MARKERS = re.compile(r"<(?:html|body|head|nav|header|footer|aside)\b", re.IGNORECASE)
# Classes and ids of the boxes publishing platforms put inside a post: signup cards, share buttons,
# related posts. Matched as whole dash- or underscore-separated parts ("share-box", not "shareable").
_NOISE_CLASS = re.compile(
    r"(?:^|[\s_-])(?:signup|subscribe|subscription|subscriptions|newsletter|sharedaddy|sharing|share|social|"
    r"relatedposts|related|yarpp)(?=$|[\s_-])",
    re.IGNORECASE,
)
# A box with an email field and at most this many words is a signup form, not part of the article.
MAX_SIGNUP_BOX_WORDS = 60
_DROPPED_TAGS = ("script", "style", "noscript", "form", "button", "iframe", "svg", "template", "input", "select")


def decode_html(raw: bytes, source: str) -> str:
    """Bytes → text: UTF-8 (with or without BOM), else the charset the page declares in ``<meta>``."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        declared = _CHARSET.search(raw[:4096])
        if declared:
            charset = declared.group(1).decode("ascii")
            try:
                return raw.decode(charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise ArticleError(
            f"{source}: not UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at offset {exc.start}) and no "
            "usable <meta charset> declared"
        ) from exc


def html_markdown(text: str, source: str) -> tuple[str, FrozenMeta]:
    """An HTML article as ``(Markdown, meta)``, the Markdown starting with its title as an H1 (the
    Markdown reader makes the blocks); meta holds the page's description and author when it
    declares them."""
    try:
        document = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as exc:
        raise ArticleError(f"{source}: cannot parse HTML: {exc}") from exc
    meta = _page_meta(document)
    if _PAGE_MARKERS.search(text):
        try:
            readable = Document(text)
            content = readable.summary(html_partial=True)
            page_title = readable.short_title()
        except Exception as exc:  # readability raises its own Unparseable and lxml errors alike
            raise ArticleError(f"{source}: cannot find the article in this page: {exc}") from exc
    else:
        content, page_title = text, ""
    markdown = html_to_markdown(content, base_url=_base_url(document))
    title = meta.pop("og:title", "") or " ".join(page_title.split())
    # The Markdown reader takes a leading H1 as the title; pages whose H1 sits outside the article
    # body (WordPress themes put it in the header) get it from the page instead.
    heading_title = _first_h1(content) or _first_h1_of(document)
    if heading_title and not re.match(r"\s*# ", markdown):
        title = heading_title
    if not re.match(r"\s*# ", markdown):
        if not title:
            raise ArticleError(f"{source}: no title: expected an <h1>, an og:title or a <title> in the page")
        markdown = f"# {escape_inline(title)}\n\n{markdown}"
    if not markdown.strip() or markdown.strip().count("\n") == 0:
        raise ArticleError(f"{source}: no article text found in the HTML")
    return markdown, FrozenMeta(meta)


def html_to_markdown(html: str, base_url: str = "") -> str:
    """Tidy ``html`` (see the module docstring, step 2) and convert it to Markdown with markdownify.

    With ``base_url`` (the page's ``<base>``, canonical or ``og:url``), relative links and image
    sources are made absolute: in an email, "/recipes" leads nowhere.
    """
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    for element in root.iter(etree.Comment, etree.ProcessingInstruction):
        _drop_keeping_tail(element)
    _drop_publisher_noise(root)
    for tag in _DROPPED_TAGS:
        for element in root.iter(tag):
            _drop_keeping_tail(element)
    for figure in root.iter("figure"):
        caption = figure.find(".//figcaption")
        image = figure.find(".//img")
        if caption is not None and image is not None:
            caption_text = " ".join(caption.text_content().split())
            if caption_text and not image.get("title"):
                image.set("title", caption_text)
            _drop_keeping_tail(caption)
    if base_url:
        root.make_links_absolute(base_url, resolve_base_href=False, handle_failures="ignore")
    cleaned = lxml.html.tostring(root, encoding="unicode")
    return _Converter().convert(cleaned).strip()


def _drop_publisher_noise(root: etree._Element) -> None:
    """Drop what the publisher's platform adds around the article (readability drops the site's
    navigation, sidebars and comments; these sit inside the post body itself):

    1. newsletter signup cards, share boxes and "related posts", recognised by their class or id
       (Ghost's ``kg-signup-card``, Jetpack's ``sharedaddy`` and ``jp-relatedposts``, YARPP,
       ``newsletter-…``, ``subscribe-…``);
    2. any other small box holding an email field: a signup form under its own heading;
    3. links into Ghost's members portal ("Join the newsletter" buttons);
    4. decorative icons: a callout's emoji, or any element whose text has no letter or digit and
       that holds no image.
    """
    noise: list[etree._Element] = []
    for element in root.iter(etree.Element):
        names = f"{element.get('class') or ''} {element.get('id') or ''}"
        if _NOISE_CLASS.search(names) or "kg-callout-emoji" in names.split():
            noise.append(element)
        elif element.tag == "input" and (element.get("type") or "").lower() == "email":
            box = next((a for a in element.iterancestors("div", "section", "aside", "form") if a is not root), None)
            while box is not None and box.getparent() is not None and box.getparent() is not root and box.tag == "form":
                box = box.getparent()
            if box is not None and len(box.text_content().split()) <= MAX_SIGNUP_BOX_WORDS:
                noise.append(box)
        elif element.tag == "a" and "#/portal" in (element.get("href") or ""):
            box = element.getparent()
            only_link = box is not None and box is not root and box.text_content().strip() == element.text_content().strip()
            noise.append(box if only_link else element)
        elif (
            element.tag in ("p", "div", "span", "figure")
            and element.text_content().strip()
            and not any(char.isalnum() for char in element.text_content())
            and element.find(".//img") is None
        ):
            noise.append(element)
    for element in noise:
        if element.getparent() is not None and all(ancestor not in noise for ancestor in element.iterancestors()):
            _drop_keeping_tail(element)


def _drop_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is None:
        return
    tail = element.tail or ""
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


class _Converter(MarkdownConverter):
    """markdownify with ATX headings, ``-`` bullets, fenced code with its language and table cells
    whose pipes are escaped (markdownify leaves them bare, which splits the cell)."""

    def __init__(self) -> None:
        super().__init__(
            heading_style="ATX",
            bullets="-",
            code_language_callback=_code_language,
            table_infer_header=True,
            escape_underscores=True,
            escape_asterisks=True,
        )

    def convert_td(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        return super().convert_td(el, _escape_pipes(text), parent_tags)

    def convert_th(self, el, text, parent_tags):  # type: ignore[no-untyped-def]
        return super().convert_th(el, _escape_pipes(text), parent_tags)


def _escape_pipes(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", text)


def _code_language(element) -> str:  # type: ignore[no-untyped-def]
    for node in (element, element.find("code")):
        if node is None:
            continue
        for css_class in node.get("class") or []:
            for prefix in ("language-", "lang-"):
                if css_class.startswith(prefix):
                    return css_class[len(prefix) :]
    return ""


def _first_h1(html: str) -> str:
    match = re.search(r"<h1\b[^>]*>(.*?)</h1>", html, re.IGNORECASE | re.DOTALL)
    if not match:
        return ""
    return " ".join(lxml.html.fragment_fromstring(match.group(1), create_parent="span").text_content().split())


def _first_h1_of(document: etree._Element) -> str:
    heading = document.find(".//h1")
    return " ".join(heading.text_content().split()) if heading is not None else ""


def _base_url(document: etree._Element) -> str:
    """The absolute URL relative links in the page are relative to, or "" when the page has none."""
    candidates = [element.get("href") for element in document.iter("base")]
    candidates += [element.get("href") for element in document.iter("link") if (element.get("rel") or "").lower() == "canonical"]
    candidates += [element.get("content") for element in document.iter("meta") if element.get("property") == "og:url"]
    return next((url for url in candidates if url and re.match(r"https?://", url)), "")


def _page_meta(document: etree._Element) -> dict[str, str]:
    meta: dict[str, str] = {}
    # The page's declared language (<html lang="ar">) wins over detecting it (course.content.language).
    declared = next((element.get("lang") for element in document.iter("html", "article") if element.get("lang")), "")
    if declared.strip():
        meta["lang"] = declared.strip()
    for element in document.iter("meta"):
        name = (element.get("property") or element.get("name") or "").lower()
        content = " ".join((element.get("content") or "").split())
        if name in ("og:title", "description", "author") and content and name not in meta:
            meta[name] = content
    return meta
