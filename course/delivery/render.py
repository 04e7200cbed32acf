"""Turn lessons and newsletters into email bodies with the one Jinja2 environment.

Rendering is split in two so a batch of thousands costs one template render per lesson:

1. `lesson_template` renders the lesson once, with placeholders where per-recipient values go
   (greeting, signed links), and inlines the CSS once (mail clients ignore <style> blocks).
2. `Template.fill` swaps the placeholders for one recipient's values, HTML-escaped in the HTML part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from course.i18n import DEFAULT_LANGUAGE, gettext_callables, translate
from course.content.article import ArticleError
from course.content.blocks import Block, block_plain
from course.content.language import strong_direction, text_direction
from course.content.lesson_body import LessonBody
from course.content.markdown_reader import newsletter_blocks
from course.content.merge_tags import MergeTag, first_name_of, substitute, value_of
from course.delivery.blocks_render import TEXT_WIDTH, blocks_html, blocks_text

# Placeholders survive Jinja (no markup characters) and CSS inlining (plain text and attributes).
SLOTS = ("greeting", "view_url", "preferences_url", "unsubscribe_url", "action_url")


def _slot(name: str) -> str:
    return f"@@{name}@@"


@lru_cache
def template_environment(templates_dir: Path, *, auto_reload: bool = False) -> Environment:
    """The one Jinja2 environment of a process's pages or mails. Templates are read once; with
    auto_reload (COURSE_TEMPLATE_RELOAD, for someone editing them) every render first checks each
    template's file for changes, a stat per template and its parents (~70 µs a page)."""
    environment = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        auto_reload=auto_reload,
        autoescape=select_autoescape(["html"], default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    # English by default; a render in another language passes that language's gettext callables
    # (course.i18n.gettext_callables) in its context, which take precedence over these globals.
    environment.globals.update(gettext_callables(DEFAULT_LANGUAGE))
    return environment


# Article Markdown is the publisher's, but raw HTML in it is still not passed through.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
# A campaign body may carry some HTML (a table, a <br>): it is rendered, then sanitised by nh3
# (ammonia's allow-list: no script, style, frames, forms or event handlers; links get rel=noopener).
_campaign_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False})
RIGHT_TO_LEFT_MARK = "\u200f"
_inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


# A newsletter's merge tags (course.content.merge_tags) become numbered slots, `@@merge0@@`, whose
# tag the template keeps: each is filled with the recipient's value, else the tag's default.
_SLOT_PATTERN = re.compile("@@(" + "|".join(SLOTS) + r"|merge\d+)@@")


@dataclass(frozen=True)
class Template:
    subject: str
    text: str
    html: str
    merge_tags: tuple[MergeTag, ...] = ()  # slot `merge<i>` holds merge_tags[i]

    @cached_property
    def _subject_parts(self) -> list[str]:
        return _SLOT_PATTERN.split(self.subject)

    @cached_property
    def _text_parts(self) -> list[str]:
        # Literal text at even indices, slot names at odd ones: cut once, filled for every recipient.
        return _SLOT_PATTERN.split(self.text)

    @cached_property
    def _html_parts(self) -> list[str]:
        return _SLOT_PATTERN.split(self.html)

    def fill(self, values: Mapping[str, str]) -> RenderedEmail:
        """One join per part instead of a scan of the whole body per slot; the HTML gets each value
        escaped, the plain text (and the subject) gets it as is. A slot without a value becomes
        empty; a merge tag's slot gets the tag's value for this recipient, else its default."""
        if self.merge_tags:
            values = {**values, **{f"merge{i}": value_of(tag, values) for i, tag in enumerate(self.merge_tags)}}
        text_parts, html_parts = self._text_parts, self._html_parts
        text = list(text_parts)
        for index in range(1, len(text), 2):
            text[index] = values.get(text_parts[index], "")
        html = list(html_parts)
        for index in range(1, len(html), 2):
            html[index] = _ascii_html(escape(values.get(html_parts[index], "")))
        subject = self.subject
        if self.merge_tags:
            parts = list(self._subject_parts)
            for index in range(1, len(parts), 2):
                parts[index] = values.get(parts[index], "")
            subject = "".join(parts)
        return RenderedEmail(subject=subject, text="".join(text), html="".join(html))


