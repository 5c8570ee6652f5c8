"""Settings: the one place that reads the environment, parses and validates every key."""

import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from limits import parse_many

from .roles import load_presets

#: Every setting the service reads, in the order the README documents them.
KEYS = (
    "LIVEKIT_URL",
    "LIVEKIT_PUBLIC_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LIVEKIT_TIMEOUT",
    "TOKEN_TTL",
    "ROOM_EMPTY_TIMEOUT",
    "ROOM_DEPARTURE_TIMEOUT",
    "ROOM_MAX_PARTICIPANTS",
    "AUTH_REQUIRED",
    "STORAGE_URL",
    "STORAGE_TIMEOUT",
    "AUTH_JWT_SECRET",
    "AUTH_JWT_PUBLIC_KEY",
    "AUTH_JWKS_URL",
    "AUTH_JWT_ALGORITHMS",
    "AUTH_JWT_ISSUER",
    "AUTH_JWT_AUDIENCE",
    "AUTH_JWT_LEEWAY",
    "AUTH_JWKS_REFRESH_SECONDS",
    "AUTH_TENANT_CLAIM",
    "AUTH_ROLES_CLAIM",
    "ROLE_PRESETS",
    "MAX_CONTENT_LENGTH",
    "ROOM_NAMES",
    "CORS_ALLOWED_ORIGINS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "PROXY_FIX",
    "METRICS_ENABLED",
    "METRICS_BEARER_TOKEN",
    "RATE_LIMIT_PER_TENANT",
    "RATE_LIMIT_ROOM_CREATES_PER_TENANT",
    "RATE_LIMIT_PER_IP",
    "RATE_LIMIT_STORAGE_URL",
    "RATE_LIMIT_FAIL_OPEN",
)

#: Secrets that may instead be read from a file named by `<KEY>_FILE`.
FILE_KEYS = ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY")
#: The settings that configure a key for tenant tokens (any one turns AUTH_REQUIRED on).
TENANT_KEYS = ("AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY", "AUTH_JWKS_URL")

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)
#: Characters that make flask-cors treat an origin as a regular expression.
PATTERN_CHARACTERS = re.compile(r"[*?\[\]()^$|\\+{}]")
#: Where rate-limit counters may live (the `limits` library's storage URLs).
STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")
#: Where the ownership record may live (STORAGE_URL).
HOLD_SCHEMES = ("sqlite", "redis", "rediss", "redis+sentinel")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Validated settings of one service instance."""

    livekit_url: str | None = None
    livekit_public_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: str | None = field(default=None, repr=False)
    livekit_timeout: float = 5.0
    token_ttl: int = 600
    room_empty_timeout: int | None = None
    room_departure_timeout: int | None = None
    room_max_participants: int | None = None
    auth_required: bool = False
    storage_url: str | None = field(default=None, repr=False)
    storage_timeout: float = 2.0
    auth_jwt_secret: str | None = field(default=None, repr=False)
    auth_jwt_public_key: str | None = None
    auth_jwks_url: str | None = None
    auth_jwt_algorithms: tuple[str, ...] = ()
    auth_jwt_issuer: str | None = None
    auth_jwt_audience: tuple[str, ...] = ()
    auth_jwt_leeway: int = 30
    auth_jwks_refresh_seconds: float = 30.0
    auth_tenant_claim: str = "sub"
    auth_roles_claim: str = "roles"
    role_presets: dict = field(default_factory=lambda: load_presets(None))
    max_content_length: int = 65536
    room_names: str = "shared"
    cors_allowed_origins: tuple[str, ...] = ()
    log_format: str = "json"
    log_level: str = "INFO"
    proxy_fix: int = 0
    metrics_enabled: bool = False
    metrics_bearer_token: str | None = field(default=None, repr=False)
    rate_limit_per_tenant: str | None = None
    rate_limit_room_creates_per_tenant: str | None = None
    rate_limit_per_ip: str | None = None
    rate_limit_storage_url: str = field(default="memory://", repr=False)
    rate_limit_fail_open: bool = False

    @property
    def rate_limited(self) -> bool:
        """Whether any rate limit is configured."""
        return bool(self.rate_limit_per_tenant or self.rate_limit_room_creates_per_tenant
                    or self.rate_limit_per_ip)

    @property
    def livekit_configured(self) -> bool:
        """Whether the server URL and the API key pair are all present."""
        return bool(self.livekit_url and self.livekit_api_key and self.livekit_api_secret)

    @property
    def client_url(self) -> str | None:
        """The URL handed to clients: the public one, else the server one."""
        return self.livekit_public_url or self.livekit_url

    @property
    def anonymous_checked(self) -> bool:
        """Whether anonymous tokens are possible beside tenants (a key, AUTH_REQUIRED=false):
        then they are never for a name a tenant holds."""
        return self.auth_configured and not self.auth_required

    @property
    def auth_configured(self) -> bool:
        """Whether any tenant-token verification key is configured."""
        return bool(self.auth_jwt_secret or self.auth_jwt_public_key or self.auth_jwks_url)


def environ_config(environ=None) -> dict:
    """Return the service's keys (and their `_FILE` forms) that are set in the environment."""
    environ = os.environ if environ is None else environ
    names = KEYS + tuple(f"{key}_FILE" for key in FILE_KEYS)
    return {name: environ[name] for name in names if name in environ}


