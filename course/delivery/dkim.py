"""DKIM signing (RFC 6376) with dkimpy, per From domain.

COURSE_DKIM maps a From domain to a selector and a private key file; each key is read once, when
the sender starts, so a missing or unreadable file stops the worker with a message naming it rather
than sending unsigned mail. Mail from a domain not listed goes out unsigned. Rotating a key: publish
the new selector's record, point COURSE_DKIM at the new selector and file, restart the workers.

Signed with relaxed/relaxed canonicalisation (survives relays that refold headers or trim trailing
spaces). The headers a reader or a mailbox provider acts on are signed, and those that must not be
added later (List-Unsubscribe-Post, RFC 8058 section 4) are signed even when absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from course.settings import Settings

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"Feedback-ID",
)


class DkimKeyError(ValueError):
    """A configured key that cannot be used; the message names the domain and the file."""


@dataclass(frozen=True)
class _DomainKey:
    selector: bytes
    private_key: bytes


class DkimSigner:
    def __init__(self, keys: dict[str, _DomainKey]) -> None:
        self.keys = keys

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner:
        keys: dict[str, _DomainKey] = {}
        for domain, configured in settings.dkim.items():
            try:
                private_key = configured.private_key_file.read_bytes()
            except OSError as error:
                raise DkimKeyError(
                    f"COURSE_DKIM: cannot read the private key of {domain} ({configured.private_key_file}): {error.strerror or error}"
                ) from error
            if b"PRIVATE KEY-----" not in private_key:
                raise DkimKeyError(f"COURSE_DKIM: {configured.private_key_file} (for {domain}) is not a PEM private key")
            keys[domain.strip().lower()] = _DomainKey(configured.selector.encode("ascii"), private_key)
        return cls(keys)

    def sign(self, message: bytes, from_address: str) -> bytes:
        """The message with a DKIM-Signature header in front when its From domain has a key, else
        the message unchanged."""
        domain = from_address.rpartition("@")[2].strip().lower()
        key = self.keys.get(domain)
        if key is None:
            return message
        signature = dkim.sign(
            message,
            key.selector,
            domain.encode("idna"),
            key.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        return signature + message
