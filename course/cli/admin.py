"""`course admin …`: the accounts of the web admin from the command line. The first owner is made
here (nobody can sign in to make one), and an owner locked out of the web admin gets back in here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from course.accounts.credentials import CredentialError, parse_role
from course.accounts.store import AccountError, create_admin, disable_totp, find_admin, list_admins, reset_password
from course.clock import get_wall_clock
from course.db import transaction
from course.settings import get_settings

admin_app = typer.Typer(help="Web admin accounts: create the first owner, list, reset a password.", no_args_is_help=True)
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
