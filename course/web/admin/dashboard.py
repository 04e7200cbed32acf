"""The admin's home (/admin lands here) and its JSON (/api/admin/dashboard): signups,
confirmations, unsubscribes and bounces per day over 90 days and deliveries per day by state (two
server-side SVG charts and a table), campaigns in flight with their progress, the workers' and the
dispatcher's heartbeats, and what needs attention (failed deliveries, a stale heartbeat, and
whatever the ATTENTION_SOURCES add: a paused mail provider, once the providers expose their state).

Every figure comes from course.counters or a small indexed read, so the page costs the same at a
million readers as at ten (`course bench --scenario admin`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from course.audience.daily_figures import DailyFigures, daily_figures
from course.campaigns.progress import CampaignSummary, campaign_summaries
from course.delivery.provider_states import ProviderState, provider_states
from course.ops.health import HeartbeatStatus, describe_heartbeats, read_heartbeats
from course.models import Campaign, CampaignStatus
from course.web.admin import api_courses
from course.web.admin.auth import SiteDep, ViewerPage, ViewerToken
from course.web.admin.views import admin_page
from course.web.site import Site

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/admin", tags=["admin"], responses=api_courses.RESPONSES)
IN_FLIGHT = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED)


# Whatever else needs the admin's attention: each source reads what it watches and returns one line
# per problem (none: nothing to say): paused mail providers and campaigns paused on errors (below).
AttentionSource = Callable[[Session, Site], list[str]]
ATTENTION_SOURCES: list[AttentionSource] = []


@dataclass(frozen=True)
class Dashboard:
    figures: DailyFigures
    campaigns: list[CampaignSummary]
    heartbeats: list[HeartbeatStatus]
    more_attention: list[str] = field(default_factory=list)  # from ATTENTION_SOURCES

    @property
    def attention(self) -> list[str]:
        notes = [status.line for status in self.heartbeats if status.stale]
        if self.figures.failed_deliveries:
            notes.append(
                f"{self.figures.failed_deliveries:,} deliveries failed and wait for a look"
                " (course retry-failed sends them again)"
            )
        return notes + self.more_attention


def read_dashboard(site: Site) -> Dashboard:
    with site.sessions.begin() as session:
        figures = daily_figures(session, now=site.now())
        campaigns = [s for s in campaign_summaries(session, now=site.now()) if s.campaign.status in IN_FLIGHT]
        heartbeats = describe_heartbeats(read_heartbeats(session), now=datetime.now(UTC), settings=site.settings)
        more = [line for source in ATTENTION_SOURCES for line in source(session, site)]
        session.expunge_all()
    return Dashboard(figures, campaigns, heartbeats, more)


@dataclass(frozen=True)
class DayBars:
    """Signups per day as bars of an SVG drawn on the server (no script; the CSP is unchanged)."""

    width: int
    height: int
    bars: list[tuple[int, int, int, date, int]]  # x, y, height, day, value


def day_bars(days: list[date], values: list[int], *, bar_width: int = 6, height: int = 120) -> DayBars:
    tallest = max(values, default=0) or 1
    bars = []
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        bar_height = round(value / tallest * (height - 4))
        bars.append((index * bar_width, height - bar_height, bar_height, day, value))
    return DayBars(width=len(days) * bar_width, height=height, bars=bars)


def read_providers(site: Site) -> tuple[list[ProviderState], str]:
    """The mail providers' states (course providers), or why they cannot be read (Redis away)."""
    try:
        return provider_states(site.settings), ""
    except Exception as exc:  # noqa: BLE001 - the dashboard shows the rest, and says what is missing
        return [], f"The mail providers' state cannot be read: {exc}"


def paused_providers(session: Session, site: Site) -> list[str]:
    """A line for each mail provider paused after failing (its rows wait pending), or for a state
    that cannot be read."""
    states, problem = read_providers(site)
    lines = [problem] if problem else []
    for state in states:
        if state.state == "paused":
            until = f" until {state.paused_until:%H:%M} UTC" if state.paused_until else ""
            lines.append(f"Mail provider {state.name} is paused{until}: {state.reason} (course providers --resume {state.name})")
    return lines


