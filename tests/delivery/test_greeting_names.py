"""Every mail that greets by name (lesson, confirmation, already-enrolled, newsletter, its test
send) greets only by a name that reads as one: a link or an address typed as a "first name" gets
the neutral greeting and is in no To header, and bidirectional controls never reach the reader.
This holds at render for names stored before signups checked them. Pure: no database, no server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from email import message_from_bytes, policy

import pytest

from course.audience.enrollment import SubscriptionError, accepted_name, clean_name, is_a_name, name_to_greet
from course.clock import ManualClock
from course.content.blocks import Paragraph
from course.content.lesson_body import LessonBody
from course.delivery.compose import ComposedEmail, Composer, Recipient
from course.delivery.links import Signer
from course.delivery.render import Renderer
from course.ledger import CampaignContent, CourseHeader, LessonContent
from course.settings import PROJECT_ROOT, Settings

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=timezone.utc)
COURSE = CourseHeader(7, "bread", "Bread at Home", "The Letter", "lessons@example.com")
LESSON = LessonContent(11, COURSE, 2, 5, "Flour first", LessonBody(blocks=(Paragraph("Use strong flour."),)).to_json(), 3, False)
CAMPAIGN = CampaignContent(21, "nov", "November news", "Some news.", "The Paper", "news@example.com", False)
RLO, LRI, PDI = "\u202e", "\u2066", "\u2069"

NOT_NAMES = [
    "https://evil.example/claim-your-refund",
    "evil.example",
    "www.evil.example",
    "ann@example.org",
    "0800 123 456",
    "$$$ WIN",
    "<b>Ann</b>",
    "Ann https://evil.example",
    "a" * 60,
]
NAMES = ["Reader 3", "Ann", "Ann Lee", "O'Brien", "Jean-Luc", "J. R. R. Tolkien", "Zoë", "Øyvind", "Ярослава", "محمد", "张伟", "José María"]


@pytest.fixture
def composer() -> Composer:
    settings = Settings(secret_key="test-secret", base_url="https://courses.example.org", list_id_domain="course.test")
    signer = Signer(secret="test-secret", base_url=settings.base_url)
    return Composer(settings, renderer=Renderer(PROJECT_ROOT / "templates"), signer=signer, clock=ManualClock(NOW))


MAILS: dict[str, Callable[[Composer, Recipient], ComposedEmail]] = {
    "lesson": lambda composer, to: composer.lesson(to, LESSON),
    "confirmation": lambda composer, to: composer.account_mail(to, "confirm", COURSE),
    "already-enrolled": lambda composer, to: composer.account_mail(to, "already_enrolled", COURSE),
    "campaign": lambda composer, to: composer.campaign(to, CAMPAIGN),
    "test campaign": lambda composer, to: composer.campaign_test(to, CAMPAIGN, "editor@example.net"),
}


def _greeting_and_to(composed: ComposedEmail) -> tuple[str, str, str, str]:
    """The text part's greeting line, the HTML, the To header and the address in it (a test
    send's goes to the tester, named as the subscriber it shows)."""
    mail = message_from_bytes(composed.message_bytes(), policy=policy.default)
    greeting = next(line for line in composed.email.text.splitlines() if line.startswith("Hi "))
    return greeting, composed.email.html, str(mail["To"]), composed.message.recipient_address


@pytest.mark.parametrize("kind", MAILS)
@pytest.mark.parametrize("stored", NOT_NAMES)
def test_a_stored_name_that_is_not_a_name_gets_the_neutral_greeting(composer: Composer, kind: str, stored: str) -> None:
    greeting, html, to, address = _greeting_and_to(MAILS[kind](composer, Recipient(101, 5, stored, "ann@example.org")))
    assert greeting == "Hi there,", (kind, stored)
    assert "Hi there," in html
    assert to == address, (kind, stored)
    assert "evil" not in html and "evil" not in to


@pytest.mark.parametrize("kind", MAILS)
def test_a_stored_name_loses_its_bidi_controls_and_still_greets(composer: Composer, kind: str) -> None:
    greeting, html, to, address = _greeting_and_to(MAILS[kind](composer, Recipient(101, 5, f"{RLO}Ann{LRI} Lee{PDI}", "ann@example.org")))
    assert greeting == "Hi Ann,"
    assert to == f"Ann Lee <{address}>"
    for control in (RLO, LRI, PDI):
        assert control not in html and control not in to
        assert f"&#{ord(control)};" not in html


@pytest.mark.parametrize("name", NAMES)
def test_names_of_every_script_are_names(name: str) -> None:
    assert is_a_name(name) and name_to_greet(name) == name and accepted_name(name) == name


@pytest.mark.parametrize("typed", NOT_NAMES)
def test_a_typed_name_that_is_not_a_name_is_refused_with_a_message(typed: str) -> None:
    with pytest.raises(SubscriptionError, match="first name"):
        accepted_name(typed)


def test_a_typed_name_is_stored_without_bidi_controls() -> None:
    assert clean_name(f"{RLO}nnA") == "nnA"
    assert accepted_name(f"Ann{RLO}") == "Ann"
    assert accepted_name("   ") == ""


def test_the_ascii_fast_path_agrees_with_the_rule_in_any_script() -> None:
    # is_a_name answers an ASCII name with one regular expression; the per-character rule it stands
    # for (_words_read_as_a_name) must give the same answer on every ASCII string, cleaned or not.
    import random

    from course.audience.enrollment import MAX_NAME_WORD_LENGTH, _words_read_as_a_name

    def by_the_rule(text: str) -> bool:
        words = text.split()
        if not words or len(words) > 5 or any(len(word) > MAX_NAME_WORD_LENGTH for word in words):
            return False
        return _words_read_as_a_name(words)

    alphabet = "abcXYZ019'-. @/:_=?<>\t\x0b\x1c\x00~" + '"'
    rng = random.Random(7)
    for n in range(60_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        for candidate in (text, clean_name(text)):
            assert is_a_name(candidate) == by_the_rule(candidate), repr(candidate)
