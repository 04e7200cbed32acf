"""Each provider's state as plain data, for `course providers` and the admin dashboard: whether it
is sending or paused (until when, and why), its limits, and what it is using now (messages this
hour and today, open connections, the rate over the last seconds), all read from the gate that
every worker shares (course/delivery/gate.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from course.delivery.gate import RATE_WINDOW_SECONDS, Gate, gate_from_settings
from course.settings import Settings


@dataclass(frozen=True)
class ProviderState:
    name: str
    host: str
    port: int
    state: str  # "ok" or "paused"
    paused_until: datetime | None
    reason: str  # why it is paused ("" when ok)
    failures_in_a_row: int
    max_per_second: float | None
    max_per_hour: int | None
    max_per_day: int | None
    max_connections: int | None
    from_domains: tuple[str, ...]
    sent_this_hour: int
    sent_today: int
    connections: int
    rate_per_second: float  # mean over the last RATE_WINDOW_SECONDS full seconds
    in_fallback: bool  # named in COURSE_PROVIDER_FALLBACK

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["paused_until"] = self.paused_until.isoformat() if self.paused_until else None
        data["from_domains"] = list(self.from_domains)
        return data

    @property
    def limits(self) -> str:
        parts = [
            f"{self.max_per_second:g}/s" if self.max_per_second else "",
            f"{self.max_per_hour:,}/h" if self.max_per_hour else "",
            f"{self.max_per_day:,}/day" if self.max_per_day else "",
            f"{self.max_connections} connections" if self.max_connections else "",
        ]
        return ", ".join(part for part in parts if part) or "none"


def provider_states(settings: Settings, gate: Gate | None = None) -> list[ProviderState]:
    """Every configured provider, `default` first. Raises what the gate raises when its Redis is down."""
    gate = gate or gate_from_settings(settings)
    states = []
    for name, provider in settings.provider_settings.items():
        health, usage = gate.health(name), gate.usage(name)
        states.append(
            ProviderState(
                name=name, host=provider.host, port=provider.port,
                state="paused" if health.paused_until else "ok", paused_until=health.paused_until, reason=health.reason,
                failures_in_a_row=health.failures, max_per_second=provider.max_per_second,
                max_per_hour=provider.max_per_hour, max_per_day=provider.max_per_day,
                max_connections=provider.max_connections, from_domains=provider.from_domains,
                sent_this_hour=usage.sent_this_hour, sent_today=usage.sent_today, connections=usage.connections,
                rate_per_second=usage.rate_per_second, in_fallback=name in settings.provider_fallback,
            )  # fmt: skip
        )
    return states


__all__ = ["RATE_WINDOW_SECONDS", "ProviderState", "provider_states"]
