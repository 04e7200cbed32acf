"""The database side of admin accounts: create and manage admins, invite them by email, sign in
(throttled per account and per IP address), browser sessions, the second factor, and API tokens. Plain functions over a
Session and `now`; the caller owns the transaction, so a failed sign-in's counters are committed
with the answer that refuses it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from course.accounts.credentials import (
    CredentialError,
    check_password_rules,
    generate_password,
    hash_password,
    hash_recovery_code,
    looks_like_api_token,
    needs_rehash,
    new_api_token,
    new_link_nonce,
    new_recovery_codes,
    new_session_token,
    normalize_recovery_code,
    recovery_code_matches,
    token_hash,
    totp_step_of,
    verify_password,
)
from course.ledger import add_admin_invitation_mail, cancel_invitation_rows
from course.ratelimit import RateLimit, rate_limit_key, take_rate_limit, window_start
from course.models import Admin, AdminInvitation, AdminRecoveryCode, AdminRole, AdminSession, ApiToken, RateLimitHit
from course.settings import Settings

# Sessions and tokens record their use at most this often: a page view is not a write.
_TOUCH_EVERY = timedelta(seconds=60)
# Between a right password and the authenticator code: long enough to open the app.
SECOND_FACTOR_WINDOW = timedelta(minutes=5)


class AccountError(ValueError):
    """Bad account input or a change the rules refuse; the message names the account."""


@dataclass(frozen=True)
class AccountLimits:
    session_idle: timedelta
    session_max: timedelta
    per_account: RateLimit
    per_ip: RateLimit
    secret: str  # keys the rate-limit counters, so the table holds no address

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountLimits:
        window = timedelta(seconds=settings.admin_login_window_seconds)
        return cls(
            session_idle=timedelta(minutes=settings.admin_session_idle_minutes),
            session_max=timedelta(hours=settings.admin_session_max_hours),
            per_account=RateLimit("admin-login-account", settings.admin_login_limit_per_account, window),
            per_ip=RateLimit("admin-login-ip", settings.admin_login_limit_per_ip, window),
            secret=settings.secret_key,
        )


def normalize_admin_email(raw: str) -> str:
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise AccountError(f"{raw.strip()!r} is not a valid email address: {exc}") from None


# --- managing admins -----------------------------------------------------------------------------


def find_admin(session: Session, email: str) -> Admin | None:
    return session.scalars(select(Admin).where(func.lower(Admin.email) == email.strip().lower())).first()


def create_admin(
    session: Session, *, email: str, role: AdminRole, password: str | None, now: datetime
) -> tuple[Admin, str | None]:
    """A new admin. With no password, one is generated and returned (shown once, changed at first
    sign-in); with one, it must meet the rules and None is returned."""
    address = normalize_admin_email(email)
    if find_admin(session, address) is not None:
        raise AccountError(f"there is already an admin with the address {address}")
    one_time = generate_password() if password is None else None
    try:
        check_password_rules(password if password is not None else one_time or "", email=address)
    except CredentialError as exc:
        raise AccountError(str(exc)) from None
    admin = Admin(
        email=address,
        password_hash=hash_password(password if password is not None else one_time or ""),
        password_must_change=password is None,
        role=role,
        created_at=now,
    )
    session.add(admin)
    session.flush()
    return admin, one_time


def list_admins(session: Session) -> list[Admin]:
    return list(session.scalars(select(Admin).order_by(Admin.disabled_at.is_not(None), Admin.email)))


def _get_admin(session: Session, admin_id: int) -> Admin:
    admin = session.get(Admin, admin_id)
    if admin is None:
        raise AccountError(f"no admin with id {admin_id}")
    return admin


def _other_active_owners(session: Session, admin_id: int) -> int:
    return session.scalar(
        select(func.count()).where(Admin.role == AdminRole.OWNER, Admin.disabled_at.is_(None), Admin.id != admin_id)
    ) or 0


def set_role(session: Session, admin_id: int, role: AdminRole) -> Admin:
    admin = _get_admin(session, admin_id)
    if admin.role == AdminRole.OWNER and role != AdminRole.OWNER and not _other_active_owners(session, admin_id):
        raise AccountError(f"{admin.email} is the last owner: make someone else owner first")
    admin.role = role
    return admin


def set_disabled(session: Session, admin_id: int, *, disabled: bool, now: datetime) -> Admin:
    """Disable (sign out everywhere, refuse sign-in) or enable an admin again."""
    admin = _get_admin(session, admin_id)
    if disabled:
        if admin.role == AdminRole.OWNER and not _other_active_owners(session, admin_id):
            raise AccountError(f"{admin.email} is the last owner and cannot be disabled")
        admin.disabled_at = admin.disabled_at or now
        end_sessions_of(session, admin_id)
    else:
        admin.disabled_at = None
    return admin


def reset_password(session: Session, admin_id: int) -> tuple[Admin, str]:
    """A new one-time password for an admin who forgot theirs; their sessions end."""
    admin = _get_admin(session, admin_id)
    one_time = generate_password()
    admin.password_hash = hash_password(one_time)
    admin.password_must_change = True
    end_sessions_of(session, admin_id)
    return admin, one_time


def change_password(session: Session, admin: Admin, *, current: str, new: str, keep_session: str) -> None:
    """The admin's own change: the current password is asked again; other sessions end."""
    if not verify_password(admin.password_hash, current):
        raise AccountError("the current password is not right")
    if verify_password(admin.password_hash, new):
        raise AccountError("the new password is the same as the current one")
    try:
        check_password_rules(new, email=admin.email)
    except CredentialError as exc:
        raise AccountError(str(exc)) from None
    admin.password_hash = hash_password(new)
    admin.password_must_change = False
    session.execute(
        delete(AdminSession).where(AdminSession.admin_id == admin.id, AdminSession.token_hash != token_hash(keep_session))
    )


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check_time_zone(raw: str) -> str | None:
    """An IANA zone name as given, None for a blank; anything else is refused."""
    name = raw.strip()
    if not name:
        return None
    if name not in _zone_names():
        raise AccountError(f"unknown time zone {raw.strip()[:64]!r}: use an IANA name such as Europe/Berlin")
    return name


