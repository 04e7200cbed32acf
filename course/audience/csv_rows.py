"""Reading a subscriber CSV as other tools export it (Mailchimp, listmonk, a spreadsheet): pure
functions from bytes to checked rows, with no database.

1. The encoding is stated or detected from the start of the file: a BOM names UTF-8 or UTF-16 (as
   Excel writes "Unicode text"); otherwise UTF-8, unless the sample holds bytes that are not UTF-8
   and no UTF-8 sequence at all, which is Windows-1252 (Latin-1 as spreadsheets write it). A file
   that mixes the two stays UTF-8 and each line that is not is rejected on its own.
2. The delimiter is stated or sniffed from the header line (comma, semicolon, tab or bar).
3. The header names the columns: `email` is required, `name`, `timezone`, `language`, `tags` and
   `created_at` are read, anything else is reported as unknown and ignored.
4. Each row is checked on its own and either becomes a CheckedRow or gets one reason (invalid
   address, unknown zone, a NUL byte, an over-long field...): a bad row never stops the file.

A file that cannot be read as a table at all (binary, no email column, no rows) raises
ImportFileError with one message, before anything is written."""

from __future__ import annotations

import codecs
import csv
import io
import re
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from datetime import datetime, timezone
from typing import BinaryIO, NamedTuple

from course.audience.enrollment import SubscriptionError, clean_name, is_a_name, normalize_email
from course.audience.schedule import parse_timezone
from course.i18n import SUPPORTED_LANGUAGES

KNOWN_COLUMNS = ("email", "name", "timezone", "language", "tags", "created_at")
# What other tools call the same columns (compared lower-cased, spaces and dashes as underscores).
COLUMN_ALIASES = {
    "email_address": "email", "e_mail": "email", "mail": "email", "address": "email",
    "first_name": "name", "fname": "name", "full_name": "name",
    "time_zone": "timezone", "tz": "timezone", "lang": "language", "locale": "language",
    "tag": "tags", "created": "created_at", "signup_date": "created_at", "subscribed_at": "created_at",
    "optin_time": "created_at", "confirm_time": "created_at",
}  # fmt: skip
DELIMITERS = ",;\t|"
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
MAX_FIELD_CHARS = 1000  # no column of a subscriber is longer; a longer field is a broken row
MAX_TAG_CHARS = 64
# The csv module's own ceiling per field: above MAX_FIELD_CHARS so a 10 MB field is one rejected
# row, below anything that would take the machine's memory.
CSV_FIELD_LIMIT = 64 * 1024 * 1024
SAMPLE_BYTES = 1 << 20
TAG_SEPARATORS = re.compile(r"[,;|]")
# The addresses almost every list is made of, accepted without email-validator's full parse (which
# costs ~40 µs a row: 40 s per million). Anything else goes through email-validator.
_PLAIN_ADDRESS = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:com|org|net|de|fr|uk|io|nl|at|ch|es|it|eu|info|edu|gov|co|us|ca|au|be)",
    re.IGNORECASE,
)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported: the message says why, and nothing was written."""


@dataclass(frozen=True)
class FileShape:
    encoding: str
    delimiter: str
    columns: dict[str, int]  # known column -> position
    unknown_columns: list[str]

    @cached_property
    def positions(self) -> tuple[int, ...]:
        """Each of KNOWN_COLUMNS' position, or a position past any row for a column not in the file."""
        return tuple(self.columns.get(column, sys.maxsize) for column in KNOWN_COLUMNS)


class CheckedRow(NamedTuple):  # a tuple: a million are made per import, and a tuple is made fastest
    line: int
    email: str  # normalised; as written in the file when rejected (cut to 320 characters)
    name: str = ""
    timezone: str = ""  # empty: not given
    language: str = ""
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    problem: str = ""  # empty: the row is fine

    @property
    def email_key(self) -> str:
        return self.email.lower()


@dataclass
class ReadProgress:
    bytes_read: int = 0
    rows: int = 0
    shape: FileShape | None = field(default=None)


