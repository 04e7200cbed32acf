"""Template.fill: a lesson is rendered once with placeholders, then filled per recipient. The fill
must give what substituting each placeholder everywhere would, HTML-escaped in the HTML part, and
the HTML part stays ASCII so it goes out as 7bit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from markupsafe import escape

from course.delivery.render import SLOTS, Renderer, Template
from course.settings import Settings

HOSTILE = {
    "greeting": "Hi Zoë & <b>Ann</b> \"O'Neil\",",
    "view_url": "https://c.example/view/abc.def?x=1&y=<2>",
    "preferences_url": "https://c.example/preferences/ghi",
    "unsubscribe_url": "https://c.example/u/jkl",
}


def reference_fill(template: Template, values: dict[str, str]) -> tuple[str, str]:
    """The obvious implementation: replace each placeholder everywhere."""
    text, html = template.text, template.html
    for name in SLOTS:
        value = values.get(name, "")
        text = text.replace(f"@@{name}@@", value)
        html = html.replace(f"@@{name}@@", str(escape(value)).encode("ascii", "xmlcharrefreplace").decode())
    return text, html


@pytest.fixture(scope="module")
def lesson_template() -> Template:
    renderer = Renderer(Settings().templates_dir)
    course = SimpleNamespace(title="Bread · Basics", slug="bread", course_id=1)
    lesson = SimpleNamespace(
        position=2, lesson_count=5, title="Crumb — and crust", reading_minutes=3,
        body={"blocks": [{"heading": "Über crumb", "paragraphs": ["Grüße from the oven.", "Second."]}], "references": []},
    )  # fmt: skip
    return renderer.lesson_template(course=course, lesson=lesson)


def test_fill_matches_substituting_each_placeholder(lesson_template: Template) -> None:
    filled = lesson_template.fill(HOSTILE)
    assert (filled.text, filled.html) == reference_fill(lesson_template, HOSTILE)
    assert "@@" not in filled.text + filled.html
    assert "Hi Zoë & <b>Ann</b>" in filled.text  # plain text is not escaped
    assert "Hi Zo&#235; &amp; &lt;b&gt;Ann&lt;/b&gt;" in filled.html
    assert "x=1&amp;y=&lt;2&gt;" in filled.html


def test_the_html_part_is_ascii_with_character_references(lesson_template: Template) -> None:
    assert lesson_template.html.isascii()
    assert "Bread &#183; Basics" in lesson_template.html and "Crumb &#8212; and crust" in lesson_template.html
    assert "Grüße" in lesson_template.text  # the plain text keeps its characters
    assert lesson_template.fill(HOSTILE).html.isascii()


def test_a_slot_without_a_value_is_empty_and_repeats_are_all_filled() -> None:
    template = Template(subject="s", text="@@greeting@@ @@view_url@@ @@greeting@@", html="<a href=\"@@view_url@@\">@@action_url@@</a>")
    filled = template.fill({"greeting": "Hi", "view_url": "u&v"})
    assert filled.text == "Hi u&v Hi"
    assert filled.html == '<a href="u&amp;v"></a>'
    assert template.fill({}).text == "  "
