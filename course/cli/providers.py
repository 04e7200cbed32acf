"""`course providers`: each mail provider's state (sending, or paused until when and why), its
limits and what it is using now, from the gate every worker shares; `--resume NAME` lifts a pause
by hand (the provider's rows are then tried at their due time)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from course.cli.errors import CommandError
from course.delivery.gate import gate_from_settings
from course.delivery.provider_states import RATE_WINDOW_SECONDS, provider_states
from course.settings import get_settings


def providers_command(
    as_json: Annotated[bool, typer.Option("--json", help="print the states as JSON")] = False,
    resume: Annotated[str, typer.Option("--resume", help="lift the pause of this provider now")] = "",
) -> None:
    """Each provider's state, limits and current rate."""
    settings = get_settings()
    gate = gate_from_settings(settings)
    try:
        if resume:
            if resume not in settings.provider_settings:
                raise CommandError(f"no provider named {resume!r} (configured: {', '.join(settings.provider_settings)})")
            gate.resume(resume)
        states = provider_states(settings, gate)
    except CommandError:
        raise
    except Exception as exc:  # noqa: BLE001 - Redis down: one line, not a traceback
        raise CommandError(f"cannot read the providers' state from Redis ({settings.redis_url}): {exc}") from None
    if as_json:
        sys.stdout.write(json.dumps([state.as_dict() for state in states], indent=2) + "\n")
        return
    table = Table(title="Mail providers" + ("" if settings.redis_url else " (this process only: no REDIS_URL)"))
    for column in ("provider", "server", "state", "limits", f"rate (last {RATE_WINDOW_SECONDS} s)", "this hour", "today", "connections"):
        table.add_column(column, justify="right" if column.startswith(("rate", "this", "today", "conn")) else "left")
    for state in states:
        shown = "ok" if state.state == "ok" else f"paused until {state.paused_until:%H:%M:%S} UTC: {state.reason}"
        table.add_row(
            state.name + ("" if not state.from_domains else f" ({', '.join(state.from_domains)})"),
            f"{state.host}:{state.port}", shown, state.limits, f"{state.rate_per_second:g}/s",
            f"{state.sent_this_hour:,}", f"{state.sent_today:,}", str(state.connections),
        )  # fmt: skip
    out = Console(soft_wrap=True, width=max(Console().width, 160))  # a reason is a long line: wrap it no narrower
    out.print(table)
    out.print(f"fallback order: {' → '.join(settings.provider_fallback)}")