def set_time_zone(session: Session, admin_id: int, raw: str) -> Admin:
    """The zone an admin's pages show times in; a blank clears it (UTC)."""
    admin = _get_admin(session, admin_id)
    admin.time_zone = check_time_zone(raw)
    return admin


def adopt_time_zone(session: Session, email: str, raw: str) -> None:
    """At sign-in: the browser's zone becomes the admin's when they have none yet. A zone the
    browser got wrong is ignored (the account page says UTC, and the admin can choose)."""
    admin = find_admin(session, email)
    if admin is None or admin.time_zone is not None:
        return
    try:
        admin.time_zone = check_time_zone(raw[:64])
    except AccountError:
        return


# --- invitations ---------------------------------------------------------------------------------
#
# Two clocks meet here: `now` is the wall clock (an invitation's times, its expiry: a security rule),
# `due_at` the project's clock (when the ledger row of its mail is due, as the dispatcher reads it).


class InvitationUnusable(AccountError):
    """An invitation link that no longer works; `gone` when it once did (used, replaced, revoked,
    expired), not when it never named an invitation."""

    def __init__(self, message: str, *, gone: bool = True) -> None:
        super().__init__(message)
        self.gone = gone


def _pending(session: Session, address: str, now: datetime) -> AdminInvitation | None:
    return session.scalars(
        select(AdminInvitation).where(
            func.lower(AdminInvitation.email) == address.lower(),
            AdminInvitation.accepted_at.is_(None),
            AdminInvitation.revoked_at.is_(None),
            AdminInvitation.expires_at > now,
        )
    ).first()


