"""Find the places where an article points readers to another guide, and link them.

Articles end with sentences like "see our guide on feeding a starter" or "the glossary page is a good
place to start" — or, in German and French, "unser Leitfaden zum Füttern des Sauerteigs" and "notre
guide sur le levain". In an email those words should be a link. This module

1. finds such references in a paragraph by their wording (:func:`find_references`),
2. matches each one to a guide of the publisher's catalogue (``content/guides.toml``) by word overlap
   (:meth:`GuideCatalogue.match`), and
3. rewrites the paragraph with links, for Markdown or plain text (:func:`link_markdown`,
   :func:`link_plain`).

References that match no guide are still returned (``guide=None``) so the importer can report them
instead of sending a dead phrase.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from course.content.blocks import inline_link_spans, inline_plain, link_destination

# A reference matches a guide when its distinctive words and those of one of the guide's phrases (or
# its title) overlap this much: shared words / the larger of the two sets. 0.5 accepts "what let-down
# is and how to encourage it" for a guide phrased "what let-down is" (2 of 3) and rejects "the event
# guide" for a guide phrased "event planning checklist" (1 of 3), which a symmetric score let through.
MATCH_THRESHOLD = 0.5

# Words that frame a reference rather than name its topic: "our complete guide to X", "the
# beginner's guide on X", "our latest article". They may stand between "our/the" and the noun.
FRAMING_WORDS = (
    "complete ultimate full comprehensive in-depth step-by-step beginner's beginners' short quick "
    "detailed definitive latest new handy free little practical earlier previous popular own whole "
    "updated illustrated"
).split()

# German and French: the words that frame a reference or carry no topic. German adjectives come in
# every case ending, so they are listed by stem and matched with an optional ending.
FRAMING_STEMS_DE = (
    "ausführlich kurz neu groß klein praktisch detailliert letzt früher beliebt umfassend vollständig "
    "komplett einfach schnell ganz"
).split()
FRAMING_WORDS_FR = (
    "complet complète complets complètes détaillé détaillée détaillés petit petite nouveau nouvel "
    "nouvelle dernier dernière précédent précédente pratique pratiques illustré illustrée ultime "
    "essentiel rapide grand grande long longue"
).split()
STOPWORDS_DE = (
    "der die das den dem des ein eine einen einem einer eines und oder aber zu zum zur über für mit "
    "von vom im in ins am auf aus bei beim nach vor um wie wo warum wann ist sind sein es sich unser unsere "
    "unseren unserem unserer unseres ihr ihre ihren ihrem dein deine sie wir nicht auch noch nur dann "
    "wenn dass ob hier dort lesen lies siehe thema rund leitfaden leitfadens ratgeber ratgebers "
    "anleitung anleitungen artikel artikels beitrag beitrags beiträge beiträgen seite seiten "
    "einführung überblick übersicht handbuch"
).split()
STOPWORDS_FR = (
    "le la les l un une des du de d au aux et ou mais à en dans sur pour par avec sans sous ce cet "
    "cette ces qui que qu quoi dont où comment pourquoi quand est sont être il elle nous vous notre nos "
    "votre vos leur leurs sa ses se ne pas très aussi lire lisez voir voyez consultez propos sujet "
    "consacré consacrée consacrés consacrées guide article articles fiche fiches tutoriel tutoriels "
    "dossier dossiers billet billets présentation aperçu"
).split()

# Words that carry no topic: function words, plus the words that frame a reference ("our guide on",
# "the … page") so "the glossary page" and a guide titled "Glossary" compare on "glossary" alone.
STOPWORDS = frozenset(
    """
    a an the and or but of to in on at for from by with about into over under as is are was were be
    been being it its it's this that these those what which who whom whose how why when where there
    here your our my their his her you we they i me us them do does did doing done can could should
    would will may might must shall not no so if then than too very just also more most some any all
    each every other such own same up out off again once
    see read learn check visit find guide guides page pages article articles post posts primer
    tutorial tutorials explainer walkthrough lesson lessons handbook series piece pieces overview
    introduction write-up
    """.split()
    + FRAMING_WORDS
    + ["step", "depth"]
    + STOPWORDS_DE
    + [f"{stem}{ending}" for stem in FRAMING_STEMS_DE for ending in ("", "e", "en", "em", "er", "es")]
    + STOPWORDS_FR
    + FRAMING_WORDS_FR
)

# What the referent is called: the noun in "our guide on X" / "the X page", singular or plural.
_REFERENCE_NOUN = (
    r"(?:guides?|articles?|posts?|pages?|pieces?|primers?|tutorials?|explainers?|walkthroughs?|handbooks?"
    r"|overviews?|introductions?|write-ups?)"
)
_FRAMING = r"(?:(?:" + "|".join(re.escape(word) for word in FRAMING_WORDS) + r")\s+){0,3}"
# One word of a referent: letters, digits, inner hyphens and apostrophes.
_WORD = r"[^\W_][\w'’-]*"
# Where a referent after "on"/"to"/"about" ends: sentence or clause punctuation, a dash, a
# connective that begins a new clause ("…, and for the broader picture …"), or the verb of which the
# reference is the subject ("our guide to hydration explains …"). A bare "is" does not end it, since
# topics contain one ("what let-down is and how to encourage it"); "is a/the/where …" does.
_REFERENT_END = (
    r"(?=[.!?](?:\s|$)|[,;:()\[\]\n]|\s[—–]\s|\s-\s|$"
    r"|\s(?:and for|and then|and see|but|which|where|so that|if|when|before|after|because|while|unless"
    r"|in our|in the)\b"
    # The verb whose subject the reference is, singular or plural ("our guides on X cover …").
    r"|\s(?:explains?|shows?|covers?|walks?|describes?|goes|go|takes?|tells?|gives?|lists?|helps?|has|have"
    r"|will|can"
    r"|should|may|might|would|are|went|was|were|is\s+(?:a|an|the|where|also|still|being|not|worth|full|packed|short|new|in|on"
    r"|coming|linked|out|here|live))\b)"
)
# Referents after "on"/"to" longer than this are runaway matches, not topics.
MAX_REFERENT_WORDS = 14
# Words that make "the X page" positional ("the next page", "the same page") rather than a title.
_POSITIONAL = frozenset(
    "next previous last first following same front back home landing this that other old new top "
    "bottom opposite facing final blank".split()
)
# A "guide" or "page" followed by one of these is a verb: "the rangers guide you", "will page them".
_OBJECT_AFTER_VERB = frozenset(
    "you us them him her me it people readers everyone yourself your their his its a an the".split()
)
# Words that cannot be inside the title part of "the X guide": auxiliaries and modals turn the match
# into a clause ("the nurse will page you"), determiners mean the title started later.
_NOT_IN_TITLE = (
    r"(?:the|a|an|our|your|their|this|that|will|would|can|could|should|may|might|must|to|is|are|was|were"
    r"|who|which|on|in|at|of|for|from|with)"
)

# German: "unser Leitfaden zum Füttern", "unseren Ratgeber über Tomaten", "im Artikel über X", "die
# Seite zum Glossar". A determiner or possessive in any case, up to two framing adjectives, the noun in
# any case, then zu/zum/zur/über/für/rund um/zum Thema.
_DETERMINER_DE = r"(?:unser(?:e|en|em|er|es)?|der|die|das|den|dem|des|im|diese[nmrs]?)"
_FRAMING_DE = r"(?:(?:" + "|".join(FRAMING_STEMS_DE) + r")(?:e|en|em|er|es)?\s+){0,2}"
_REFERENCE_NOUN_DE = (
    r"(?:Leitfad(?:en|ens)|Ratgebers?|Anleitung(?:en)?|Artikels?|Beitr(?:ag|ags|äge|ägen)|Seiten?"
    r"|Einführung|Überblicks?|Übersicht|Handbuchs?|Tutorials?)"
)
_CONNECTOR_DE = r"(?:zum\s+Thema|rund\s+um|zu|zum|zur|über|für)"
# French: "notre guide sur le levain", "l'article sur le compost", "nos fiches consacrées à X", "notre
# guide complet du compostage". The noun may carry framing adjectives before and after it. After a
# possessive ("notre/nos") "de/du/des" also introduce the topic; after "le/la/l'" they do not, since
# "le guide de montagne" is a person and "la page de garde" a part of a book.
_FRAMING_FR = r"(?:(?:" + "|".join(FRAMING_WORDS_FR) + r")\s+){0,2}"
_REFERENCE_NOUN_FR = (
    r"(?:guides?|articles?|pages?|fiches?|tutoriels?|dossiers?|billets?|introduction|présentation|aperçu)"
)
_TOPIC_FR = r"(?:sur|à\s+propos\s+(?:de|du|des|d['’])|au\s+sujet\s+(?:de|du|des|d['’])|consacrée?s?\s+(?:à|au|aux))"
_POSSESSIVE_TOPIC_FR = r"(?:de|du|des|d['’]|pour)"
# Where a referent ends in German and French: punctuation as in English, or a clause's verb.
_REFERENT_END_DE_FR = (
    r"(?=[.!?](?:\s|$)|[,;:()\[\]\n]|\s[—–]\s|\s-\s|$"
    # German puts the verb second: "im Beitrag über X sehen Sie …" ends at the verb before its subject.
    # ("du" is left out: in French it is an article).
    r"|\s[^\W\d_]+\s+(?:(?-i:Sie|Ihnen)|man|wir)\b"
    r"|\s(?:und\s+(?:dann|für|sehen|lesen)|aber|sondern|denn|weil|wenn|bevor|nachdem|erklärt|zeigt|beschreibt"
    r"|hilft|ist|sind|hat|haben|wird|werden|kann|können|enthält|gibt|lohnt|bietet|erscheint|erscheinen|folgt"
    r"|folgen|kommt|kommen|steht|stehen|liegt|paraîtra|paraît|arrive|arrivera|sortira|suivra|attend|tient"
    r"|et\s+(?:pour|ensuite|puis)|mais|avant|après|parce|quand|lorsque|si|qui|explique|montre|décrit|aide"
    r"|présente|donne|contient|vous|est|sont|a|ont|sera|peut|pourra|vaut)\b)"
)
# Words that make "die nächste Seite" / "la page suivante" positional rather than a title.
_POSITIONAL_DE_FR = frozenset(
    "nächste nächsten vorige vorigen vorherige vorherigen letzte letzten erste ersten folgende folgenden "
    "gleiche gleichen selbe selben andere anderen hintere hinteren vordere vorderen linke linken rechte "
    "rechten suivante précédente dernière première même autre d'accueil blanche".split()
)

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "our guide on X", "the article about X", "our complete guide to X", "our guides on X": the whole
    # phrase is the link text.
    (
        "noun-on-topic",
        re.compile(
            rf"\b(?P<text>(?:our|the)\s+{_FRAMING}{_REFERENCE_NOUN}\s+(?:on|to|about|for)\s+"
            rf"(?P<topic>.+?){_REFERENT_END})",
            re.IGNORECASE,
        ),
    ),
    # "the X page", "our X guide", "the benefits of ANR page": up to six title words.
    (
        "titled-noun",
        re.compile(
            rf"\b(?P<text>(?:our|the)\s+"
            rf"(?P<topic>(?:(?!{_NOT_IN_TITLE}\b){_WORD}\s+|of\s+){{1,6}}){_REFERENCE_NOUN})\b"
            # Peek at the next word without consuming it, to spot a verb ("the rangers guide you").
            rf"(?=\s+(?P<after>{_WORD})|)",
            re.IGNORECASE,
        ),
    ),
    # "See Shaping a Round Loaf (https://…)": a title the author followed with its address.
    (
        "title-and-url",
        re.compile(
            r"\b(?:see|read|visit|try|check out)\s+(?P<text>(?P<topic>[A-Z][^()\[\]\n]{2,80}?)\s+"
            r"\((?P<url>https?://[^\s()]+)\))",
            re.IGNORECASE,
        ),
    ),
    # German: "unser Leitfaden zum Füttern des Sauerteigs", "im Artikel über Tomaten im Topf".
    (
        "noun-on-topic-de",
        re.compile(
            rf"(?<!\w)(?P<text>{_DETERMINER_DE}\s+{_FRAMING_DE}{_REFERENCE_NOUN_DE}\s+{_CONNECTOR_DE}\s+"
            rf"(?P<topic>.+?)){_REFERENT_END_DE_FR}",
            re.IGNORECASE,
        ),
    ),
    # French: "notre guide sur le levain", "l'article consacré au compost", "notre guide complet du
    # compostage".
    (
        "noun-on-topic-fr",
        re.compile(
            rf"(?<!\w)(?P<text>(?:(?:notre|nos|le|la|les|ce|cet|cette|ces)\s+|l['’]){_FRAMING_FR}{_REFERENCE_NOUN_FR}"
            rf"\s+{_FRAMING_FR}{_TOPIC_FR}\s*(?P<topic>.+?)){_REFERENT_END_DE_FR}",
            re.IGNORECASE,
        ),
    ),
    (
        "possessive-noun-de-fr",
        re.compile(
            rf"(?<!\w)(?P<text>(?:notre|nos)\s+{_FRAMING_FR}{_REFERENCE_NOUN_FR}\s+{_FRAMING_FR}"
            rf"{_POSSESSIVE_TOPIC_FR}\s*(?P<topic>.+?)){_REFERENT_END_DE_FR}",
            re.IGNORECASE,
        ),
    ),
    # A quoted title after the noun: 'unseren Artikel „Brot formen“', 'notre guide « Nourrir le
    # levain »', 'our article "Shaping a Round Loaf"'. The quotation marks are part of the link text.
    (
        "noun-quoted-title",
        re.compile(
            rf"(?<!\w)(?P<text>(?:{_DETERMINER_DE}|our|the|notre|nos|le|la|les|l['’])\s*"
            rf"(?:{_FRAMING_DE}{_REFERENCE_NOUN_DE}|{_FRAMING}{_REFERENCE_NOUN}|{_FRAMING_FR}{_REFERENCE_NOUN_FR})\s+"
            r"(?:[„“\"«‚]\s?(?P<topic>[^„“”\"«»‚‘\n]{2,80}?)\s?[“”\"»‘]))",
            re.IGNORECASE,
        ),
    ),
    # German compounds: "unsere Glossar-Seite", "die Sauerteig-Anleitung", "unser Formen-Leitfaden".
    # Kept only when they name a guide ("die Web-Seite" names none).
    (
        "compound-de",
        re.compile(
            rf"(?<!\w)(?P<text>{_DETERMINER_DE}\s+{_FRAMING_DE}(?P<topic>[^\W\d_][\w]*(?:-[^\W\d_]\w*)*)-"
            rf"{_REFERENCE_NOUN_DE})(?!\w)",
            re.IGNORECASE,
        ),
    ),
    # "read more in X", "learn more about X": X is the link text. Only kept when X names a guide, since
    # "learn more about the weather" is no reference at all.
    (
        "read-more",
        re.compile(
            rf"\b(?:read|learn|find out)\s+more\s+(?:in|at|on|about)\s+"
            rf"(?P<text>(?P<topic>.+?)){_REFERENT_END}",
            re.IGNORECASE,
        ),
    ),
)
_TITLE_AND_URL = re.compile(r"^(?P<label>.*\S)\s+\((?P<url>https?://[^\s()]+)\)$", re.DOTALL)
_MARKDOWN_LINK = re.compile(r"^!?\[(?P<label>.*)\]\((?P<url>[^\s)]*)(?:\s+\"[^\"]*\")?\)$", re.DOTALL)


class GuideCatalogueError(ValueError):
    """The guide catalogue file is unreadable or invalid; the message names the file and the guide."""


@dataclass(frozen=True)
class Guide:
    key: str
    title: str
    url: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class GuideCatalogue:
    guides: tuple[Guide, ...]

    def get(self, key: str) -> Guide | None:
        return next((guide for guide in self.guides if guide.key == key), None)

    def match(self, reference_text: str) -> Guide | None:
        """Return the guide that ``reference_text`` most likely points to, or None.

        1. Reduce the reference and each of a guide's phrases and its title to distinctive words
           (:func:`distinctive_words`): articles, framing words ("our complete guide to") and plurals
           are normalised away.
        2. Score each pair by ``|shared| / max(|reference|, |phrase|)``: both sides must be mostly
           covered, so one shared word in three is no match; a guide's score is its best phrase.
        3. Return the best-scoring guide if it reaches ``MATCH_THRESHOLD``; on a tie the guide listed
           first in the catalogue wins.
        """
        reference_words = distinctive_words(reference_text)
        if not reference_words:
            return None
        best_guide: Guide | None = None
        best_score = 0.0
        for guide in self.guides:
            for phrase in (*guide.phrases, guide.title):
                phrase_words = distinctive_words(phrase)
                if not phrase_words:
                    continue
                shared = len(reference_words & phrase_words)
                score = shared / max(len(reference_words), len(phrase_words))
                if score > best_score:
                    best_guide, best_score = guide, score
        return best_guide if best_score >= MATCH_THRESHOLD else None

    def by_url(self, url: str) -> Guide | None:
        """The guide at ``url`` (ignoring a trailing slash, the scheme's case and a fragment)."""
        wanted = _normal_url(url)
        return next((guide for guide in self.guides if _normal_url(guide.url) == wanted), None)


def _normal_url(url: str) -> str:
    url = url.split("#", 1)[0].strip()
    scheme, separator, rest = url.partition("://")
    return scheme.lower() + separator + rest.rstrip("/")


@dataclass(frozen=True)
class Reference:
    # The words in the paragraph that refer to a guide, e.g. "our guide on feeding a starter".
    text: str
    start: int  # offset of `text` in the paragraph
    end: int
    guide: Guide | None  # None when no guide matched
    # True when the article already links these words: they count for "further reading" but are
    # never linked a second time.
    linked: bool = False


def distinctive_words(text: str) -> frozenset[str]:
    """Normalise ``text`` to the set of words that identify a topic.

    Lowercase; hyphens and slashes become spaces ("let-down" → "let", "down"); other punctuation is
    dropped; stopwords and reference framing words go; a possessive "'s" and a plural "s" are folded
    ("starters" → "starter", "loaves" stays distinct, which is fine for matching phrases).
    """
    words = set()
    for raw_word in re.split(r"[\s\-–—/]+", text.lower().replace("’", "'")):
        cleaned = re.sub(r"[^\w']", "", raw_word)
        # French elision: "l'article" → "article", "d'arrosage" → "arrosage".
        cleaned = re.sub(r"^(?:l|d|qu|j|n|s|c|m|t)'(?=\w)", "", cleaned)
        if cleaned in STOPWORDS:  # "beginner's" frames a guide; "beginners" names a topic
            continue
        word = cleaned.removesuffix("'s").strip("'")
        if not word or word in STOPWORDS:
            continue
        if len(word) > 5 and word.endswith("en"):  # German plurals and cases: "Fachbegriffen", "Tomaten"
            word = word[:-1]
        if len(word) > 3 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if word not in STOPWORDS:
            words.add(word)
    return frozenset(words)


def find_references(paragraph: str, catalogue: GuideCatalogue) -> list[Reference]:
    """Find the phrases in ``paragraph`` (inline Markdown) that point readers to a guide.

    1. Links already in the paragraph are references when their address is a guide's, or when their
       text reads like one ("[our guide on shaping](…)"); they come back with ``linked=True``, and
       every link or code span is closed to the patterns, so an existing link is never linked again.
    2. Run the reference patterns in priority order: "our guide on X" (most explicit; framing words
       such as "complete" allowed), "the X page" / "our X guide", "See Title (url)", "read more in X".
    3. Reject false positives: a topic without distinctive words ("the next page", "our guide to
       it", "our latest article"), a positional "the X page", "guide"/"page" used as a verb ("the
       rangers guide you"), and a "read more in X" or "See X (url)" that names no guide.
    4. Keep a candidate only if it does not overlap one already kept, so "read more in our guide on
       X" yields one reference.
    5. Match each kept reference's text to the catalogue; return them in paragraph order.
    """
    references: list[Reference] = []
    closed: list[tuple[int, int]] = []
    for start, end in inline_link_spans(paragraph):
        closed.append((start, end))
        link = _MARKDOWN_LINK.match(paragraph[start:end])
        if link is None or paragraph[start] == "!":
            continue
        label = inline_plain(link.group("label"))
        guide = catalogue.by_url(link.group("url"))
        if guide is None and any(pattern.search(label) for _, pattern in _PATTERNS[:2]):
            guide = catalogue.match(label)
        if guide is not None:
            references.append(Reference(paragraph[start:end], start, end, guide, linked=True))

    for pattern_name, pattern in _PATTERNS:
        for found in pattern.finditer(paragraph):
            start, end = found.span("text")
            topic = found.group("topic").strip()
            if pattern_name == "titled-noun" and not _is_titled_reference(topic, found.group("after")):
                continue
            if pattern_name.startswith("noun-on-topic-") and topic.split()[0].lower() in _POSITIONAL_DE_FR:
                continue
            if pattern_name != "titled-noun" and len(topic.split()) > MAX_REFERENT_WORDS:
                continue
            if not distinctive_words(topic):
                continue
            if any(start < closed_end and closed_start < end for closed_start, closed_end in closed):
                continue
            text = paragraph[start:end]
            if pattern_name == "title-and-url":
                guide = catalogue.by_url(found.group("url")) or catalogue.match(topic)
            else:
                guide = catalogue.match(text)
            if guide is None and pattern_name in ("read-more", "title-and-url", "compound-de"):
                continue
            closed.append((start, end))
            references.append(Reference(text=text, start=start, end=end, guide=guide))
    references.sort(key=lambda reference: reference.start)
    return references


def _is_titled_reference(topic: str, word_after: str | None) -> bool:
    """Tell "the glossary page" (a reference) from "the next page" or "the rangers guide you"."""
    topic_words = [word.lower() for word in topic.split()]
    if all(word in _POSITIONAL for word in topic_words):
        return False
    # "guide"/"page" directly followed by an object is a verb.
    return word_after is None or word_after.lower() not in _OBJECT_AFTER_VERB


def link_markdown(paragraph: str, references: Sequence[Reference]) -> str:
    """Return ``paragraph`` with each matched reference as a Markdown link ``[text](url)``.

    References already linked, and any that overlap a link or code span of the paragraph, stay as
    they are: a link is never linked again. "Title (url)" becomes ``[Title](guide url)``. Square
    brackets and stray backslashes in the link text are escaped; parentheses and spaces in the URL
    are percent-encoded so they cannot close the link early. Unmatched references stay plain text.
    """
    protected = inline_link_spans(paragraph)

    def markdown_link(reference: Reference, guide: Guide) -> str | None:
        if reference.linked or any(reference.start < end and start < reference.end for start, end in protected):
            return None
        titled = _TITLE_AND_URL.match(reference.text)
        label = titled.group("label") if titled else reference.text
        label = re.sub(r"\\(?![\\`*_\[\]!&<~])", r"\\\\", label)  # a backslash that escapes nothing
        label = re.sub(r"(?<!\\)([\[\]])", r"\\\1", label)
        return f"[{label}]({link_destination(guide.url)})"

    return _replace_references(paragraph, references, markdown_link)


def link_plain(paragraph: str, references: Sequence[Reference]) -> str:
    """Return ``paragraph`` with each matched reference followed by its URL: ``text (url)``.

    A reference that already carries an address ("Title (url)", or a link) is left as it is."""

    def plain_link(reference: Reference, guide: Guide) -> str | None:
        if reference.linked or _TITLE_AND_URL.match(reference.text):
            return None
        return f"{reference.text} ({guide.url})"

    return _replace_references(paragraph, references, plain_link)


def _replace_references(
    paragraph: str, references: Sequence[Reference], render: Callable[[Reference, Guide], str | None]
) -> str:
    """Splice ``render(reference, guide)`` over each matched reference span, checking the spans.

    References must belong to this paragraph (their text at their offsets) and must not overlap:
    either mistake would corrupt the paragraph, so it raises ValueError instead. A render that
    returns None leaves its reference as it is.
    """
    pieces: list[str] = []
    position = 0
    for reference in sorted(references, key=lambda reference: reference.start):
        if paragraph[reference.start : reference.end] != reference.text:
            raise ValueError(
                f"reference {reference.text!r} is not at offsets {reference.start}-{reference.end}"
                " of the paragraph"
            )
        if reference.start < position:
            raise ValueError(f"reference {reference.text!r} overlaps the previous reference")
        if reference.guide is None:
            continue
        rendered = render(reference, reference.guide)
        if rendered is None:
            continue
        pieces.append(paragraph[position : reference.start])
        pieces.append(rendered)
        position = reference.end
    pieces.append(paragraph[position:])
    return "".join(pieces)


def load_guides(path: Path) -> GuideCatalogue:
    """Load ``content/guides.toml``: a list of ``[[guide]]`` tables with key, title, url, phrases.

    Validation, each failure naming the file and the guide: the file is TOML with a ``guide`` array
    of tables and nothing else; keys are unique slugs; titles are one-line text; urls are absolute
    http(s) URLs without whitespace; phrases is a non-empty list of strings each with at least one
    distinctive word (a phrase of stopwords could never match anything).
    """
    try:
        with path.open("rb") as guide_file:
            document = tomllib.load(guide_file)
    except OSError as exc:
        raise GuideCatalogueError(f"{path}: cannot read guide catalogue: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise GuideCatalogueError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise GuideCatalogueError(f"{path}: not UTF-8 text: {exc}") from exc

    unknown_top = sorted(set(document) - {"guide"})
    if unknown_top:
        raise GuideCatalogueError(
            f"{path}: unknown top-level key(s) {', '.join(unknown_top)}; expected only [[guide]] tables"
        )
    tables = document.get("guide")
    if not isinstance(tables, list) or not tables or not all(isinstance(table, dict) for table in tables):
        raise GuideCatalogueError(f"{path}: expected one or more [[guide]] tables")

    guides: list[Guide] = []
    seen_keys: set[str] = set()
    for number, table in enumerate(tables, start=1):
        guide = _guide_from_table(path, number, table)
        if guide.key in seen_keys:
            raise GuideCatalogueError(
                f"{path}: guide #{number}: key {guide.key!r} is used by an earlier guide"
            )
        seen_keys.add(guide.key)
        guides.append(guide)
    return GuideCatalogue(guides=tuple(guides))


def _guide_from_table(path: Path, number: int, table: dict[str, object]) -> Guide:
    key = table.get("key")
    where = f"{path}: guide #{number}" + (f" ({key!r})" if isinstance(key, str) else "")
    unknown = sorted(set(table) - {"key", "title", "url", "phrases"})
    if unknown:
        raise GuideCatalogueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected key, title, url, phrases"
        )
    for required in ("key", "title", "url", "phrases"):
        if required not in table:
            raise GuideCatalogueError(f"{where}: missing {required!r}")
    if not isinstance(key, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", key):
        raise GuideCatalogueError(
            f"{where}: 'key' must be a slug of lowercase letters, digits and hyphens, got {key!r}"
        )
    title = table["title"]
    if not isinstance(title, str) or not title.strip() or any(char in title for char in "\r\n"):
        raise GuideCatalogueError(f"{where}: 'title' must be non-empty text on one line, got {title!r}")
    url = table["url"]
    if not isinstance(url, str) or not _is_http_url(url):
        raise GuideCatalogueError(f"{where}: 'url' must be an absolute http(s) URL, got {url!r}")
    phrases = table["phrases"]
    if not isinstance(phrases, list) or not phrases:
        raise GuideCatalogueError(f"{where}: 'phrases' must be a non-empty list of strings")
    for phrase in phrases:
        if not isinstance(phrase, str) or not phrase.strip():
            raise GuideCatalogueError(f"{where}: 'phrases' must hold non-empty strings, got {phrase!r}")
        if not distinctive_words(phrase):
            raise GuideCatalogueError(
                f"{where}: phrase {phrase!r} has no distinctive words, so it can never match"
            )
    return Guide(key=key, title=title.strip(), url=url, phrases=tuple(phrase.strip() for phrase in phrases))


def _is_http_url(url: str) -> bool:
    if any(char.isspace() for char in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