def detect_encoding(sample: bytes) -> str:
    """The encoding of a file starting with `sample` (see the module's first step)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample[:4096]:
        # UTF-16 without a BOM: every other byte of an ASCII header is NUL.
        even, odd = sample[0:4096:2], sample[1:4096:2]
        if odd.count(0) > len(odd) * 0.4 and even.count(0) < len(even) * 0.1:
            return "utf-16-le"
        if even.count(0) > len(even) * 0.4 and odd.count(0) < len(odd) * 0.1:
            return "utf-16-be"
        # A few NUL bytes in a text: those lines are rejected one by one (_looks_binary catches many).
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":  # a character cut by the end of the sample
            return "utf-8"
    if _has_utf8_sequence(sample):
        return "utf-8"  # mixed: the lines that are not UTF-8 are rejected one by one
    return "cp1252"


def _has_utf8_sequence(sample: bytes) -> bool:
    return re.search(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}", sample) is not None


def column_of(header: str) -> str:
    name = re.sub(r"[\s-]+", "_", header.strip().strip("\ufeff").lower())
    return COLUMN_ALIASES.get(name, name)


def read_shape(header_line: str, encoding: str, delimiter: str | None) -> FileShape:
    if delimiter is None:
        counts = {candidate: header_line.count(candidate) for candidate in DELIMITERS}
        delimiter = max(counts, key=lambda candidate: counts[candidate])
        if counts[delimiter] == 0:
            delimiter = ","
    if len(delimiter) != 1:
        raise ImportFileError(f"the delimiter must be one character, not {delimiter!r}")
    header = next(csv.reader([header_line], delimiter=delimiter), [])
    columns: dict[str, int] = {}
    unknown: list[str] = []
    for position, raw in enumerate(header):
        name = column_of(raw)
        if name in KNOWN_COLUMNS and name not in columns:
            columns[name] = position
        elif raw.strip():
            unknown.append(raw.strip()[:100])
    if "email" not in columns:
        shown = ", ".join(repr(raw.strip()[:40]) for raw in header[:8]) or "nothing"
        raise ImportFileError(f"no email column: the first line names {shown}; name one column 'email'")
    return FileShape(encoding=encoding, delimiter=delimiter, columns=columns, unknown_columns=unknown)


def check_row(line: int, values: list[str], shape: FileShape, *, extra_tags: tuple[str, ...] = ()) -> CheckedRow:
    """One data row: a CheckedRow with its cleaned values, or with `problem` saying what is wrong.
    (A million rows go through here: each column is read once, and the common case, an empty
    optional column, costs one comparison.)"""
    count = len(values)
    email_at, name_at, zone_at, language_at, tags_at, created_at_at = shape.positions
    raw_email = values[email_at].strip() if email_at < count else ""
    shown = raw_email[:320]

    def rejected(problem: str) -> CheckedRow:
        return CheckedRow(line=line, email=_printable(shown), problem=problem)

    if max(map(len, values)) > MAX_FIELD_CHARS:
        for position, text in enumerate(values):
            if len(text) > MAX_FIELD_CHARS:
                return rejected(f"field {position + 1} is {len(text):,} characters long (at most {MAX_FIELD_CHARS:,})")
    joined = "".join(values)
    if "\x00" in joined:
        return rejected("the line holds a NUL byte")
    if not joined.isascii() and _UNDECODED.search(joined):
        return rejected(f"the line is not {shape.encoding} (the file mixes encodings): save it as UTF-8")
    if not raw_email:
        return rejected("no email address")
    try:
        email = _checked_address(raw_email)
    except SubscriptionError:
        return rejected(f"invalid email address {_printable(raw_email[:100])!r}")
    name = values[name_at].strip() if name_at < count else ""
    if name:
        name, reads_as_name = _name_check(name)
        if not reads_as_name:
            return rejected(f"the name {_printable(name[:60])!r} does not read as a name (no links, addresses or symbols)")
    zone = raw_zone = values[zone_at].strip() if zone_at < count else ""
    if zone:
        zone = _zone_key(raw_zone)
        if zone is None:
            return rejected(f"unknown time zone {_printable(raw_zone[:64])!r}")
    language = raw_language = values[language_at].strip() if language_at < count else ""
    if language:
        language = _language_key(raw_language)
        if language not in SUPPORTED_LANGUAGES:
            return rejected(f"unknown language {_printable(raw_language[:20])!r} (known: {', '.join(SUPPORTED_LANGUAGES)})")
    raw_tags = values[tags_at].strip() if tags_at < count else ""
    tags: list[str] = []
    for tag in [*TAG_SEPARATORS.split(raw_tags), *extra_tags] if raw_tags else extra_tags:
        tag = " ".join(tag.split())
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS or not tag.isprintable():
            return rejected(f"the tag {_printable(tag[:40])!r} is not a tag (at most {MAX_TAG_CHARS} printable characters)")
        if tag not in tags:
            tags.append(tag)
    raw_created = values[created_at_at].strip() if created_at_at < count else ""
    created_at = None
    if raw_created:
        try:
            created_at = _moment(raw_created)
        except ValueError:
            return rejected(f"created_at {_printable(raw_created[:40])!r} is not a date (YYYY-MM-DD or ISO 8601)")
    return CheckedRow(
        line=line, email=email, name=name, timezone=zone, language=language, tags=tuple(tags), created_at=created_at
    )


@lru_cache(maxsize=256)
def _language_key(raw: str) -> str:
    return raw.lower().replace("_", "-").split("-")[0]


# Bytes that were not in the file's encoding, kept as lone surrogates by "surrogateescape".
_UNDECODED = re.compile("[\udc80-\udcff]")


# First names, zones and signup dates repeat through a list: each distinct one is checked once.
@lru_cache(maxsize=65536)
def _name_check(raw: str) -> tuple[str, bool]:
    name = clean_name(raw)
    return name, not name or is_a_name(name)


@lru_cache(maxsize=65536)
def _moment(raw: str) -> datetime:
    return parse_moment(raw)


@lru_cache(maxsize=4096)
def _zone_key(name: str) -> str | None:
    try:
        return parse_timezone(name).key
    except ValueError:
        return None


def _checked_address(raw: str) -> str:
    if _PLAIN_ADDRESS.fullmatch(raw):
        local, _, domain = raw.rpartition("@")
        return f"{local}@{domain.lower()}"
    return normalize_email(raw)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in text)


def parse_moment(raw: str) -> datetime:
    """A date or ISO 8601 moment ("2024-03-01", "2024-03-01 10:00:00", "…+02:00", "…Z"), in UTC."""
    moment = datetime.fromisoformat(raw.strip())
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


class _CountingReader(io.RawIOBase):
    """A binary file that counts what was read from it, for the progress bar."""

    def __init__(self, raw: BinaryIO, progress: ReadProgress) -> None:
        self.raw = raw
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.progress.bytes_read += len(data)
        return len(data)


def read_rows(
    raw: BinaryIO,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    extra_tags: tuple[str, ...] = (),
    progress: ReadProgress | None = None,
) -> Iterator[CheckedRow]:
    """Every data row of a CSV file, checked, in constant memory. The file's shape is set on
    `progress.shape` once the header is read; ImportFileError for a file that is not a table."""
    progress = progress if progress is not None else ReadProgress()
    sample = raw.read(SAMPLE_BYTES)
    raw.seek(0)
    if not sample.strip():
        raise ImportFileError("the file is empty")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ImportFileError(f"unknown encoding {encoding!r}; for example: {', '.join(ENCODINGS)}") from None
    chosen = encoding or detect_encoding(sample)
    if _looks_binary(sample, chosen):
        raise ImportFileError("this is not a CSV file: it holds binary data")
    errors = "surrogateescape" if codecs.lookup(chosen).name in ("utf-8", "utf-8-sig") else "strict"
    text = io.TextIOWrapper(io.BufferedReader(_CountingReader(raw, progress), 1 << 16), encoding=chosen, errors=errors, newline="")
    header_line = text.readline()
    try:
        shape = read_shape(header_line.rstrip("\r\n"), chosen, delimiter)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file is not {chosen}: {exc.reason}") from None
    progress.shape = shape
    csv.field_size_limit(min(CSV_FIELD_LIMIT, sys.maxsize))
    reader = csv.reader(text, delimiter=shape.delimiter, strict=False)
    line = 1  # the header
    try:
        for values in reader:
            line_of_row = line + 1
            line = 1 + reader.line_num  # a quoted field may span lines: report the line it starts on
            if not any(value.strip() for value in values):
                continue  # blank lines are not rows
            progress.rows += 1
            yield check_row(line_of_row, values, shape, extra_tags=extra_tags)
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"line {line + 1} is not {chosen} ({exc.reason}): state the file's encoding") from None
    except csv.Error as exc:
        raise ImportFileError(f"line {line + 1}: {exc}") from None


def _looks_binary(sample: bytes, encoding: str) -> bool:
    """Control bytes other than tab and line ends in a text that is not UTF-16: a zip, an image, a
    spreadsheet saved as .xlsx instead of CSV."""
    if encoding.startswith("utf-16"):
        return False
    controls = sum(1 for byte in sample[:65536] if byte < 32 and byte not in (9, 10, 13))
    return sample[:4] in (b"PK\x03\x04", b"\x89PNG", b"%PDF") or controls > max(8, len(sample[:65536]) // 100)