def invite_admin(
    session: Session, *, email: str, role: AdminRole, invited_by: int | None, valid_for: timedelta, now: datetime, due_at: datetime
) -> AdminInvitation:
    """1. Refuse an address that is an admin already, or has a live invitation (re-send that one).
    2. Record the invitation with a fresh link nonce, expiring `valid_for` after now (wall clock).
    3. Queue its mail in the ledger, due at `due_at`; the sender signs the link into it."""
    address = normalize_admin_email(email)
    if find_admin(session, address) is not None:
        raise AccountError(f"there is already an admin with the address {address}")
    if _pending(session, address, now) is not None:
        raise AccountError(f"{address} is invited already: re-send that invitation instead")
    invitation = AdminInvitation(
        email=address, role=role, link_nonce=new_link_nonce(), invited_by=invited_by,
        created_at=now, sent_at=now, expires_at=now + valid_for,
    )  # fmt: skip
    session.add(invitation)
    session.flush()
    add_admin_invitation_mail(session, invitation_id=invitation.id, address=address, now=due_at)
    return invitation


def _get_invitation(session: Session, invitation_id: int) -> AdminInvitation:
    invitation = session.get(AdminInvitation, invitation_id)
    if invitation is None or invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise AccountError(f"no pending invitation with id {invitation_id}")
    return invitation


def resend_invitation(
    session: Session, invitation_id: int, *, valid_for: timedelta, now: datetime, due_at: datetime
) -> AdminInvitation:
    """A new link (new nonce: every earlier link stops working), a new expiry, a new mail; the old
    mail is cancelled if it has not gone yet."""
    invitation = _get_invitation(session, invitation_id)
    invitation.link_nonce = new_link_nonce()
    invitation.sent_at = now
    invitation.expires_at = now + valid_for
    cancel_invitation_rows(session, invitation.id)
    add_admin_invitation_mail(session, invitation_id=invitation.id, address=invitation.email, now=due_at)
    return invitation


def revoke_invitation(session: Session, invitation_id: int, *, now: datetime) -> AdminInvitation:
    invitation = _get_invitation(session, invitation_id)
    invitation.revoked_at = now
    cancel_invitation_rows(session, invitation.id)
    return invitation


def pending_invitations(session: Session) -> list[AdminInvitation]:
    """Invitations neither accepted nor revoked, newest first (expired ones too, to re-send)."""
    return list(
        session.scalars(
            select(AdminInvitation)
            .where(AdminInvitation.accepted_at.is_(None), AdminInvitation.revoked_at.is_(None))
            .order_by(AdminInvitation.sent_at.desc())
        )
    )


def open_invitation(session: Session, invitation_id: int, nonce: str, *, now: datetime) -> AdminInvitation:
    """The invitation a verified link names, if that link still works; else InvitationUnusable
    saying why."""
    invitation = session.get(AdminInvitation, invitation_id)
    if invitation is None:
        raise InvitationUnusable("this invitation link does not work", gone=False)
    if invitation.accepted_at is not None:
        raise InvitationUnusable("this invitation was already used: sign in with the password chosen then")
    if invitation.revoked_at is not None:
        raise InvitationUnusable("this invitation was withdrawn by an owner")
    if invitation.link_nonce != nonce:
        raise InvitationUnusable("a newer invitation was sent for this address: use the link in the latest email")
    if invitation.expires_at <= now:
        raise InvitationUnusable("this invitation has expired: ask an owner to send it again")
    return invitation


