"""Course content built in a temporary folder for tests: the publisher's seed article as a course,
with a guide catalogue that knows the two guides its closing paragraph points to."""

from __future__ import annotations

import shutil
from pathlib import Path

# The section headings of the seed article, in order: a parser must find all five.
SEED_HEADINGS = [
    "What Oxytocin Actually Is",
    "What Happens During Nursing",
    "Why Repetition Matters",
    "Oxytocin and Trust",
    "The Let-Down Connection",
]


SEED_GUIDES = """
[[guide]]
key = "let-down"
title = "What Let-Down Is"
url = "https://guides.example.org/let-down"
phrases = ["what let-down is", "encourage let-down"]

[[guide]]
key = "anr-benefits"
title = "The Benefits of ANR"
url = "https://guides.example.org/benefits"
phrases = ["benefits of ANR"]
"""


def seed_course_content(root: Path, seed_article: Path, *, target_words: int = 150, weekdays: str = '"everyday"') -> Path:
    content = root / "content"
    (content / "articles").mkdir(parents=True)
    (content / "courses").mkdir()
    shutil.copy(seed_article, content / "articles" / "oxytocin.txt")
    (content / "guides.toml").write_text(SEED_GUIDES)
    (content / "courses" / "bonding.toml").write_text(
        f"""title = "Bonding, Explained"
description = "The science of bonding in short daily lessons."
articles = ["articles/oxytocin.txt"]
days_between_lessons = 1
send_time = "09:00"
weekdays = {weekdays}
sender_name = "Bonding Course"
sender_email = "course@example.org"
target_words = {target_words}
"""
    )
    return content