def load_settings(config) -> Settings:
    """Parse and validate the service's keys from a mapping such as `app.config`."""
    values = _resolve_files(config)
    settings = Settings(
        livekit_url=_url(values, "LIVEKIT_URL"),
        livekit_public_url=_url(values, "LIVEKIT_PUBLIC_URL"),
        livekit_api_key=_text(values, "LIVEKIT_API_KEY"),
        livekit_api_secret=_text(values, "LIVEKIT_API_SECRET"),
        livekit_timeout=_number(values, "LIVEKIT_TIMEOUT", 5.0, float, minimum=0.001),
        token_ttl=_number(values, "TOKEN_TTL", 600, int, minimum=1),
        room_empty_timeout=_number(values, "ROOM_EMPTY_TIMEOUT", None, int, minimum=0),
        room_departure_timeout=_number(values, "ROOM_DEPARTURE_TIMEOUT", None, int, minimum=0),
        room_max_participants=_number(values, "ROOM_MAX_PARTICIPANTS", None, int, minimum=0),
        auth_required=_auth_required(values),
        storage_url=_hold_storage_url(values, "STORAGE_URL"),
        storage_timeout=_number(values, "STORAGE_TIMEOUT", 2.0, float, minimum=0.001),
        auth_jwt_secret=_text(values, "AUTH_JWT_SECRET"),
        auth_jwt_public_key=_text(values, "AUTH_JWT_PUBLIC_KEY"),
        auth_jwks_url=_url(values, "AUTH_JWKS_URL", schemes=("http", "https")),
        auth_jwt_algorithms=_words(values, "AUTH_JWT_ALGORITHMS"),
        auth_jwt_issuer=_text(values, "AUTH_JWT_ISSUER"),
        auth_jwt_audience=_words(values, "AUTH_JWT_AUDIENCE"),
        auth_jwt_leeway=_number(values, "AUTH_JWT_LEEWAY", 30, int, minimum=0),
        auth_jwks_refresh_seconds=_number(
            values, "AUTH_JWKS_REFRESH_SECONDS", 30.0, float, minimum=0
        ),
        auth_tenant_claim=_text(values, "AUTH_TENANT_CLAIM") or "sub",
        auth_roles_claim=_text(values, "AUTH_ROLES_CLAIM") or "roles",
        role_presets=_role_presets(values, "ROLE_PRESETS"),
        max_content_length=_number(values, "MAX_CONTENT_LENGTH", 65536, int, minimum=1),
        room_names=_choice(values, "ROOM_NAMES", ("shared", "per-tenant"), "shared"),
        cors_allowed_origins=_origins(values, "CORS_ALLOWED_ORIGINS"),
        log_format=_choice(values, "LOG_FORMAT", ("json", "logfmt"), "json"),
        log_level=_choice(values, "LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        proxy_fix=_number(values, "PROXY_FIX", 0, int, minimum=0),
        metrics_enabled=_flag(values, "METRICS_ENABLED"),
        metrics_bearer_token=_text(values, "METRICS_BEARER_TOKEN"),
        rate_limit_per_tenant=_rate(values, "RATE_LIMIT_PER_TENANT"),
        rate_limit_room_creates_per_tenant=_rate(values, "RATE_LIMIT_ROOM_CREATES_PER_TENANT"),
        rate_limit_per_ip=_rate(values, "RATE_LIMIT_PER_IP"),
        rate_limit_storage_url=_storage_url(values, "RATE_LIMIT_STORAGE_URL"),
        rate_limit_fail_open=_flag(values, "RATE_LIMIT_FAIL_OPEN"),
    )
    _check_auth(settings)
    return settings


def _resolve_files(config) -> dict:
    """Copy the known keys, replacing each `<KEY>_FILE` by the file's contents."""
    values = {key: config.get(key) for key in KEYS}
    for key in FILE_KEYS:
        path = config.get(f"{key}_FILE")
        if not path:
            continue
        if values.get(key) not in (None, ""):
            raise ConfigError(f"{key}: set either {key} or {key}_FILE, not both")
        try:
            with open(path, encoding="utf-8") as handle:
                values[key] = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{key}_FILE: cannot read {path!r}: {exc.strerror}") from None
    return values


def _text(values, key):
    """Return a non-empty stripped string, or None when unset or blank."""
    value = values.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {type(value).__name__}")
    return value.strip() or None


def _url(values, key, schemes=("ws", "wss", "http", "https")):
    """Return a URL with one of `schemes` and a host, or None when unset."""
    value = _text(values, key)
    if value is None:
        return None
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ConfigError(f"{key}: expected a {'/'.join(schemes)} URL with a host, got {value!r}")
    return value.rstrip("/")


def _number(values, key, default, kind, minimum):
    """Return a number of `kind` no smaller than `minimum`, or `default` when unset."""
    value = values.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        noun = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{key}: expected {noun}, got {value!r}") from None
    if number < minimum or number != number:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value!r}")
    return number


