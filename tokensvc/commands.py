"""The service's flask commands of its own (`flask --app ... usage`, `flask webhooks rekey`):
they read the app's service state, as the routes do, and print."""

import csv
import json
import sys

import click
from flask.cli import with_appcontext

from .context import service_state
from .errors import InvalidRequest
from .http.usage import load_period
from .sealing import SealingError
from .usage import format_time


@click.command("usage")
@click.option("--from", "start", help="RFC 3339 start (default: the start of this month, UTC).")
@click.option("--to", "end", help="RFC 3339 end (default: now).")
@click.option(
    "--format", "style", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@with_appcontext
def usage_command(start: str | None, end: str | None, style: str) -> None:
    """Print every tenant's usage over a period, for billing: participant-seconds,
    room-seconds and room names used, per tenant."""
    usage_rule = service_state().issuer.usage
    if usage_rule is None:
        raise click.ClickException(
            "no tenant key is configured here (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or "
            "AUTH_JWKS_URL), so the usage store is not opened: run this with the service's "
            "settings (beside make run: make usage)"
        )
    try:
        start_ms, end_ms = load_period(start, end)
    except InvalidRequest as exc:
        problems = "; ".join(
            f"--{field} {' '.join(messages)}" for field, messages in exc.extra["fields"].items()
        )
        raise click.ClickException(problems) from None
    totals = usage_rule.report_all(start_ms, end_ms)
    if style == "json":
        click.echo(
            json.dumps(
                {"from": format_time(start_ms), "to": format_time(end_ms), "tenants": totals},
                ensure_ascii=False,
            )
        )
        return
    writer = csv.DictWriter(
        sys.stdout, ["tenant", "participant_seconds", "room_seconds", "rooms"], lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(totals)


@click.group("webhooks")
def webhooks_group() -> None:
    """Tenants' webhooks: operators' commands."""


@webhooks_group.command("rekey")
@with_appcontext
def rekey_command() -> None:
    """Seal every endpoint's signing secrets again with the first key of
    TENANT_WEBHOOK_SECRETS_KEY (after putting a new key first; then drop the old one)."""
    webhooks = service_state().tenant_webhooks
    if webhooks is None:
        raise click.ClickException(
            "no tenant key is configured here (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or "
            "AUTH_JWKS_URL), so tenants' webhooks are off: run this with the service's settings"
        )
    try:
        changed, unchanged = webhooks.rekey()
    except SealingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"sealed again with the first key: {changed} endpoints; already sealed with it: {unchanged}"
    )