def _ascii_html(html: str) -> str:
    """Non-ASCII characters as numeric character references (`·` becomes `&#183;`), which every
    HTML reader decodes in text and attributes alike. The HTML part then goes out as 7bit instead
    of base64: a third fewer bytes on the wire and no encoding work per message."""
    return html if html.isascii() else html.encode("ascii", "xmlcharrefreplace").decode("ascii")


def greeting_for(name: str, language: str = DEFAULT_LANGUAGE) -> str:
    first = first_name_of(name)
    return translate(language, "Hi %(name)s,", name=first) if first else translate(language, "Hi there,")


def body_html(body: LessonBody) -> Markup:
    """The HTML part of a lesson's body, from its blocks."""
    return blocks_html(body.blocks)


def body_text(body: LessonBody, width: int = TEXT_WIDTH) -> str:
    """The plain-text part of a lesson's body, from the same blocks: lines of at most ``width``
    characters except code and URLs."""
    return blocks_text(body.blocks, width)


def markdown_html(text: str) -> Markup:
    return Markup(_markdown.render(text))


# What the blocks' HTML may keep through nh3: the classes the email's CSS styles (inlined per message),
# a table cell's alignment, an image's width, a code block's language.
_BLOCK_ATTRIBUTES = {
    **nh3.ALLOWED_ATTRIBUTES,
    **{tag: {*nh3.ALLOWED_ATTRIBUTES.get(tag, set()), "class"} for tag in ("ul", "ol", "blockquote", "div", "p", "figure", "hr")},
    "table": {*nh3.ALLOWED_ATTRIBUTES.get("table", set()), "class", "cellpadding", "cellspacing"},
    "pre": {*nh3.ALLOWED_ATTRIBUTES.get("pre", set()), "class", "data-language"},
    "img": {*nh3.ALLOWED_ATTRIBUTES.get("img", set()), "class", "style", "title"},
    "th": {*nh3.ALLOWED_ATTRIBUTES.get("th", set()), "scope", "style"},
    "td": {*nh3.ALLOWED_ATTRIBUTES.get("td", set()), "style"},
}


def campaign_blocks(text: str) -> tuple[Block, ...] | None:
    """A newsletter body read into blocks, as a lesson's article is; None for a body the reader
    refuses (saved before the editor checked it), which is then sent the way it was before."""
    try:
        return newsletter_blocks(text)
    except ArticleError:
        return None


def campaign_html(text: str) -> Markup:
    """A campaign's Markdown as HTML, raw HTML in it sanitised (course.campaigns.service refuses the
    worst of it before it is saved; this is what holds whatever else gets through)."""
    blocks = campaign_blocks(text)
    html = str(blocks_html(blocks)) if blocks is not None else _campaign_markdown.render(text)
    return Markup(nh3.clean(html, attributes=_BLOCK_ATTRIBUTES, link_rel="noopener noreferrer"))


def campaign_text(text: str, width: int = TEXT_WIDTH) -> str:
    """A campaign's plain-text part from the same blocks as its HTML: lists, quotes, code and tables
    read as a lesson's do."""
    blocks = campaign_blocks(text)
    return blocks_text(blocks, width) if blocks is not None else text


def course_language(course: Any) -> str:
    """The language of a course's email frame: its ``language`` attribute, English when it has none."""
    return getattr(course, "language", None) or DEFAULT_LANGUAGE