def campaigns_paused_on_errors(session: Session, site: Site) -> list[str]:
    """A line for each campaign the error-rate check paused (its reason is kept until resumed)."""
    paused = session.scalars(
        select(Campaign).where(Campaign.status == CampaignStatus.PAUSED, Campaign.paused_reason.is_not(None))
    )
    return [f"Campaign \u201c{campaign.name}\u201d was paused: {campaign.paused_reason}" for campaign in paused]


ATTENTION_SOURCES.extend((paused_providers, campaigns_paused_on_errors))


# Deliveries per day by state: the series stacked, bottom first, and their colours (the legend's too).
DELIVERY_STATES = (("sent", "Sent", "#2f5d8a"), ("failed", "Failed", "#b3261e"), ("bounced", "Bounced", "#b26a00"))


@dataclass(frozen=True)
class StackedBars:
    width: int
    height: int
    rects: list[tuple[int, int, int, str]]  # x, y, height, colour


def stacked_day_bars(days: list[date], series: dict[str, list[int]], *, bar_width: int = 6, height: int = 120) -> StackedBars:
    """One bar a day, each state's count stacked on the one before, scaled to the busiest day."""
    totals = [sum(series[name][index] for name, _, _ in DELIVERY_STATES) for index in range(len(days))]
    tallest = max(totals, default=0) or 1
    rects = []
    for index in range(len(days)):
        bottom = height
        for name, _, colour in DELIVERY_STATES:
            value = series[name][index]
            if value:
                bar_height = max(1, round(value / tallest * (height - 4)))
                bottom -= bar_height
                rects.append((index * bar_width, bottom, bar_height, colour))
    return StackedBars(width=len(days) * bar_width, height=height, rects=rects)


@router.get("/admin/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, site: SiteDep, actor: ViewerPage) -> HTMLResponse:
    board = read_dashboard(site)
    figures = board.figures
    recent = [  # the table: the last 14 days, newest first (the chart has all 90)
        (figures.days[i], {name: values[i] for name, values in figures.series.items()})
        for i in range(len(figures.days) - 1, max(len(figures.days) - 15, -1), -1)
    ]
    return admin_page(
        site, request, "dashboard.html", actor=actor, board=board, recent=recent, totals=figures.totals(),
        signups_chart=day_bars(figures.days, figures.series["signups"]), providers=read_providers(site),
        deliveries_chart=stacked_day_bars(figures.days, figures.series), delivery_states=DELIVERY_STATES,
    )  # fmt: skip


class DashboardOut(BaseModel):
    days: list[date]
    series: dict[str, list[int]]
    campaigns_in_flight: list[dict[str, Any]]
    heartbeats: list[dict[str, Any]]
    attention: list[str]
    providers: list[dict[str, Any]] = Field(default_factory=list, description="each mail provider's state, limits and rate (as `course providers --json`)")


@api_router.get("/dashboard", response_model=DashboardOut)
def dashboard_json(site: SiteDep, actor: ViewerToken) -> DashboardOut:
    """The dashboard's figures: per day over 90 days (signups, confirmations, unsubscribes, bounces,
    deliveries sent, failed, bounced), campaigns in flight, heartbeats and what needs attention."""
    board = read_dashboard(site)
    return DashboardOut(
        days=board.figures.days,
        series=board.figures.series,
        campaigns_in_flight=[
            {"id": s.campaign.id, "name": s.campaign.name, "status": s.campaign.status, "total": s.progress.total,
             "sent": s.progress.sent, "remaining": s.progress.remaining}  # fmt: skip
            for s in board.campaigns
        ],
        heartbeats=[{"component": h.component, "last_seen": h.last_seen, "stale": h.stale, "line": h.line} for h in board.heartbeats],
        attention=board.attention,
        providers=[state.as_dict() for state in read_providers(site)[0]],
    )
