"""The service's flask commands of its own (`flask --app ... usage`, `flask storage init`,
`flask webhooks rekey`): they read the app's service state, as the routes do, and print."""

import csv
import json
import sys

import click
from flask.cli import with_appcontext

from .context import service_state
from .errors import ApiError, InvalidRequest
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


@click.group("storage")
def storage_command() -> None:
    """The ownership record's storage (STORAGE_URL)."""


@storage_command.command("init")
@click.option(
    "--force",
    is_flag=True,
    help="Initialise even a storage that shows an earlier life (a record that is not empty, "
    "rooms the service made in LiveKit): every hold it has is then trusted as it is.",
)
@with_appcontext
def storage_init_command(force: bool) -> None:
    """Say once, when a deployment is created, that its storage is new: no token of an earlier
    life of it can still join a room. Run it then (app.json's postdeploy; make run and the tests
    do), never at each release. A storage that shows an earlier life is refused unless --force;
    one already initialised is left as it is."""
    ownership = service_state().issuer.ownership
    if ownership is None:
        raise click.ClickException(
            "no tenant key is configured here (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or "
            "AUTH_JWKS_URL), so the service keeps no record: nothing to initialise"
        )
    holds = ownership.holds
    try:
        state = holds.record_state()
        if state.born and not state.quarantine_ms and not force:
            click.echo(
                f"the storage at {holds.where} is initialised already ({state.origin}); "
                f"nothing changed"
            )
            return
        lives = [] if force else _earlier_lives(ownership, state)
        if lives:
            raise click.ClickException(
                f"the storage at {holds.where} shows an earlier life ({'; '.join(lives)}): "
                f"tokens of it may still join rooms, so it is not a new deployment's. Leave it "
                f"to recover (one grace), or run with --force if you know no such token exists"
            )
        found = holds.init_record()
    except ApiError as exc:
        raise click.ClickException(exc.description or exc.error_code) from None
    ended = " (the quarantine a start found is over)" if state.quarantine_ms else ""
    click.echo(f"the storage at {holds.where} is a new deployment's{ended}; epoch {found.epoch}")


def _earlier_lives(ownership, state) -> list[str]:
    """What shows that the deployment lived before: a record that is not empty, rooms the
    service made that LiveKit lists (LiveKit not configured: that cannot be told)."""
    lives = [] if state.empty else ["its record is not empty"]
    if ownership.rooms is None:
        lives.append("LiveKit is not configured here, so its rooms cannot be checked")
        return lives
    made = ownership.rooms_made_here()
    if made:
        shown = ", ".join(repr(name) for name in made[:5])
        more = f" and {len(made) - 5} more" if len(made) > 5 else ""
        lives.append(f"LiveKit lists {len(made)} room(s) the service made: {shown}{more}")
    return lives


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


#: Every command of the service's own, registered on the app's CLI by the extension (and so
#: subcommands of `tokensvc` too).
COMMANDS = (usage_command, storage_command, webhooks_group)
