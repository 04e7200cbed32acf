"""Merge tags in a newsletter's text: what is a tag, what is a mistake (named by its line), and a
tag's value for one reader. Pure."""

from __future__ import annotations

from course.content.merge_tags import MergeTag, problems, substitute, tags_in, value_of


def test_tags_and_defaults_are_read() -> None:
    text = 'Hi {{first_name | default: "friend"}}, {{ email }} and {{ lesson_number|default:\'a few\' }}.'
    assert tags_in(text) == [MergeTag("first_name", "friend"), MergeTag("email"), MergeTag("lesson_number", "a few")]
    assert substitute(text, lambda tag: f"<{tag.name}>") == "Hi <first_name>, <email> and <lesson_number>."


def test_a_value_else_the_default_else_nothing() -> None:
    assert value_of(MergeTag("first_name", "friend"), {"first_name": "Ann"}) == "Ann"
    assert value_of(MergeTag("first_name", "friend"), {"first_name": ""}) == "friend"
    assert value_of(MergeTag("first_name"), {}) == ""


def test_a_clean_text_has_no_problem() -> None:
    body = "Hello {{ first_name }},\n\n[Your settings]({{ preferences_url }}) - {{ course_title }}"
    assert problems(body, field="body", course_known=True) == []


def test_each_mistake_is_named_with_its_line() -> None:
    body = "Fine line\nHi {{ frist_name }},\n{{ first_name | upper }}\nopen {{ first_name\n{{ course_title }}"
    found = problems(body, field="body", course_known=False)
    assert found == [
        "Body, line 2: {{ frist_name }} names no merge tag (known: first_name, email, course_title, lesson_number, "
        "preferences_url, unsubscribe_url)",
        'Body, line 3: {{ first_name | upper }} is not a merge tag (write {{ name }} or {{ first_name | default: "friend" }})',
        "Body, line 4: a {{ without its closing }} (merge tags are {{ name }})",
        "Body, line 5: {{ course_title }} needs an audience of one course's readers (choose a course)",
    ]


def test_links_belong_in_the_body_and_only_empty_values_take_a_default() -> None:
    assert problems("News {{ unsubscribe_url }}", field="subject", course_known=False, links_allowed=False) == [
        "Subject: {{ unsubscribe_url }} is a link, which only the body can carry"
    ]
    assert problems('{{ email | default: "x" }}', field="subject", course_known=False) == [
        'Subject: {{ email | default: "x" }} always has a value: drop its default'
    ]
