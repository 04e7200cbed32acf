"""The JSON signup API: the same signup as the course page, for publishers' own forms and apps.
It uses no cookies, so it needs no CSRF token; it insists on Content-Type application/json, which a
plain HTML form on another site cannot send."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from course.audience.subscriptions import check_signup
from course.web.public.signups import (
    count_and_queue_in_one,
    ip_limit_allows,
    proof_of_work_challenge,
    proof_of_work_passes,
    register,
    signs_up_in_one_statement,
)
from course.web.site import Site, get_site

router = APIRouter(prefix="/api", tags=["subscriptions"])


class SubscriptionRequest(BaseModel):
    course: str = Field(max_length=100, description="The course's slug, as in /courses/<slug>.")
    email: str = Field(max_length=320, description="The subscriber's address; a confirmation link is sent there.")
    name: str = Field("", max_length=1000, description="First name, optional; line breaks and control characters are removed.")
    timezone: str = Field(
        "UTC", max_length=64, description="IANA time zone the lessons follow, e.g. Europe/Berlin.", examples=["Europe/Berlin"]
    )
    altcha: str = Field(
        "",
        max_length=2000,
        description="Only when the site asks for a proof of work (GET /api/proof-of-work answers 200): "
        "the solved challenge, ALTCHA v1 payload in base64. Each solution is good for one signup.",
    )


class ProofOfWorkChallenge(BaseModel):
    algorithm: str = Field(examples=["SHA-256"])
    challenge: str = Field(description="SHA-256 (hex) of salt + the number to find.")
    maxNumber: int = Field(description="The number is at most this.")  # noqa: N815 - ALTCHA's field name
    salt: str
    signature: str


class SubscriptionAccepted(BaseModel):
    status: str = Field(description='Always "confirmation_sent".', examples=["confirmation_sent"])
    message: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: list[FieldError]


class Problem(BaseModel):
    detail: str


def require_json(content_type: Annotated[str | None, Header()] = None) -> None:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "send the request body as JSON with Content-Type: application/json")


@router.post(
    "/subscriptions",
    status_code=202,
    response_model=SubscriptionAccepted,
    dependencies=[Depends(require_json)],
    responses={
        400: {"model": Problem, "description": "The body is not readable JSON (e.g. not UTF-8)."},
        404: {"model": Problem, "description": "No course with that slug."},
        413: {"model": Problem, "description": "The body is larger than the server's limit (64 KB by default)."},
        415: {"model": Problem, "description": "The body is not JSON."},
        422: {"model": ValidationProblem, "description": "A field is missing or invalid."},
        429: {"model": Problem, "description": "Too many signups from this IP address; see Retry-After."},
        500: {"model": Problem, "description": "Our side failed (e.g. the database is unreachable); try again later."},
    },
    summary="Sign an address up for a course (double opt-in)",
)
def create_subscription(
    body: SubscriptionRequest, request: Request, site: Annotated[Site, Depends(get_site)]
) -> SubscriptionAccepted | JSONResponse:
    """Sends a confirmation link to the address; lessons start once it is followed. The answer is
    the same whether or not the address is already subscribed, so the API cannot be used to find
    out who is."""
    course = site.catalogue.course(body.course)
    if course is None:
        raise HTTPException(404, f"no course {body.course!r}")
    if signs_up_in_one_statement(site):
        # One statement: the per-IP count and, when allowed and valid, the queued signup.
        details, errors = check_signup(body.email, body.name, body.timezone.strip() or "UTC")
        if not count_and_queue_in_one(site, request, course.id, details, source="api"):
            raise _too_many_signups(site)
        if details is None:
            return _invalid(errors)
        return _ACCEPTED
    # One transaction: the per-IP count, the proof of work (when asked for), then the queued
    # signup. A 422 commits (the attempt counts, a spent proof stays spent); a 429 rolls back,
    # which changes nothing as the count is over the limit already.
    with site.sessions.begin() as session:
        if not ip_limit_allows(session, site, request):
            raise _too_many_signups(site)
        if not proof_of_work_passes(session, site, body.altcha):
            return JSONResponse(
                {"detail": [{"loc": ["body", "altcha"], "msg": "a solved, unspent proof-of-work challenge is required",
                             "type": "value_error"}]},
                status_code=422,
            )
        details, errors = check_signup(body.email, body.name, body.timezone.strip() or "UTC")
        if details is None:
            return _invalid(errors)
        register(session, site, course.id, details, source="api")
    return _ACCEPTED


_ACCEPTED = SubscriptionAccepted(
    status="confirmation_sent",
    message="If the address can receive mail, a confirmation link is on its way to it.",
)


def _too_many_signups(site: Site) -> HTTPException:
    return HTTPException(
        429, "too many signups from this address; try again later",
        headers={"Retry-After": str(site.settings.rate_limit_window_seconds)},
    )


def _invalid(errors: dict[str, str]) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"} for field, message in errors.items()]},
        status_code=422,
    )


@router.get(
    "/proof-of-work",
    response_model=ProofOfWorkChallenge,
    responses={404: {"model": Problem, "description": "This site asks for no proof of work."}},
    summary="A proof-of-work challenge for one signup (when the site asks for one)",
)
def proof_of_work(site: Annotated[Site, Depends(get_site)]) -> ProofOfWorkChallenge:
    """ALTCHA v1: find the number n (0 <= n <= maxNumber) with SHA-256(salt + n) == challenge and
    send {algorithm, challenge, number, salt, signature} as base64 JSON in the signup's `altcha`."""
    challenge = proof_of_work_challenge(site)
    if challenge is None:
        raise HTTPException(404, "this site asks for no proof of work")
    return ProofOfWorkChallenge.model_validate(challenge)