class Renderer:
    def __init__(self, templates_dir: Path, *, auto_reload: bool = False) -> None:
        self.environment = template_environment(templates_dir, auto_reload=auto_reload)

    def _render_pair(
        self, name: str, subject: str, context: Mapping[str, Any], language: str = DEFAULT_LANGUAGE
    ) -> Template:
        """Render templates/email/<name>.html and .txt; the frame's words are in ``language``."""
        slots = {slot: _slot(slot) for slot in SLOTS}
        values = {**gettext_callables(language), **context, **slots, "subject": subject}
        html = self.environment.get_template(f"email/{name}.html").render(values)
        text = self.environment.get_template(f"email/{name}.txt").render(values)
        return Template(subject=subject, text=text, html=_ascii_html(_inliner.inline(html)))

    def lesson_template(self, *, course: Any, lesson: Any, test_send: bool = False) -> Template:
        """`course` has .title (and .language, English when absent); `lesson` has .position,
        .lesson_count, .title, .reading_minutes, .body (a LessonBody or its stored JSON; a body of
        another shape raises LessonBodyError). A test send's footer says that its account links
        change nothing."""
        language = course_language(course)
        body = lesson.body if isinstance(lesson.body, LessonBody) else LessonBody.from_json(lesson.body)
        # An Arabic or Hebrew lesson reads right to left inside an English (or any) frame: the HTML
        # part marks its title and body dir="rtl", the text part starts each of their lines with a
        # right-to-left mark, which is what dir="rtl" is to plain text (Unicode bidi rule P2).
        title_direction = text_direction(lesson.title)
        # The first block with a strong letter decides, as the whole body joined would (read block by
        # block: a send task renders its lesson once per chunk, and joining every block was most of it).
        body_direction = next(
            (found for block in body.blocks if (found := strong_direction(block_plain(block)))), "ltr"
        )
        text = body_text(body)
        title_text = lesson.title
        if body_direction == "rtl":
            text = "\n".join(RIGHT_TO_LEFT_MARK + line if line.strip() else line for line in text.split("\n"))
        if title_direction == "rtl":
            title_text = RIGHT_TO_LEFT_MARK + title_text
        return self._render_pair(
            "lesson",
            translate(
                language, "Lesson %(position)s of %(count)s: %(title)s",
                position=lesson.position, count=lesson.lesson_count, title=lesson.title,
            ),
            {
                "course": course,
                "lesson": lesson,
                "body_html": body_html(body),
                "body_text": text,
                "title_text": title_text,
                "title_dir": title_direction,
                "body_dir": body_direction,
                "further_reading": body.further_reading(),
                "test_send": test_send,
            },
            language,
        )

    def campaign_template(
        self,
        *,
        subject: str,
        body_markdown: str,
        sender_name: str,
        preheader: str = "",
        language: str = DEFAULT_LANGUAGE,
        test_send: bool = False,
    ) -> Template:
        """A newsletter belongs to no course: its frame is in ``language`` (the site's). Its merge
        tags become slots filled per recipient (the text was checked when the draft was saved). A test send's footer says that its account links
        change nothing."""
        tags: list[MergeTag] = []

        def slot_for(tag: MergeTag) -> str:
            if tag not in tags:
                tags.append(tag)
            return _slot(f"merge{tags.index(tag)}")

        subject, preheader, body_markdown = (substitute(text, slot_for) for text in (subject, preheader, body_markdown))
        template = self._render_pair(
            "campaign",
            subject,
            {
                "sender_name": sender_name,
                "preheader": preheader,
                "test_send": test_send,
                "body_html": campaign_html(body_markdown),
                "body_text": campaign_text(body_markdown),
            },
            language,
        )
        return replace(template, merge_tags=tuple(tags)) if tags else template

    def transactional_template(self, name: str, *, subject: str, context: Mapping[str, Any]) -> Template:
        """Account mail (confirmation and the like): templates/email/<name>.html and .txt, whose
        main link is the `action_url` slot. The frame is in the language of ``context["course"]``."""
        return self._render_pair(name, subject, context, course_language(context.get("course")))
