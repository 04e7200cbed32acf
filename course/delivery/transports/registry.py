"""Transports by provider name, built from settings.

Every configured provider (`default` from the COURSE_SMTP_* variables, others from COURSE_PROVIDERS)
gets a transport on first use. A worker process keeps one per provider and reuses its connection
across batches and tasks; a forked Celery child or another thread never shares its parent's socket.
Which provider a delivery goes through is the caller's choice: today always DEFAULT_PROVIDER.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from course.delivery.transports.base import DEFAULT_PROVIDER, Transport
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.settings import ProviderSettings, Settings


class UnknownProvider(LookupError):
    pass


def _smtp(provider: ProviderSettings) -> Transport:
    return SMTPTransport(SMTPConfig.from_provider(provider))


# Provider kind -> how to build its transport. A new kind of provider registers here.
TRANSPORT_KINDS: dict[str, Callable[[ProviderSettings], Transport]] = {"smtp": _smtp}


class TransportRegistry:
    """The transports of one process and thread, keyed by provider name, built lazily."""

    def __init__(self, providers: dict[str, ProviderSettings]) -> None:
        self.providers = dict(providers)
        self._transports: dict[str, Transport] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> TransportRegistry:
        return cls(settings.provider_settings)

    @property
    def names(self) -> list[str]:
        return list(self.providers)

    def get(self, name: str = DEFAULT_PROVIDER) -> Transport:
        transport = self._transports.get(name)
        if transport is None:
            try:
                provider = self.providers[name]
            except KeyError:
                raise UnknownProvider(
                    f"unknown mail provider {name!r}: configured are {', '.join(self.providers)}"
                ) from None
            transport = self._transports[name] = TRANSPORT_KINDS[provider.kind](provider)
        return transport

    def close(self) -> None:
        transports, self._transports = self._transports, {}
        for transport in transports.values():
            transport.close()


# One registry per process and thread, rebuilt when the provider settings change (tests, reloads).
_local = threading.local()


def shared_registry(settings: Settings) -> TransportRegistry:
    key = (os.getpid(), tuple(settings.provider_settings.items()))
    registry: TransportRegistry | None = getattr(_local, "registry", None)
    if registry is None or getattr(_local, "key", None) != key:
        registry = TransportRegistry(settings.provider_settings)
        _local.registry, _local.key = registry, key
    return registry


def shared_transport(settings: Settings, provider: str = DEFAULT_PROVIDER) -> Transport:
    """This process's transport for `provider`, its connection kept open between tasks."""
    return shared_registry(settings).get(provider)
