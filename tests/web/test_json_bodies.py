"""Issue #22, item 3: every malformed JSON body is a 400 or 422 with a clear message, never a 500.

The probe's 500s: numbers JSON cannot carry (`1e99999`, `NaN`, `Infinity`) in any field of
`/api/subscriptions` and the admin API (the 422 answer echoed the value and could not be
serialised), and JSON nested 1,000 levels deep (a RecursionError out of the body check, on the admin
API before authentication). The fixed examples replay those; the hypothesis properties cover the
parser (course.web.security.strict_json), the 422 answer (json_safe) and the app with generated
bodies that mix the nasty literals into every place a value can go."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.models import AdminRole
from course.web.security import MAX_JSON_DEPTH, RefusedJson, json_safe, strict_json
from tests.support.admin_fixtures import make_token
from tests.support.web_fixtures import COURSE_SLUG, WebStack
from tests.support.web_fixtures import *  # noqa: F403

SIGNUP = {"email": "ann@example.org", "course": COURSE_SLUG, "name": "Ann", "timezone": "Europe/Berlin"}
CAMPAIGN = {"name": "March", "subject": "News", "sender": "newsletter@example.org", "body_markdown": "Hello!"}
NASTY_NUMBERS = ["1e99999", "-1e99999", "NaN", "Infinity", "-Infinity", "1" * 5000]
JSON_HEADERS = {"content-type": "application/json"}


def with_raw_value(document: dict[str, Any], field: str, raw: str) -> str:
    """The document's JSON with `field`'s value replaced by the raw text `raw`."""
    marker = "\u2603marker\u2603"
    return json.dumps({**document, field: marker}).replace(json.dumps(marker), raw)


def deep(levels: int, opener: str = "[", closer: str = "]") -> str:
    return opener * levels + closer * levels


def assert_clear_refusal(response: Any) -> None:
    assert response.status_code in (400, 422), (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert detail, "the answer says what is wrong"
    json.dumps(detail, allow_nan=False)  # and is plain JSON


def test_numbers_json_cannot_carry_in_any_field_are_refused(web_stack: WebStack, client: TestClient) -> None:
    token = make_token(web_stack.sessions, AdminRole.EDITOR, now=web_stack.clock.now())
    endpoints = [
        ("/api/subscriptions", SIGNUP, {}),
        ("/api/admin/campaigns", CAMPAIGN, {"authorization": f"Bearer {token}"}),
        ("/api/admin/campaigns", CAMPAIGN, {}),  # before authentication too
    ]
    for path, document, headers in endpoints:
        for field in document:
            for raw in NASTY_NUMBERS:
                response = client.post(path, content=with_raw_value(document, field, raw), headers={**JSON_HEADERS, **headers})
                assert_clear_refusal(response)


DEEP_BODIES = [deep(1000), deep(1000, '{"a":', "}").replace("}", "0}", 1), deep(30_000), '{"email": ' + deep(5000) + "}"]


def test_json_nested_too_deep_is_refused_before_anything_reads_it(client: TestClient) -> None:
    for path in ("/api/subscriptions", "/api/admin/campaigns"):
        for body in DEEP_BODIES:
            response = client.post(path, content=body, headers=JSON_HEADERS)
            assert response.status_code == 400, (path, body[:20], response.status_code, response.text[:300])
            assert "nested" in response.json()["detail"]


def test_json_as_deep_as_the_limit_still_reaches_the_route(client: TestClient) -> None:
    response = client.post("/api/subscriptions", content=deep(MAX_JSON_DEPTH), headers=JSON_HEADERS)
    assert response.status_code == 422  # the route's own validation: a list is no signup


# --- properties -----------------------------------------------------------------------------------

_NASTY_LITERALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e99999", "-1e400", "1" * 5000, "1e-99999"])
_SCALARS = st.one_of(
    st.none().map(lambda _: "null"),
    st.booleans().map(lambda value: json.dumps(value)),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(json.dumps),
    _NASTY_LITERALS,
)


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.text(max_size=8), children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"
        ),
        st.integers(min_value=1, max_value=3000).map(deep),  # deep nesting anywhere
    )


JSON_TEXTS = st.recursive(_SCALARS, _compose, max_leaves=12)
# Text that is almost JSON: a JSON text with a few characters cut or added.
BROKEN_TEXTS = st.tuples(JSON_TEXTS, st.integers(min_value=0, max_value=40), st.sampled_from(["", "]", "}", ",", '"', "\\", "\x00", "\udcff"]))


def _depth(value: Any) -> int:
    pending, deepest = [(value, 1)], 0
    while pending:
        item, level = pending.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        pending.extend((child, level + 1) for child in children)
    return deepest


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(JSON_TEXTS, BROKEN_TEXTS.map(lambda parts: parts[0][: parts[1]] + parts[2] + parts[0][parts[1] :])))
def test_the_parser_returns_plain_bounded_json_or_a_clear_refusal(text: str) -> None:
    body = text.encode("utf-8", errors="surrogatepass")
    try:
        document = strict_json(body)
    except RefusedJson as exc:
        assert str(exc)  # a message for the client
        return
    except ValueError:
        return  # not JSON at all: the route's validation answers 422
    json.dumps(document, allow_nan=False)  # every number finite, everything serialisable
    assert _depth(document) <= MAX_JSON_DEPTH


_ANY_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10), st.binary(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3),
                               st.tuples(children, children)),
    max_leaves=20,
)


@given(value=st.one_of(_ANY_VALUE, st.integers(min_value=1, max_value=3000).map(lambda n: json.loads(deep(min(n, 900))))))
def test_the_422_answer_serialises_whatever_the_input_was(value: Any) -> None:
    safe = json_safe([{"loc": ["body", "email"], "msg": "bad", "type": "x", "input": value, "ctx": {"limit": math.inf}}])
    text = json.dumps(safe, allow_nan=False)
    assert "bad" in text


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # One app for all the generated examples (a fresh database per example would take seconds each).
    from course.clock import ManualClock, set_clock
    from course.web.app import create_app
    from tests.support.web_fixtures import START, prepare, web_settings

    tmp_path = tmp_path_factory.mktemp("json-bodies")
    clock = ManualClock(START)
    set_clock(clock)
    settings_ = web_settings(tmp_path, f"sqlite:///{tmp_path / 't.db'}", signup_limit_per_ip=100_000)
    stack = prepare(settings_, clock, smtp=None)  # type: ignore[arg-type]  # nothing is sent here
    token = make_token(stack.sessions, AdminRole.OWNER, now=clock.now())
    with TestClient(create_app(settings_), raise_server_exceptions=False) as test_client:
        yield test_client, token
    set_clock(None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=JSON_TEXTS,
    path=st.sampled_from(["/api/subscriptions", "/api/admin/campaigns", "/api/admin/audience/count", "/api/admin/tokens"]),
    authorised=st.booleans(),
)
def test_no_generated_body_gets_a_server_error(shared_client: Any, text: str, path: str, authorised: bool) -> None:
    test_client, token = shared_client
    headers = {**JSON_HEADERS, **({"authorization": f"Bearer {token}"} if authorised else {})}
    response = test_client.post(path, content=text.encode(), headers=headers)
    assert response.status_code < 500, (response.status_code, text[:200], response.text[:300])
    json.loads(response.text)  # a JSON answer, whatever was sent
