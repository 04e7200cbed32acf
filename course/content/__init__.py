"""Article -> lessons: parsing, splitting, guide references, course definitions, import. Knows nothing of sending."""

# A lesson's length when a course does not state one (target_words); here, not in split.py, so the
# CLI can show it in `course split --help` without loading the splitter.
DEFAULT_TARGET_WORDS = 300
