"""`course admin …`: the accounts of the web admin from the command line. The first owner is made
here (nobody can sign in to make one), an owner locked out of the web admin gets back in here, and
scripts and CI get their API tokens here (`course admin token create NAME --role ROLE`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course.accounts.credentials import CredentialError, parse_role
from course.accounts.store import (
    AccountError,
    create_admin,
    create_api_token,
    disable_totp,
    find_admin,
    list_admins,
    list_api_tokens,
    reset_password,
    revoke_api_token,
)
from course.clock import get_wall_clock
from course.db import transaction
from course.settings import get_settings

admin_app = typer.Typer(help="Web admin accounts: create the first owner, list, reset a password.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts and CI: create (shown once), list, revoke.", no_args_is_help=True)
admin_app.add_typer(token_app, name="token")
_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    _err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(1)


def _admin_url() -> str:
    return get_settings().base_url.rstrip("/") + "/admin/"


@admin_app.command("create")
def create_command(
    email: Annotated[str, typer.Argument(help="the admin's email address (their sign-in name)")],
    role: Annotated[str, typer.Option("--role", help="owner, editor or viewer")] = "owner",
    ask_password: Annotated[
        bool, typer.Option("--ask-password", help="type a password instead of getting a one-time one")
    ] = False,
) -> None:
    """Create an admin. Prints a one-time password (changed at first sign-in) unless --ask-password."""
    from course import schema

    settings = get_settings()
    try:
        chosen_role = parse_role(role)
        password = None
        if ask_password:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        schema.upgrade()
        with transaction(settings) as session:
            admin, one_time = create_admin(
                session, email=email, role=chosen_role, password=password, now=get_wall_clock().now()
            )
            address, admin_role = admin.email, admin.role
    except (AccountError, CredentialError) as exc:
        raise _fail(str(exc)) from None
    _out.print(f"admin {escape(address)} created ({admin_role})")
    if one_time:
        _out.print(f"one-time password: {escape(one_time)}", highlight=False)
        _out.print("it is shown only now; a new password is chosen at first sign-in")
    _out.print(f"sign in at {_admin_url()}")


@admin_app.command("list")
def list_command() -> None:
    """Every admin with role, second factor and last sign-in."""
    with transaction() as session:
        table = Table(title="admins")
        for column in ("email", "role", "2FA", "last sign-in", "status"):
            table.add_column(column)
        for admin in list_admins(session):
            table.add_row(
                escape(admin.email),
                admin.role,
                "on" if admin.totp_secret else "off",
                admin.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if admin.last_login_at else "never",
                "disabled" if admin.disabled_at else "active",
            )
    _out.print(table)


@admin_app.command("reset-password")
def reset_password_command(
    email: Annotated[str, typer.Argument(help="the admin's email address")],
    remove_second_factor: Annotated[
        bool, typer.Option("--remove-second-factor", help="also turn off their authenticator (lost device)")
    ] = False,
) -> None:
    """A new one-time password for an admin; their sessions end."""
    try:
        with transaction() as session:
            admin = find_admin(session, email)
            if admin is None:
                raise AccountError(f"no admin with the address {email.strip()!r}")
            _, one_time = reset_password(session, admin.id)
            if remove_second_factor:
                disable_totp(session, admin.id)
            address = admin.email
    except AccountError as exc:
        raise _fail(str(exc)) from None
    _out.print(f"one-time password for {escape(address)}: {escape(one_time)}", highlight=False)
    _out.print(f"sign in at {_admin_url()}")


# --- API tokens ----------------------------------------------------------------------------------
# Their times are wall-clock times, like everything about credentials: never the demo's calendar.


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@token_app.command("create")
def token_create_command(
    name: Annotated[str, typer.Argument(help="what uses it, e.g. 'CI deploy'")],
    role: Annotated[str, typer.Option("--role", help="owner, editor or viewer")] = "viewer",
) -> None:
    """Create an API token and print it, this once: only its hash is kept."""
    from course import schema

    try:
        chosen_role = parse_role(role)
        schema.upgrade()
        with transaction() as session:
            token, raw = create_api_token(session, name=name, role=chosen_role, created_by=None, now=get_wall_clock().now())
            token_id, label, token_role = token.id, token.name, token.role
    except (AccountError, CredentialError) as exc:
        raise _fail(str(exc)) from None
    _out.print(f"token {token_id} “{escape(label)}” created ({token_role}); it is shown only now:", highlight=False)
    _out.print(escape(raw), highlight=False)
    _out.print("send it as 'Authorization: Bearer <token>' to /api/admin/", highlight=False)


@token_app.command("list")
def token_list_command() -> None:
    """Every API token: id, name, role, first characters, created, last used, revoked."""
    with transaction() as session:
        table = Table(title="API tokens")
        for column in ("id", "name", "role", "starts with", "created", "last used", "status"):
            table.add_column(column)
        for token in list_api_tokens(session):
            table.add_row(
                str(token.id),
                escape(token.name),
                token.role,
                escape(token.prefix) + "…",
                _when(token.created_at),
                _when(token.last_used_at),
                f"revoked {_when(token.revoked_at)}" if token.revoked_at else "active",
            )
    _out.print(table)


@token_app.command("revoke")
def token_revoke_command(token_id: Annotated[int, typer.Argument(help="the token's id (course admin token list)")]) -> None:
    """Revoke an API token: requests with it get 401 from now on."""
    try:
        with transaction() as session:
            token = revoke_api_token(session, token_id, now=get_wall_clock().now())
            label = token.name
    except AccountError as exc:
        raise _fail(str(exc)) from None
    _out.print(f"token {token_id} “{escape(label)}” revoked", highlight=False)
