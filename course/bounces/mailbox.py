"""Where returned mail is read from. A Mailbox yields each message once per poll, with a key to
acknowledge it by once its report is recorded; recording is idempotent (by the report's id), so a
message handed out twice, after a crash between the two, changes nothing the second time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class MailboxMessage:
    key: str  # how the mailbox names it (a file name, an IMAP UID)
    raw: bytes


class MailboxError(OSError):
    """The mailbox cannot be read; the message names it."""


class Mailbox(Protocol):
    source: str  # recorded with each report: "folder", "imap"

    def messages(self) -> Iterator[MailboxMessage]: ...

    def done(self, key: str) -> None:
        """The message's report is recorded: the mailbox may let it go."""
        ...


class FolderMailbox:
    """A folder of .eml files (one message each, as a mail client saves them or as `course run`'s
    sink stores them), read in name order. Files are left in place: reading the folder again
    changes nothing, since each report is recorded once."""

    source = "folder"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    total: int | None = None  # messages this poll reads, once listed (for a progress bar)

    def messages(self) -> Iterator[MailboxMessage]:
        if not self.folder.is_dir():
            raise MailboxError(f"bounce folder {str(self.folder)!r} is not a folder")
        paths = sorted(self.folder.glob("*.eml"))
        self.total = len(paths)
        for path in paths:
            try:
                raw = path.read_bytes()
            except OSError as error:
                raise MailboxError(f"cannot read {str(path)!r}: {error.strerror or error}") from error
            yield MailboxMessage(path.name, raw)

    def done(self, key: str) -> None:
        return None
