"""Which provider a message goes through: a pure decision, tested on its own.

A message's route is an ordered list of provider names, tried in that order:

1. its own provider: the campaign's (admin form, API field), or for a lesson the course's
   (`provider` in the course file), when it names a configured provider;
2. the providers whose `from_domains` hold the From address's domain (or a parent of it), in the
   order they are configured (`default` first);
3. the fallback order (COURSE_PROVIDER_FALLBACK, `["default"]` unless configured).

Each name appears once, at its first place. At send time the first provider of the route that is
not paused takes the message (choose); when every one is paused the message waits in the database
until the earliest pause ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from course.settings import ProviderSettings, Settings


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def serves_domain(provider: ProviderSettings, domain: str) -> bool:
    """Whether the provider routes this From domain: listed, or a subdomain of one listed."""
    return any(domain == listed or domain.endswith("." + listed) for listed in provider.from_domains)


def route(
    *,
    own: str | None,
    from_address: str,
    providers: Mapping[str, ProviderSettings],
    fallback: Sequence[str],
) -> tuple[str, ...]:
    """The ordered providers a message from `from_address` may take (see the module docstring).
    Names not configured are left out; an empty route means nothing configured can take it."""
    domain = domain_of(from_address)
    candidates = [own] if own else []
    candidates += [name for name, provider in providers.items() if serves_domain(provider, domain)]
    candidates += list(fallback)
    ordered: list[str] = []
    for name in candidates:
        if name in providers and name not in ordered:
            ordered.append(name)
    return tuple(ordered)


def route_for(settings: Settings, *, own: str | None, from_address: str) -> tuple[str, ...]:
    return route(own=own, from_address=from_address, providers=settings.provider_settings, fallback=settings.provider_fallback)


def choose(path: Sequence[str], paused_until: Mapping[str, datetime]) -> tuple[str | None, datetime | None]:
    """The first provider of `path` not paused, or (None, when the earliest pause among them ends)."""
    for name in path:
        if name not in paused_until:
            return name, None
    ends = [paused_until[name] for name in path]
    return None, min(ends) if ends else None
