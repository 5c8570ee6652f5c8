"""The service's flask commands of its own (`flask --app ... usage`, `flask storage init`,
`flask webhooks rekey`, `flask tenants ...`): they read the app's service state, as the routes
do, and print."""

import csv
import json
import sys

import click
from flask.cli import with_appcontext

from .auth import tenant_problem
from .context import service_state
from .errors import ApiError, InvalidRequest
from .http.usage import load_period
from .sealing import SealingError
from .tenants import CLI_OPERATOR, parse_limits
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


def _tenants():
    """The app's operator records, or a ClickException saying why there are none."""
    tenants = service_state().tenants
    if tenants is None:
        raise click.ClickException(
            "no tenant key is configured here (AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or "
            "AUTH_JWKS_URL), so the tenants' storage is not opened: run this with the "
            "service's settings"
        )
    return tenants


def _tenant_id(tenant: str) -> str:
    """A tenant id as the service would take it from a JWT, or a ClickException."""
    problem = tenant_problem(tenant)
    if problem:
        raise click.ClickException(f"the tenant id {problem}")
    return tenant


def _print(document) -> None:
    """One JSON document on stdout, as the admin API answers it."""
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


def _acting(action):
    """Run `action()`, turning the service's errors into the command's (exit 1, one line)."""
    try:
        return action()
    except ApiError as exc:
        fields = exc.extra.get("fields")
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in (fields or {}).items())
        raise click.ClickException(
            f"{exc.description}{': ' + details if details else ''}"
        ) from None


@click.group("tenants")
def tenants_command() -> None:
    """The tenants the operator owns: plans, suspension (as the /admin API does)."""


@tenants_command.command("list")
@with_appcontext
def tenants_list() -> None:
    """Every tenant with a record, as JSON."""
    _print({"tenants": _acting(_tenants().list_all)})


@tenants_command.command("show")
@click.argument("tenant")
@with_appcontext
def tenants_show(tenant: str) -> None:
    """One tenant: its overrides, what applies, its status."""
    tenants = _tenants()
    _print(_acting(lambda: tenants.show(_tenant_id(tenant))))


#: `flask tenants set` options: an empty value removes the override.
LIMIT_OPTIONS = {
    "max_rooms": "--max-rooms",
    "max_participants": "--max-participants",
    "max_webhook_endpoints": "--max-webhook-endpoints",
    "agents": "--agents",
}


def _limit_value(name: str, text: str):
    """A limit from its option's text: "" removes it; agents comma-separated; else a number."""
    if text.strip() == "":
        return None
    if name == "agents":
        return [agent.strip() for agent in text.split(",") if agent.strip()]
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a whole number", param_hint=LIMIT_OPTIONS[name]
        ) from None


@tenants_command.command("set")
@click.argument("tenant")
@click.option("--max-rooms", help="Rooms live at once ('' removes the override).")
@click.option("--max-participants", help="Participants in one room ('' removes it).")
@click.option("--max-webhook-endpoints", help="Webhook endpoints ('' removes it).")
@click.option("--agents", help="Agent names it may dispatch, comma-separated ('' removes it).")
@with_appcontext
def tenants_set(tenant: str, **options: str | None) -> None:
    """Set some of a tenant's limits; the others stay as they are."""
    tenants = _tenants()
    document = {
        name: _limit_value(name, text) for name, text in options.items() if text is not None
    }
    if not document:
        raise click.UsageError("name at least one limit to set (see --help)")
    _print(
        _acting(
            lambda: tenants.set_limits(_tenant_id(tenant), parse_limits(document), CLI_OPERATOR)
        )
    )


@tenants_command.command("suspend")
@click.argument("tenant")
@click.option("--reason", required=True, help="Why (kept with the record and the audit trail).")
@with_appcontext
def tenants_suspend(tenant: str, reason: str) -> None:
    """Suspend a tenant: its requests are refused and its live rooms end at once."""
    tenants = _tenants()
    _print(_acting(lambda: tenants.suspend(_tenant_id(tenant), reason, CLI_OPERATOR)))


@tenants_command.command("resume")
@click.argument("tenant")
@with_appcontext
def tenants_resume(tenant: str) -> None:
    """Resume a suspended tenant."""
    tenants = _tenants()
    _print(_acting(lambda: tenants.resume(_tenant_id(tenant), CLI_OPERATOR)))


#: Every command of the service's own, registered on the app's CLI by the extension (and so
#: subcommands of `tokensvc` too).
COMMANDS = (usage_command, storage_command, webhooks_group, tenants_command)
