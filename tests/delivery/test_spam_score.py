"""Every kind of mail the product sends (a lesson, the confirmation, the already-enrolled mail, a
newsletter and its test send), built by the real Composer into the bytes the sender hands to SMTP,
scores at most 0.0 in SpamAssassin's local rules (Debian's `spamassassin -L`: no network tests, no
Bayes database). The rules that hit are printed for each mail, so a failure says what to change.

scripts/services.sh installs Debian's spamassassin; without it the test skips with that reason."""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from course.clock import ManualClock
from course.content.article import parse_article
from course.content.definition import link_lesson
from course.content.guides import load_guides
from course.content.lesson_body import LessonBody, StoredReference
from course.content.split import split_article
from course.delivery.compose import Composer, Recipient
from course.delivery.links import Signer
from course.delivery.render import Renderer
from course.ledger import CampaignContent, CourseHeader, LessonContent
from course.settings import PROJECT_ROOT, Settings

SPAMASSASSIN = shutil.which("spamassassin") or "/usr/bin/spamassassin"
pytestmark = pytest.mark.skipif(
    shutil.which("spamassassin") is None, reason="Debian's spamassassin is not installed (scripts/services.sh installs it as root)"
)

NOW = datetime(2026, 3, 5, 8, 0, tzinfo=timezone.utc)
ANN = Recipient(delivery_id=4711, subscriber_id=5, name="Ann Lee", email="ann@example.org")
NEWSLETTER = """# What we baked in October

Three new loaves, one **rye** week, and a question from a reader.

## This month

- A seeded rye, [recipe here](https://example.org/rye)
- Our spelt loaf, *finally* right

> "Can I freeze a starter?" Yes, for a month.

Thanks for reading!
"""


def every_kind_of_mail() -> dict[str, bytes]:
    """The bytes of each kind of mail to Ann, as production settings would build them."""
    settings = Settings(
        secret_key="test-secret",
        base_url="https://courses.example.org",
        list_id_domain="example.org",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    signer = Signer(secret="test-secret", base_url=settings.base_url)
    composer = Composer(settings, renderer=Renderer(PROJECT_ROOT / "templates"), signer=signer, clock=ManualClock(NOW))
    course = CourseHeader(7, "sourdough-from-scratch", "Sourdough from Scratch", "The Sourdough Letter", "lessons@example.org")
    article = parse_article((PROJECT_ROOT / "content/articles/starter.md").read_text(encoding="utf-8"), source="starter.md")
    plan = split_article(article, 300)[1]
    blocks, found = link_lesson(plan, load_guides(PROJECT_ROOT / "content/guides.toml"))
    body = LessonBody(blocks, tuple(map(StoredReference.of, found))).to_json()
    lesson = LessonContent(11, course, 2, 8, plan.title, body, plan.reading_minutes, False)
    campaign = CampaignContent(
        21, "october", "What we baked in October", NEWSLETTER, "The Sourdough Letter", "news@example.org", False,
        "Three new loaves and a reader's question",
    )
    return {
        "lesson": composer.lesson(ANN, lesson).message_bytes(),
        "confirmation": composer.account_mail(ANN, "confirm", course).message_bytes(),
        "already-enrolled": composer.account_mail(ANN, "already_enrolled", course).message_bytes(),
        "erase": composer.account_mail(ANN, "erase", course).message_bytes(),
        "campaign": composer.campaign(ANN, campaign).message_bytes(),
        "test campaign": composer.campaign_test(ANN, campaign, "editor@example.org").message_bytes(),
    }


_SUMMARY = re.compile(r"Content analysis details:\s+\((-?\d+(?:\.\d+)?) points")
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


def spam_score(message: bytes) -> tuple[float, list[str]]:
    """SpamAssassin's score of `message` with local tests only (-L), no user preferences created
    (-x), and the rules that hit ("1.0 FONT_INVIS_MSGID Invisible text + ...")."""
    report = subprocess.run(
        [SPAMASSASSIN, "-L", "-x", "-t"], input=message, capture_output=True, timeout=120, check=True
    ).stdout.decode("utf-8", "replace")
    match = _SUMMARY.search(report)
    assert match, f"no score in SpamAssassin's report:\n{report[-2000:]}"
    details = report[match.end() :].splitlines()
    rules = [f"{m.group(1)} {m.group(2)} {m.group(3)}" for line in details if (m := _RULE.match(line))]
    return float(match.group(1)), rules


def test_every_kind_of_mail_scores_zero_or_less_in_spamassassins_local_rules() -> None:
    mails = every_kind_of_mail()
    # Two at a time: each run spends about two seconds loading the rules, on a shared two-core machine.
    with ThreadPoolExecutor(max_workers=2) as pool:
        scores = dict(zip(mails, pool.map(spam_score, mails.values())))
    for kind, (score, rules) in scores.items():
        print(f"{kind}: {score:+.1f}\n  " + "\n  ".join(rules))
    too_high = {kind: (score, rules) for kind, (score, rules) in scores.items() if score > 0.0}
    assert too_high == {}, "\n".join(f"{kind} scores {score}: {', '.join(rules)}" for kind, (score, rules) in too_high.items())
