"""How the admin shows a moment: in the signed-in admin's own time zone, with UTC on hover. One
Jinja filter, `admin_time`, used by every admin template that shows a time (through the `when`
macro of _macros.html or directly): `<time datetime="…UTC ISO…" title="6 Dec 2026, 14:05 UTC">6 Dec
2026, 15:05 CET</time>`."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape


def _moment_text(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y, %H:%M} {moment.tzname()}"


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def format_admin_time(moment: datetime | None, zone_name: str | None) -> Markup:
    """A moment (aware, or naive UTC) as the admin reads it; "—" for none. An unset zone is UTC."""
    if moment is None:
        return Markup("—")
    utc = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    local = utc.astimezone(_zone(zone_name)) if zone_name else utc
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(), _moment_text(utc), escape(_moment_text(local))
    )


@pass_context
def admin_time(context: Context, moment: datetime | None) -> Markup:
    """The filter: the zone is the signed-in admin's (the page's `actor`); UTC on a page without one."""
    actor: Any = context.get("actor")
    admin = getattr(actor, "admin", None)
    return format_admin_time(moment, getattr(admin, "time_zone", None))


@cache
def zone_names() -> list[str]:
    """Every IANA zone name, sorted: the account page's list to choose from."""
    return sorted(available_timezones())


def install_filter(environment: Environment) -> None:
    environment.filters["admin_time"] = admin_time
