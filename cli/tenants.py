"""``darkroom tenants`` and ``darkroom keys``: who may use a server, run by its operator.

Secrets (API keys, webhook secrets) are printed once, on creation, and never again.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, err, fail
from shared import tenants
from shared.config import get_settings
from shared.db.engine import session_scope
from shared.db.migrate import upgrade_embedded
from shared.errors import DarkroomError
from shared.review import RULES, resolve_thresholds, validate_overrides

tenants_app = typer.Typer(
    help="Tenants: create, list, and their review rules.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
keys_app = typer.Typer(
    help="API keys: create, list, revoke.", no_args_is_help=True, rich_markup_mode=None
)


def _database_url() -> str:
    url = get_settings().database_url
    upgrade_embedded(url)
    return url


@tenants_app.command("create")
def create_tenant(
    tenant_id: Annotated[str, typer.Argument(help="Lowercase id, e.g. 'acme-photos'.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="Submissions per minute (default: the server's).")
    ] = None,
    max_active: Annotated[
        int | None, typer.Option(help="Queued plus running jobs at most (default: the server's).")
    ] = None,
) -> None:
    """Create a tenant and print its webhook signing secret (shown once)."""
    try:
        with session_scope(_database_url()) as session:
            tenant = tenants.create_tenant(
                session,
                tenant_id,
                name,
                rate_limit_per_minute=rate_limit,
                max_active_jobs=max_active,
            )
            secret = tenant.webhook_secret
    except DarkroomError as exc:
        raise fail(exc.message) from None
    console.print(f"tenant [bold]{tenant_id}[/bold] created")
    console.print(f"webhook secret (shown once): {secret}")


@tenants_app.command("review")
def review_rules(
    tenant_id: Annotated[str, typer.Argument(help="The tenant.")],
    rules: Annotated[
        list[str] | None,
        typer.Argument(help="RULE=THRESHOLD or RULE=off, e.g. still_dark=0.1 noise_amplified=off."),
    ] = None,
    reset: Annotated[bool, typer.Option(help="Use the server's threshold for every rule.")] = False,
) -> None:
    """Show or set a tenant's review thresholds (what flags its jobs for a person); a batch's
    option "review" overrides them again."""
    try:
        with session_scope(_database_url()) as session:
            tenant = tenants.get_tenant(session, tenant_id)
            if reset or rules:
                current = {} if reset else dict(tenant.review_rules or {})
                current.update(_parse_rules(rules or []))
                tenant = tenants.set_review_rules(session, tenant_id, validate_overrides(current))
            shown = resolve_thresholds(get_settings().review, tenant.review_rules)
            own = tenant.review_rules or {}
    except (DarkroomError, ValueError) as exc:
        raise fail(exc.message if isinstance(exc, DarkroomError) else str(exc)) from None
    table = Table("rule", "threshold", "set by", title=f"review rules of {tenant_id}")
    for name, rule in RULES.items():
        value = shown[name]
        table.add_row(
            f"{name} ({rule.title})",
            "off" if value is None else f"{value:g}",
            "tenant" if name in own else "server",
        )
    console.print(table)


def _parse_rules(pairs: list[str]) -> dict[str, float | bool]:
    parsed: dict[str, float | bool] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"{pair!r}: write RULE=THRESHOLD or RULE=off")
        if value.strip().lower() in ("off", "false"):
            parsed[name.strip()] = False
            continue
        try:
            parsed[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{pair!r}: the threshold must be a number or 'off'") from None
    return parsed


@tenants_app.command("list")
def list_tenants() -> None:
    with session_scope(_database_url()) as session:
        rows = tenants.list_tenants(session)
        table = Table("id", "name", "rate limit/min", "max active", "created")
        for tenant in rows:
            table.add_row(
                tenant.id,
                tenant.name,
                str(tenant.rate_limit_per_minute or "default"),
                str(tenant.max_active_jobs or "default"),
                tenant.created_at.isoformat(timespec="seconds"),
            )
    console.print(table)


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="Tenant the key acts for.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
) -> None:
    """Create an API key and print it (shown once: only its hash is stored)."""
    try:
        with session_scope(_database_url()) as session:
            new = tenants.create_key(session, tenant, name)
    except DarkroomError as exc:
        raise fail(exc.message) from None
    console.print(f"API key for tenant [bold]{tenant}[/bold] (shown once):")
    console.print(new.secret, soft_wrap=True, highlight=False)


@keys_app.command("list")
def list_keys(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
    with session_scope(_database_url()) as session:
        table = Table("key", "tenant", "name", "created", "revoked")
        for key in tenants.list_keys(session, tenant):
            table.add_row(
                key.key_prefix + "…",
                key.tenant_id,
                key.name,
                key.created_at.isoformat(timespec="seconds"),
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
            )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_prefix: Annotated[str, typer.Argument(help="The key, or its start as `keys list` shows.")],
) -> None:
    try:
        with session_scope(_database_url()) as session:
            count = tenants.revoke_key(session, key_prefix)
    except DarkroomError as exc:
        raise fail(exc.message) from None
    if not count:
        err.print("[red]error:[/red] no live key starts with that")
        raise typer.Exit(code=1)
    console.print(f"revoked {count} key(s)")


@tenants_app.command("rotate-link-secret")
def rotate_link_secret(tenant_id: Annotated[str, typer.Argument(help="The tenant.")]) -> None:
    """Give a tenant a new secret for its report links: every link it handed out stops working
    at once (its API keys and webhook secret are untouched). Revoking a key ends only the links
    that key made."""
    try:
        with session_scope(_database_url()) as session:
            tenants.rotate_link_secret(session, tenant_id)
    except DarkroomError as exc:
        raise fail(exc.message) from None
    console.print(f"every report link of tenant [bold]{tenant_id}[/bold] has stopped working")