def _flag(values, key):
    """Return a boolean from true/1/yes/on or false/0/no/off."""
    value = values.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{key}: expected true/1/yes or false/0/no, got {value!r}")


def _words(values, key):
    """Return the comma-separated items of a setting (or of a list) as a tuple."""
    value = values.get(key)
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip() for item in items if item.strip())


def _origins(values, key):
    """Return `*` or a tuple of scheme://host[:port] origins."""
    origins = _words(values, key)
    if origins == ("*",):
        return origins
    for origin in origins:
        if PATTERN_CHARACTERS.search(origin):
            # flask-cors would read it as a regular expression: https://*.a.example would let
            # https://xa.example.evil.com in and keep https://b.a.example out.
            raise ConfigError(f"{key}: list each origin exactly; wildcards and patterns such as "
                              f"{origin!r} are not supported (only '*' alone allows every origin)")
        parsed = urlparse(origin)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise ConfigError(f"{key}: expected '*' or origins like https://app.example, got {origin!r}")
    return tuple(origin.rstrip("/") for origin in origins)


def _rate(values, key):
    """Return a rate limit in flask-limiter's syntax (`60/minute`, `10 per second; 100/hour`)."""
    value = _text(values, key)
    if value is None:
        return None
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{key}: expected a rate such as 60/minute, got {value!r}") from None
    return value


def _storage_url(values, key):
    """Return `memory://` (the default) or a Redis URL for the rate-limit counters."""
    value = _text(values, key) or "memory://"
    if urlparse(value).scheme not in STORAGE_SCHEMES:
        raise ConfigError(f"{key}: expected memory:// or a redis:// URL, got a "
                          f"{urlparse(value).scheme or 'schemeless'} URL")
    return value


def _auth_required(values) -> bool:
    """AUTH_REQUIRED as set; unset, true whenever a tenant key is configured."""
    if values.get("AUTH_REQUIRED") in (None, ""):
        return any(_text(values, key) for key in TENANT_KEYS)
    return _flag(values, "AUTH_REQUIRED")


def _hold_storage_url(values, key):
    """Return a sqlite:/// or Redis URL for the ownership record, or None (the default file)."""
    value = _text(values, key)
    if value is None:
        return None
    scheme = urlparse(value).scheme
    if scheme not in HOLD_SCHEMES:
        raise ConfigError(f"{key}: expected sqlite:///path or a redis://, rediss:// or "
                          f"redis+sentinel:// URL, got a {scheme or 'schemeless'} URL")
    if scheme == "sqlite" and not value.split("://", 1)[1].lstrip("/"):
        raise ConfigError(f"{key}: a sqlite URL names a file, as in sqlite:////var/lib/tokensvc.db")
    return value


def _role_presets(values, key) -> dict:
    """The role presets: the built-in ones, overridden and extended by the setting's JSON."""
    try:
        return load_presets(_text(values, key))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _choice(values, key, choices, default):
    """Return one of `choices` (case-insensitive), or `default` when unset."""
    value = _text(values, key)
    if value is None:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")


def _check_auth(settings: Settings) -> None:
    """Refuse authentication settings that would leave the service open or unusable."""
    if settings.auth_required and not settings.auth_configured:
        raise ConfigError(
            "AUTH_REQUIRED: is on but no key is configured "
            "(set AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY or AUTH_JWKS_URL)"
        )
    known = set(HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS)
    unknown = [alg for alg in settings.auth_jwt_algorithms if alg not in known]
    if unknown:
        raise ConfigError(f"AUTH_JWT_ALGORITHMS: unsupported algorithm(s) {', '.join(unknown)}")