def accept_invitation(session: Session, invitation_id: int, nonce: str, *, password: str, now: datetime) -> Admin:
    """1. The link must still work (open_invitation), the password meet the rules, and the address
       be no admin's yet: a refusal leaves the link working.
    2. Spend the invitation with a conditional UPDATE (still unaccepted, unrevoked, this nonce, not
       expired): two requests racing with one link make one admin.
    3. Make the admin with the invited role and this password (nothing to change at sign-in)."""
    invitation = open_invitation(session, invitation_id, nonce, now=now)
    try:
        check_password_rules(password, email=invitation.email)
    except CredentialError as exc:
        raise AccountError(str(exc)) from None
    if find_admin(session, invitation.email) is not None:
        raise InvitationUnusable(f"there is already an admin with the address {invitation.email}: sign in instead")
    spent = session.execute(
        update(AdminInvitation)
        .where(
            AdminInvitation.id == invitation_id,
            AdminInvitation.accepted_at.is_(None),
            AdminInvitation.revoked_at.is_(None),
            AdminInvitation.link_nonce == nonce,
            AdminInvitation.expires_at > now,
        )
        .values(accepted_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if spent != 1:
        raise InvitationUnusable("this invitation was already used: sign in with the password chosen then")
    admin, _ = create_admin(session, email=invitation.email, role=AdminRole(invitation.role), password=password, now=now)
    invitation.admin_id = admin.id
    return admin


def open_session(session: Session, admin_id: int, *, now: datetime) -> str:
    """A full session for an admin who just proved who they are another way (an invitation link)."""
    admin = _get_admin(session, admin_id)
    admin.last_login_at = now
    return _start_session(session, admin, pending=False, now=now)


# --- signing in ----------------------------------------------------------------------------------


class SignInOutcome(enum.StrEnum):
    SIGNED_IN = "signed-in"
    SECOND_FACTOR = "second-factor"  # password right; the authenticator code comes next
    INVALID = "invalid"  # wrong address, password or code: the same answer for each
    THROTTLED = "throttled"  # too many failures: not even checked


@dataclass(frozen=True)
class SignIn:
    outcome: SignInOutcome
    session_token: str | None = None
    retry_after_seconds: int = 0
    throttled_by: str = ""  # "account" or "ip"


def _failures(session: Session, rule: RateLimit, key: str, now: datetime) -> int:
    return session.scalar(
        select(RateLimitHit.hits).where(
            RateLimitHit.scope == rule.scope,
            RateLimitHit.key == key,
            RateLimitHit.window_start == window_start(now, rule.window),
        )
    ) or 0


def _throttle(session: Session, limits: AccountLimits, email: str, client_ip: str, now: datetime) -> SignIn | None:
    """1. Key both counters (HMAC of the lower-cased address, of the IP address).
    2. At the limit on either: refuse before any password is looked at, saying which and how long."""
    for name, rule, value in (("account", limits.per_account, email), ("ip", limits.per_ip, client_ip)):
        key = rate_limit_key(limits.secret, value)
        if _failures(session, rule, key, now) >= rule.limit:
            window_end = window_start(now, rule.window) + rule.window
            wait = max(1, int((window_end - now).total_seconds()))
            return SignIn(SignInOutcome.THROTTLED, retry_after_seconds=wait, throttled_by=name)
    return None


def _count_failure(session: Session, limits: AccountLimits, email: str, client_ip: str, now: datetime) -> None:
    take_rate_limit(session, limits.per_account, rate_limit_key(limits.secret, email), now=now)
    take_rate_limit(session, limits.per_ip, rate_limit_key(limits.secret, client_ip), now=now)


def _start_session(session: Session, admin: Admin, *, pending: bool, now: datetime) -> str:
    token = new_session_token()
    session.add(
        AdminSession(
            token_hash=token_hash(token), admin_id=admin.id, second_factor_pending=pending, created_at=now, last_seen_at=now
        )
    )
    return token


def sign_in(
    session: Session, *, email: str, password: str, client_ip: str, limits: AccountLimits, now: datetime
) -> SignIn:
    """1. Throttled on the account or the IP address: refuse (nothing checked).
    2. Check the password (against a dummy hash when there is no such enabled admin, so timing
       tells nothing); wrong: count one failure on both counters.
    3. Right: start a session, half-open when the admin has a second factor."""
    address = email.strip().lower()
    throttled = _throttle(session, limits, address, client_ip, now)
    if throttled:
        return throttled
    admin = find_admin(session, address)
    stored_hash = admin.password_hash if admin is not None and admin.disabled_at is None else None
    # verify_password runs first on every path: an unknown address costs one argon2 check too.
    if not verify_password(stored_hash, password) or admin is None:
        _count_failure(session, limits, address, client_ip, now)
        return SignIn(SignInOutcome.INVALID)
    if needs_rehash(admin.password_hash):
        admin.password_hash = hash_password(password)
    if admin.totp_secret:
        return SignIn(SignInOutcome.SECOND_FACTOR, session_token=_start_session(session, admin, pending=True, now=now))
    admin.last_login_at = now
    return SignIn(SignInOutcome.SIGNED_IN, session_token=_start_session(session, admin, pending=False, now=now))


def complete_second_factor(
    session: Session, *, pending_token: str, code: str, client_ip: str, limits: AccountLimits, now: datetime
) -> SignIn:
    """The authenticator code (or an unused recovery code) for a half-open session. Right: the
    half-open session is replaced by a full one under a new token."""
    found = _session_row(session, pending_token)
    if found is None or not found.second_factor_pending or now - found.created_at > SECOND_FACTOR_WINDOW:
        return SignIn(SignInOutcome.INVALID)
    admin = session.get(Admin, found.admin_id)
    if admin is None or admin.disabled_at is not None or not admin.totp_secret:
        return SignIn(SignInOutcome.INVALID)
    throttled = _throttle(session, limits, admin.email.lower(), client_ip, now)
    if throttled:
        return throttled
    if not (_claim_totp_step(session, admin, admin.totp_secret, code, now) or _use_recovery_code(session, admin.id, code, now)):
        _count_failure(session, limits, admin.email.lower(), client_ip, now)
        return SignIn(SignInOutcome.INVALID)
    session.delete(found)
    admin.last_login_at = now
    return SignIn(SignInOutcome.SIGNED_IN, session_token=_start_session(session, admin, pending=False, now=now))


def _claim_totp_step(session: Session, admin: Admin, secret: str, code: str, now: datetime) -> bool:
    """Whether `code` is a fresh authenticator code for `secret`, and if so, spend its time-step:
    1. find the step the code belongs to, later than the admin's last accepted one;
    2. record it with a conditional UPDATE (only if the stored step is still earlier);
    3. one row updated: the code is this request's. None: a concurrent request used the same
       code (or a later one) first, and this one is a replay."""
    step = totp_step_of(secret, code, now=now, after_step=admin.totp_last_step)
    if step is None:
        return False
    claimed = session.execute(
        update(Admin)
        .where(Admin.id == admin.id, or_(Admin.totp_last_step.is_(None), Admin.totp_last_step < step))
        .values(totp_last_step=step)
        .execution_options(synchronize_session="fetch")
    ).rowcount
    return claimed == 1


def _use_recovery_code(session: Session, admin_id: int, code: str, now: datetime) -> bool:
    cleaned = normalize_recovery_code(code)
    if cleaned is None:
        return False
    unused = session.scalars(
        select(AdminRecoveryCode).where(AdminRecoveryCode.admin_id == admin_id, AdminRecoveryCode.used_at.is_(None))
    )
    for stored in unused:
        if recovery_code_matches(stored.code_hash, cleaned):
            # Conditional, so two sign-ins racing with one code cannot both use it.
            used = session.execute(
                update(AdminRecoveryCode)
                .where(AdminRecoveryCode.id == stored.id, AdminRecoveryCode.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            return used == 1
    return False


# --- sessions ------------------------------------------------------------------------------------


def _session_row(session: Session, token: str) -> AdminSession | None:
    if not token or len(token) > 100:
        return None
    return session.get(AdminSession, token_hash(token))


@dataclass(frozen=True)
class SignedIn:
    """Who is behind a request: the admin, and whether the session still waits for the code."""

    admin_id: int
    email: str
    role: str
    password_must_change: bool
    second_factor_pending: bool
    has_second_factor: bool
    time_zone: str | None = None  # the zone their pages show times in; None: UTC


def session_admin(session: Session, token: str, *, limits: AccountLimits, now: datetime) -> SignedIn | None:
    """The admin a session cookie belongs to, or None when the session is unknown, idle too long,
    past its absolute limit, or its admin is disabled (expired rows are deleted on the way)."""
    found = _session_row(session, token)
    if found is None:
        return None
    admin = session.get(Admin, found.admin_id)
    expired = now - found.last_seen_at > limits.session_idle or now - found.created_at > limits.session_max
    if expired or admin is None or admin.disabled_at is not None:
        session.delete(found)
        return None
    if now - found.last_seen_at > _TOUCH_EVERY:
        found.last_seen_at = now
    return SignedIn(
        admin_id=admin.id,
        email=admin.email,
        role=admin.role,
        password_must_change=admin.password_must_change,
        second_factor_pending=found.second_factor_pending,
        has_second_factor=admin.totp_secret is not None,
        time_zone=admin.time_zone,
    )


def end_session(session: Session, token: str) -> None:
    if token:
        session.execute(delete(AdminSession).where(AdminSession.token_hash == token_hash(token)))


def end_sessions_of(session: Session, admin_id: int) -> None:
    session.execute(delete(AdminSession).where(AdminSession.admin_id == admin_id))


def purge_sessions(session: Session, *, limits: AccountLimits, now: datetime) -> int:
    return session.execute(
        delete(AdminSession).where(
            (AdminSession.last_seen_at < now - limits.session_idle) | (AdminSession.created_at < now - limits.session_max)
        )
    ).rowcount


# --- second factor setup -------------------------------------------------------------------------


def enable_totp(session: Session, admin_id: int, *, secret: str, code: str, now: datetime) -> list[str]:
    """Turn the second factor on once the admin has shown a code from the new secret. Returns the
    recovery codes, in clear for the one time they are shown."""
    admin = _get_admin(session, admin_id)
    if not _claim_totp_step(session, admin, secret, code, now):
        raise AccountError("that code does not match: check the authenticator app's clock and try the next code")
    admin.totp_secret = secret
    return replace_recovery_codes(session, admin_id)


def replace_recovery_codes(session: Session, admin_id: int) -> list[str]:
    codes = new_recovery_codes()
    session.execute(delete(AdminRecoveryCode).where(AdminRecoveryCode.admin_id == admin_id))
    session.add_all(AdminRecoveryCode(admin_id=admin_id, code_hash=hash_recovery_code(code)) for code in codes)
    return codes


def disable_totp(session: Session, admin_id: int) -> None:
    admin = _get_admin(session, admin_id)
    admin.totp_secret = None
    session.execute(delete(AdminRecoveryCode).where(AdminRecoveryCode.admin_id == admin_id))


def unused_recovery_codes(session: Session, admin_id: int) -> int:
    return session.scalar(
        select(func.count()).where(AdminRecoveryCode.admin_id == admin_id, AdminRecoveryCode.used_at.is_(None))
    ) or 0


# --- API tokens ----------------------------------------------------------------------------------


def create_api_token(
    session: Session, *, name: str, role: AdminRole, created_by: int | None, now: datetime
) -> tuple[ApiToken, str]:
    """A new token; the clear value is returned this once and never stored."""
    label = name.strip()
    if not label or len(label) > 100 or any(ch in label for ch in "\r\n"):
        raise AccountError("a token needs a name of 1 to 100 characters on one line")
    raw = new_api_token()
    token = ApiToken(
        name=label, token_hash=token_hash(raw), prefix=raw[:12], role=role, created_by=created_by, created_at=now
    )
    session.add(token)
    session.flush()
    return token, raw


def list_api_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc())))


def revoke_api_token(session: Session, token_id: int, *, now: datetime) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise AccountError(f"no API token with id {token_id}")
    token.revoked_at = token.revoked_at or now
    return token


def token_role(session: Session, raw: str, *, now: datetime) -> str | None:
    """The role of a live bearer token, or None (unknown, malformed or revoked)."""
    if not looks_like_api_token(raw):
        return None
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash(raw))).first()
    if token is None or token.revoked_at is not None:
        return None
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        token.last_used_at = now
    return token.role
