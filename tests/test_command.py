"""The `tokensvc` command: its own `serve` and `worker`, the app's commands beside them, and
`tenant-token`'s claims (scopes, roles, a bound identity, any claim)."""

import subprocess
import sys

import jwt
import pytest

from support.processes import ROOT, base_environment, livekit_settings
from support.tokens import BODY, TENANT_SECRET

TOKENSVC = [sys.executable, "-m", "tokensvc.processes.cli"]


def run_tokensvc(*args: str, **settings: str) -> subprocess.CompletedProcess:
    """`tokensvc ARGS` in a fresh process with only `settings` of the service's settings."""
    base = base_environment()
    return subprocess.run(
        [*TOKENSVC, *args],
        cwd=ROOT,
        env={**base, **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_its_own_commands_and_the_apps():
    """`tokensvc --help` lists serve and worker and every command the app registers."""
    result = run_tokensvc("--help", LOG_LEVEL="ERROR")
    assert result.returncode == 0, result.stderr
    listed = {
        line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()
    }
    assert {"serve", "worker", "tenant-token", "usage", "tenants"} <= listed


def test_tenants_is_a_subcommand_with_its_own_commands(tmp_path):
    """`tokensvc tenants set` then `show` on the embedded storage, as `flask tenants` does."""
    settings = dict(
        AUTH_JWT_SECRET=TENANT_SECRET,
        STORAGE_URL=f"sqlite:///{tmp_path}/holds.sqlite3",
        LOG_LEVEL="ERROR",
    )
    result = run_tokensvc("tenants", "set", "acme", "--max-rooms", "2", **settings)
    assert result.returncode == 0, result.stderr
    shown = run_tokensvc("tenants", "show", "acme", **settings)
    assert shown.returncode == 0, shown.stderr
    assert '"max_rooms": 2' in shown.stdout


def test_usage_needs_no_livekit(tmp_path):
    """`tokensvc usage` reads the storage with the tenant key alone: no LiveKit setting is
    needed for an operator's report (the server's check is the server's)."""
    result = run_tokensvc(
        "usage",
        "--from",
        "2026-01-01T00:00:00Z",
        "--to",
        "2026-02-01T00:00:00Z",
        "--format",
        "csv",
        AUTH_JWT_SECRET=TENANT_SECRET,
        STORAGE_URL=f"sqlite:///{tmp_path}/holds.sqlite3",
        LOG_LEVEL="ERROR",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["tenant,participant_seconds,room_seconds,rooms"]


def test_a_bad_setting_stops_an_operator_command_with_one_line():
    """A setting the service cannot run with: one line and exit 4, as for the server."""
    result = run_tokensvc("tenant-token", "--tenant", "acme", TOKEN_TTL="soon")
    assert result.returncode == 4
    assert result.stderr.startswith("tokensvc: configuration error: TOKEN_TTL")


def test_serve_without_the_server_extra_says_what_to_install(tmp_path):
    """Where gunicorn cannot be found (a sitecustomize hides it from the import system's
    lookup), `tokensvc serve` names the extra to install, exit 1."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(
        "import importlib.util\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = (\n"
        "    lambda name, *a: None if name == 'gunicorn' else _find(name, *a))\n"
    )
    base = base_environment()
    result = subprocess.run(
        [*TOKENSVC, "serve"],
        cwd=ROOT,
        env={**base, "PYTHONPATH": f"{hidden}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "gunicorn not installed: the server needs pip install 'tokensvc[server]'" in (
        result.stderr
    )


def claims_of(token: str) -> dict:
    """The claims of a tenant token signed with the tests' tenant key."""
    return jwt.decode(token, TENANT_SECRET, algorithms=["HS256"])


def test_tenant_token_takes_scopes_roles_an_identity_and_any_claim(make_app):
    """--scope, --role, --identity and --claim (JSON values, else strings) land in the claims
    the settings name; --tenant, iat and exp are the command's own."""
    app = make_app(AUTH_IDENTITY_CLAIM="uid", AUTH_SCOPES_CLAIM="perms")
    result = app.test_cli_runner().invoke(
        args=[
            "tenant-token",
            "--tenant",
            "acme",
            "--ttl",
            "120",
            "--scope",
            "tokens:create",
            "--scope",
            "rooms:read",
            "--role",
            "speaker",
            "--identity",
            "alice",
            "--claim",
            "max_rooms=3",
            "--claim",
            'team={"name": "core"}',
            "--claim",
            "plan=gold",
            "--claim",
            "sub=globex",
        ]
    )
    assert result.exit_code == 0, result.output
    claims = claims_of(result.output.strip())
    assert claims["sub"] == "acme" and claims["exp"] - claims["iat"] == 120
    assert claims["perms"] == "tokens:create rooms:read"
    assert claims["roles"] == ["speaker"] and claims["uid"] == "alice"
    assert claims["max_rooms"] == 3 and claims["team"] == {"name": "core"}
    assert claims["plan"] == "gold"


def test_the_service_holds_a_minted_token_to_its_claims(make_app):
    """A token minted with --identity alice gets alice's token and is refused bob's; one with
    only --scope rooms:read is refused the token route."""
    app = make_app(AUTH_IDENTITY_CLAIM="uid", AUTH_REQUIRED="true")
    runner = app.test_cli_runner()
    bound = runner.invoke(args=["tenant-token", "--tenant", "acme", "--identity", "alice"])
    reader = runner.invoke(args=["tenant-token", "--tenant", "acme", "--scope", "rooms:read"])
    client = app.test_client()

    def ask(token, identity):
        body = {**BODY, "participant_identity": identity}
        return client.post(
            "/livekit/token", json=body, headers={"Authorization": f"Bearer {token}"}
        )

    assert ask(bound.output.strip(), "alice").status_code == 200
    refused = ask(bound.output.strip(), "bob")
    assert refused.status_code == 403, refused.json
    scoped = ask(reader.output.strip(), "alice")
    assert scoped.status_code == 403 and scoped.json["code"] == "scope_forbidden"


def test_identity_without_the_identity_claim_setting_says_so(make_app):
    """--identity with AUTH_IDENTITY_CLAIM unset: the service would read no bound identity, so
    the command refuses and names the setting."""
    result = (
        make_app()
        .test_cli_runner()
        .invoke(args=["tenant-token", "--tenant", "acme", "--identity", "alice"])
    )
    assert result.exit_code == 1
    assert "AUTH_IDENTITY_CLAIM is not set" in result.output


@pytest.mark.parametrize("pair", ["max_rooms", "=3"])
def test_a_claim_that_is_not_key_value_is_a_usage_error(make_app, pair):
    """--claim without KEY=VALUE: click's usage error, exit 2, naming the option."""
    result = (
        make_app()
        .test_cli_runner()
        .invoke(args=["tenant-token", "--tenant", "acme", "--claim", pair])
    )
    assert result.exit_code == 2
    assert "--claim" in result.output and "is not KEY=VALUE" in result.output


def test_flask_app_keeps_the_commands_for_those_who_embed(livekit, tmp_path):
    """`flask --app 'tokensvc:create_app()' tenant-token` works as before."""
    base = base_environment()
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tokensvc:create_app()", "tenant-token"]
        + ["--tenant", "acme", "--claim", "max_rooms=1"],
        cwd=ROOT,
        env={
            **base,
            **livekit_settings(livekit),
            "AUTH_JWT_SECRET": TENANT_SECRET,
            "STORAGE_URL": f"sqlite:///{tmp_path}/holds.sqlite3",
            "LOG_LEVEL": "ERROR",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert claims_of(result.stdout.strip())["max_rooms"] == 1
