"""Admin accounts over a real database (PostgreSQL and SQLite): passwords, the sign-in throttle,
sessions' idle and absolute expiry, the second factor with recovery codes, API tokens, and the rule
that an owner always remains."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from course.accounts import credentials
from course.accounts.store import (
    AccountError,
    AccountLimits,
    SignInOutcome,
    complete_second_factor,
    create_admin,
    create_api_token,
    enable_totp,
    find_admin,
    revoke_api_token,
    session_admin,
    set_disabled,
    set_role,
    sign_in,
    token_role,
    unused_recovery_codes,
)
from course.clock import ManualClock
from course.models import Admin, AdminRole
from course.settings import Settings

PASSWORD = "a long test password"


@pytest.fixture
def limits(settings: Settings) -> AccountLimits:
    return AccountLimits.from_settings(settings)


def _owner(sessions: sessionmaker[Session], clock: ManualClock, email: str = "owner@example.org") -> int:
    with sessions.begin() as session:
        admin, one_time = create_admin(session, email=email, role=AdminRole.OWNER, password=PASSWORD, now=clock.now())
        assert one_time is None
        return admin.id


def test_passwords_are_argon2_hashes_and_one_time_passwords_must_change(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        admin, one_time = create_admin(session, email="Ed@Example.org", role=AdminRole.EDITOR, password=None, now=clock.now())
        assert one_time is not None and len(one_time) >= 20
        assert admin.password_hash.startswith("$argon2id$") and one_time not in admin.password_hash
        assert admin.password_must_change
        assert find_admin(session, "ed@example.ORG") is admin
    with sessions.begin() as session, pytest.raises(AccountError, match="already an admin"):
        create_admin(session, email="ed@example.org", role=AdminRole.VIEWER, password=PASSWORD, now=clock.now())
    for bad, reason in [("short", "shorter than 12"), ("x" * 300, "longer than 256"), ("ann@example.org", "cannot be the email")]:
        with sessions.begin() as session, pytest.raises(AccountError, match=reason):
            create_admin(session, email="ann@example.org", role=AdminRole.VIEWER, password=bad, now=clock.now())
    with sessions.begin() as session, pytest.raises(AccountError, match="not a valid email"):
        create_admin(session, email="not an address", role=AdminRole.VIEWER, password=PASSWORD, now=clock.now())
    with sessions() as session:  # the refused ones left nothing behind
        assert [a.email for a in session.scalars(select(Admin))] == ["Ed@example.org"]


def test_sign_in_is_throttled_per_account_then_opens_again(
    sessions: sessionmaker[Session], clock: ManualClock, limits: AccountLimits
) -> None:
    _owner(sessions, clock)
    for attempt in range(limits.per_account.limit):
        with sessions.begin() as session:
            result = sign_in(session, email="owner@example.org", password="wrong password!", client_ip=f"10.0.0.{attempt}", limits=limits, now=clock.now())
        assert result.outcome == SignInOutcome.INVALID
    with sessions.begin() as session:  # even the right password is not looked at now
        result = sign_in(session, email="OWNER@example.org", password=PASSWORD, client_ip="10.0.1.1", limits=limits, now=clock.now())
    assert result.outcome == SignInOutcome.THROTTLED and result.throttled_by == "account"
    assert 0 < result.retry_after_seconds <= limits.per_account.window.total_seconds()
    clock.advance(limits.per_account.window)
    with sessions.begin() as session:
        result = sign_in(session, email="owner@example.org", password=PASSWORD, client_ip="10.0.1.1", limits=limits, now=clock.now())
    assert result.outcome == SignInOutcome.SIGNED_IN and result.session_token


def test_sign_in_is_throttled_per_ip_address_whatever_the_account(
    sessions: sessionmaker[Session], clock: ManualClock, limits: AccountLimits
) -> None:
    _owner(sessions, clock)
    for attempt in range(limits.per_ip.limit):  # a different unknown address each time
        with sessions.begin() as session:
            result = sign_in(session, email=f"guess{attempt}@example.org", password="x" * 12, client_ip="192.0.2.7", limits=limits, now=clock.now())
        assert result.outcome == SignInOutcome.INVALID
    with sessions.begin() as session:
        blocked = sign_in(session, email="owner@example.org", password=PASSWORD, client_ip="192.0.2.7", limits=limits, now=clock.now())
        elsewhere = sign_in(session, email="owner@example.org", password=PASSWORD, client_ip="192.0.2.8", limits=limits, now=clock.now())
    assert blocked.outcome == SignInOutcome.THROTTLED and blocked.throttled_by == "ip"
    assert elsewhere.outcome == SignInOutcome.SIGNED_IN


def test_sessions_end_when_idle_too_long_at_the_absolute_limit_and_when_disabled(
    sessions: sessionmaker[Session], clock: ManualClock, limits: AccountLimits
) -> None:
    owner_id = _owner(sessions, clock)
    with sessions.begin() as session:
        other_id = create_admin(session, email="ed@example.org", role=AdminRole.EDITOR, password=PASSWORD, now=clock.now())[0].id

    def start(email: str) -> str:
        with sessions.begin() as session:
            token = sign_in(session, email=email, password=PASSWORD, client_ip="127.0.0.1", limits=limits, now=clock.now()).session_token
        assert token
        return token

    def who(token: str):  # type: ignore[no-untyped-def]
        with sessions.begin() as session:
            return session_admin(session, token, limits=limits, now=clock.now())

    idle = start("owner@example.org")
    clock.advance(limits.session_idle - timedelta(minutes=1))
    assert who(idle) is not None  # used just in time: the idle clock starts again
    clock.advance(limits.session_idle - timedelta(minutes=1))
    assert who(idle) is not None
    clock.advance(limits.session_idle + timedelta(seconds=1))
    assert who(idle) is None and who(idle) is None  # gone for good

    busy = start("owner@example.org")
    steps = int(limits.session_max / (limits.session_idle / 2))
    for _ in range(steps - 1):
        clock.advance(limits.session_idle / 2)
        assert who(busy) is not None
    clock.advance(limits.session_idle / 2 + timedelta(seconds=1))
    assert who(busy) is None  # kept busy, still ended at the absolute limit

    disabled = start("ed@example.org")
    with sessions.begin() as session:
        set_disabled(session, other_id, disabled=True, now=clock.now())
    assert who(disabled) is None
    with sessions.begin() as session:
        refused = sign_in(session, email="ed@example.org", password=PASSWORD, client_ip="127.0.0.1", limits=limits, now=clock.now())
    assert refused.outcome == SignInOutcome.INVALID
    assert who("not-a-token") is None and owner_id


def test_second_factor_with_totp_and_single_use_recovery_codes(
    sessions: sessionmaker[Session], clock: ManualClock, limits: AccountLimits
) -> None:
    owner_id = _owner(sessions, clock)
    secret = credentials.new_totp_secret()
    with sessions.begin() as session, pytest.raises(AccountError, match="does not match"):
        enable_totp(session, owner_id, secret=secret, code="000000", now=clock.now())
    with sessions.begin() as session:
        codes = enable_totp(session, owner_id, secret=secret, code=pyotp.TOTP(secret).at(clock.now()), now=clock.now())
    assert len(codes) == credentials.RECOVERY_CODE_COUNT and len(set(codes)) == len(codes)

    def password_step() -> str:
        with sessions.begin() as session:
            first = sign_in(session, email="owner@example.org", password=PASSWORD, client_ip="127.0.0.1", limits=limits, now=clock.now())
        assert first.outcome == SignInOutcome.SECOND_FACTOR and first.session_token
        with sessions.begin() as session:  # half signed in is not signed in
            half = session_admin(session, first.session_token, limits=limits, now=clock.now())
            assert half is not None and half.second_factor_pending
        return first.session_token

    def code_step(pending: str, code: str):  # type: ignore[no-untyped-def]
        with sessions.begin() as session:
            return complete_second_factor(session, pending_token=pending, code=code, client_ip="127.0.0.1", limits=limits, now=clock.now())

    pending = password_step()
    assert code_step(pending, "123456").outcome == SignInOutcome.INVALID
    # The code that enabled it is spent: the same code again is a replay, even within its step.
    assert code_step(pending, pyotp.TOTP(secret).at(clock.now())).outcome == SignInOutcome.INVALID
    clock.advance(timedelta(seconds=30))
    done = code_step(pending, pyotp.TOTP(secret).at(clock.now()))
    assert done.outcome == SignInOutcome.SIGNED_IN and done.session_token != pending
    with sessions.begin() as session:
        assert session_admin(session, pending, limits=limits, now=clock.now()) is None  # replaced, not upgraded
        full = session_admin(session, done.session_token or "", limits=limits, now=clock.now())
        assert full is not None and not full.second_factor_pending

    pending = password_step()
    assert code_step(pending, codes[0].upper().replace("-", " ")).outcome == SignInOutcome.SIGNED_IN
    pending = password_step()
    assert code_step(pending, codes[0]).outcome == SignInOutcome.INVALID  # used once, spent
    with sessions() as session:
        assert unused_recovery_codes(session, owner_id) == credentials.RECOVERY_CODE_COUNT - 1

    pending = password_step()
    clock.advance(timedelta(minutes=6))  # the code step waits five minutes at most
    assert code_step(pending, pyotp.TOTP(secret).at(clock.now())).outcome == SignInOutcome.INVALID


def test_a_totp_code_is_accepted_once(sessions: sessionmaker[Session], clock: ManualClock, limits: AccountLimits) -> None:
    """A code seen over a shoulder cannot be used again: neither within its own 30 seconds, nor an
    earlier code still inside the drift window, nor to enable the second factor twice."""
    owner_id = _owner(sessions, clock)
    totp = pyotp.TOTP(credentials.new_totp_secret())
    with sessions.begin() as session:
        enable_totp(session, owner_id, secret=totp.secret, code=totp.at(clock.now()), now=clock.now())
    with sessions.begin() as session, pytest.raises(AccountError, match="does not match"):
        enable_totp(session, owner_id, secret=totp.secret, code=totp.at(clock.now()), now=clock.now())

    def code_step(code: str) -> SignInOutcome:
        with sessions.begin() as session:
            first = sign_in(session, email="owner@example.org", password=PASSWORD, client_ip="127.0.0.1", limits=limits, now=clock.now())
        with sessions.begin() as session:
            return complete_second_factor(
                session, pending_token=first.session_token or "", code=code, client_ip="127.0.0.1", limits=limits, now=clock.now()
            ).outcome

    clock.advance(timedelta(seconds=30))
    now_code = totp.at(clock.now())
    assert code_step(now_code) == SignInOutcome.SIGNED_IN
    clock.advance(timedelta(seconds=10))
    assert code_step(now_code) == SignInOutcome.INVALID  # replayed within its own step
    clock.advance(timedelta(seconds=30))
    assert code_step(now_code) == SignInOutcome.INVALID  # the step before now: still in the drift window, still spent
    next_code = totp.at(clock.now())
    assert code_step(next_code) == SignInOutcome.SIGNED_IN  # a new step's code works, once
    with sessions() as session:
        admin = session.get(Admin, owner_id)
        assert admin is not None and admin.totp_last_step == totp.timecode(clock.now())


def test_totp_steps_are_pure() -> None:
    totp = pyotp.TOTP(credentials.new_totp_secret())
    now = datetime(2026, 3, 2, 9, 0, 15, tzinfo=timezone.utc)
    step = totp.timecode(now)
    assert credentials.totp_step_of(totp.secret, totp.at(now), now=now) == step
    assert credentials.totp_step_of(totp.secret, totp.at(now - timedelta(seconds=30)), now=now) == step - 1  # clock drift
    assert credentials.totp_step_of(totp.secret, totp.at(now - timedelta(seconds=90)), now=now) is None  # too old
    assert credentials.totp_step_of(totp.secret, totp.at(now), now=now, after_step=step) is None  # already used
    assert credentials.totp_step_of(totp.secret, totp.at(now), now=now, after_step=step - 1) == step
    assert credentials.totp_step_of(totp.secret, "12 34 5x", now=now) is None


def test_api_tokens_are_stored_hashed_carry_a_role_and_can_be_revoked(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    with sessions.begin() as session:
        token, raw = create_api_token(session, name="CMS hook", role=AdminRole.EDITOR, created_by=None, now=clock.now())
        assert raw.startswith("course_") and raw not in (token.token_hash, token.prefix) and raw.startswith(token.prefix)
        token_id = token.id
    with sessions.begin() as session:
        assert token_role(session, raw, now=clock.now()) == AdminRole.EDITOR
        assert token_role(session, raw + "x", now=clock.now()) is None
        assert token_role(session, "anything", now=clock.now()) is None
    with sessions.begin() as session:
        revoke_api_token(session, token_id, now=clock.now())
    with sessions.begin() as session:
        assert token_role(session, raw, now=clock.now()) is None
    with sessions.begin() as session, pytest.raises(AccountError, match="name"):
        create_api_token(session, name="two\nlines", role=AdminRole.VIEWER, created_by=None, now=clock.now())


def test_the_last_owner_cannot_be_demoted_or_disabled(sessions: sessionmaker[Session], clock: ManualClock) -> None:
    owner_id = _owner(sessions, clock)
    with sessions.begin() as session, pytest.raises(AccountError, match="last owner"):
        set_role(session, owner_id, AdminRole.EDITOR)
    with sessions.begin() as session, pytest.raises(AccountError, match="last owner"):
        set_disabled(session, owner_id, disabled=True, now=clock.now())
    second = _owner(sessions, clock, "second@example.org")
    with sessions.begin() as session:
        set_role(session, owner_id, AdminRole.VIEWER)
    with sessions.begin() as session, pytest.raises(AccountError, match="last owner"):
        set_disabled(session, second, disabled=True, now=clock.now())


def test_roles_rank_owner_over_editor_over_viewer() -> None:
    assert credentials.role_allows("owner", AdminRole.EDITOR)
    assert credentials.role_allows("editor", AdminRole.EDITOR)
    assert not credentials.role_allows("viewer", AdminRole.EDITOR)
    assert not credentials.role_allows("root", AdminRole.VIEWER)
    assert credentials.parse_role(" Editor ") == AdminRole.EDITOR
    with pytest.raises(credentials.CredentialError):
        credentials.parse_role("boss")
