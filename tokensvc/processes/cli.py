"""The `tokensvc` command (the package's console script): `serve` (the service under gunicorn),
`worker` (tenants' webhook deliveries), and every command the service registers on its app's
`app.cli` (`tenant-token`, `usage`, ...), all reading the settings from the environment.

The app's commands run on `create_app()` without the server's LiveKit check: an operator's
command needs the storage and the tenant key, not LiveKit. `flask --app 'tokensvc:create_app()'`
runs the same commands for those who embed.
"""

import importlib.util
import os
import sys

import click

from .. import __version__
from ..config import ConfigError, exit_on

#: What `tokensvc serve` runs: the package's gunicorn settings and WSGI app, so it needs no
#: file of a checkout and works from any directory.
GUNICORN_CONFIG = "python:tokensvc.processes.gunicorn_conf"
WSGI_APP = "tokensvc.processes.wsgi:app"


def operator_app():
    """The app the operator's commands run in: the environment's settings; a setting it cannot
    run with stops the command with one line and exit 4, as it stops the server."""
    from ..factory import create_app

    try:
        return create_app()
    except ConfigError as exc:
        exit_on(exc)


class ServiceCommands(click.Group):
    """This group's own commands, then the app's (`app.cli`), loaded only when one is asked
    for or listed, so commands the app registers later appear here by themselves."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """`serve`, `worker`, then the app's commands."""
        own = super().list_commands(ctx)
        app_cli = _app(ctx).cli
        return own + sorted(name for name in app_cli.list_commands(ctx) if name not in own)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """One of this group's own commands, else the app's of that name."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return _app(ctx).cli.get_command(ctx, cmd_name)


def _app(ctx: click.Context):
    """The app of this invocation, made once (Flask's ScriptInfo keeps it for `with_appcontext`)."""
    from flask.cli import ScriptInfo

    return ctx.ensure_object(ScriptInfo).load_app()


@click.group(cls=ServiceCommands)
@click.version_option(__version__, prog_name="tokensvc")
def cli() -> None:
    """tokensvc: LiveKit access tokens for one room, with the authenticated tenant as its owner.
    Every command reads the service's settings from the environment (docs/configuration.md)."""


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(gunicorn_args: tuple[str, ...]) -> None:
    """Serve the service under gunicorn with the package's settings: $PORT (default 8000) on
    every interface, gevent workers, WEB_CONCURRENCY of them (default: cores). Further
    arguments go to gunicorn, e.g. `tokensvc serve --bind 127.0.0.1:8000`."""
    missing = [name for name in ("gunicorn", "gevent") if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"{' and '.join(missing)} not installed: the server needs "
            f"pip install 'tokensvc[server]'"
        )
    argv = [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG]
    os.execv(sys.executable, [*argv, *gunicorn_args, WSGI_APP])


@cli.command()
def worker() -> None:
    """Deliver tenants' webhooks (up to TENANT_WEBHOOK_IN_FLIGHT attempts at once) until
    SIGTERM; run beside `serve`, on the same storage."""
    from .worker import main as run_worker

    run_worker()


def main() -> None:
    """The console script's entry point."""
    from flask.cli import ScriptInfo

    info = ScriptInfo(create_app=operator_app, set_debug_flag=False, load_dotenv_defaults=False)
    cli.main(obj=info, prog_name="tokensvc")


if __name__ == "__main__":
    main()
