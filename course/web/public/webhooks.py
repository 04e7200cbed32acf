"""Provider webhooks at /webhooks/<provider>: a thin shell over course/bounces/webhooks.

Each request, in order:
1. The provider must be on (its secret set): else 404, as if there were no such address.
2. The per-IP rate limit (course/ratelimit.py, COURSE_WEBHOOK_LIMIT_PER_MINUTE): else 429. Counted
   before the signature is checked, so a flood of forgeries costs a counter bump each, not an RSA
   verification (or an SNS certificate fetch).
3. The body is at most COURSE_WEBHOOK_MAX_BYTES (BodySizeLimit, before this runs): else 413.
4. Verified and read as the provider signs and shapes it: else 401 (signature) or 400 (body).
5. Its bounces and complaints stored, once per provider event id (a replay stores nothing), in one
   transaction with the rate-limit count; 200 with how many were new. A beat task applies them
   (worker/bounce_tasks.py), so the provider's request never waits for the suppressions."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from course.bounces.webhooks.events import Provider, WebhookOptions, WebhookRefused, WebhookRequest
from course.bounces.webhooks.providers import read_events
from course.bounces.webhooks.store import store_events
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit
from course.web.public.signups import client_address
from course.web.site import Site, get_site

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookAccepted(BaseModel):
    received: int = Field(description="Bounces and complaints the request reported (other events are ignored).")
    new: int = Field(description="Of those, how many were not stored before: a replayed event counts 0.")


class WebhookProblem(BaseModel):
    detail: str


_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": WebhookProblem, "description": "The body is not what the provider sends."},
    401: {"model": WebhookProblem, "description": "The signature (or credentials) did not verify."},
    404: {"model": WebhookProblem, "description": "This provider's webhook is not configured."},
    413: {"model": WebhookProblem, "description": "The body is over COURSE_WEBHOOK_MAX_BYTES."},
    429: {"model": WebhookProblem, "description": "Too many requests from this address."},
}

_ANY_JSON: dict[str, Any] = {"description": "The provider's JSON, as it sends it.", "type": ["object", "array"]}

_BODIES: dict[Provider, tuple[str, dict[str, Any], str]] = {
    Provider.SES: (
        "Amazon SES through SNS",
        {"type": "object", "description": "An SNS message (Notification or SubscriptionConfirmation), signed by AWS."},
        "text/plain",
    ),
    Provider.POSTMARK: (
        "Postmark (HTTP Basic credentials in the webhook URL)",
        {"type": "object", "description": "A Postmark Bounce or SpamComplaint event."},
        "application/json",
    ),
    Provider.SENDGRID: (
        "SendGrid's signed event webhook (ECDSA)",
        {"type": "array", "items": {"type": "object"}, "description": "SendGrid events (bounce, spamreport; the rest is ignored)."},
        "application/json",
    ),
    Provider.MAILGUN: (
        "Mailgun (HMAC signature in the body)",
        {"type": "object", "description": "A Mailgun webhook: signature and event-data (failed, complained)."},
        "application/json",
    ),
    Provider.GENERIC: (
        "The generic JSON format (X-Course-Signature: t=<unix>,v1=<hex HMAC-SHA256>)",
        {
            "type": "object",
            "required": ["events"],
            "properties": {
                "events": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "type", "recipient"],
                        "properties": {
                            "id": {"type": "string"},
                            "type": {"enum": ["hard_bounce", "soft_bounce", "complaint"]},
                            "recipient": {"type": "string", "format": "email"},
                            "message_id": {"type": "string"},
                            "return_path": {"type": "string"},
                            "status": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                }
            },
        },
        "application/json",
    ),
}


def _rule(site: Site) -> RateLimit:
    return RateLimit("webhook-ip", site.settings.webhook_limit_per_minute, timedelta(minutes=1))


def _receive(provider: Provider, site: Site, request: Request, body: bytes) -> WebhookAccepted:
    """The module's steps 1, 2, 4 and 5 (3 is the middleware's)."""
    options = WebhookOptions.from_settings(site.settings, certificates=getattr(request.app.state, "sns_certificates", None))
    if not options.enabled(provider):
        raise HTTPException(404, f"the {provider.value} webhook is not configured")
    now = site.wall_now()
    with site.sessions.begin() as session:
        allowed = take_rate_limit(session, _rule(site), rate_limit_key(site.settings.secret_key, client_address(request)), now=now)
    if not allowed:
        raise HTTPException(429, "too many webhook requests from this address", headers={"Retry-After": "60"})
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        events = read_events(provider, WebhookRequest(body=body, headers=headers, now=now), options)
    except WebhookRefused as refused:
        raise HTTPException(refused.status, f"{provider.value} webhook refused: {refused}") from refused
    with site.sessions.begin() as session:
        new = store_events(session, provider, events, now=now)
    return WebhookAccepted(received=len(events), new=new)


def _route(provider: Provider) -> None:
    summary, schema, media_type = _BODIES[provider]
    content = {media_type: {"schema": schema}}
    if media_type != "application/json":
        content["application/json"] = {"schema": schema}

    async def receive(request: Request, site: Annotated[Site, Depends(get_site)]) -> WebhookAccepted:
        body = await request.body()
        from anyio import to_thread

        return await to_thread.run_sync(_receive, provider, site, request, body)

    receive.__name__ = f"webhook_{provider.value}"
    router.add_api_route(
        f"/{provider.value}",
        receive,
        methods=["POST"],
        summary=summary,
        response_model=WebhookAccepted,
        responses=_RESPONSES,
        openapi_extra={"requestBody": {"required": True, "content": content}},
    )


for _provider in Provider:
    _route(_provider)

PATHS = frozenset(f"/webhooks/{provider.value}" for provider in Provider)
