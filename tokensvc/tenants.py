"""The tenants the operator owns: their records (plans, suspension), the audit trail, and the
one place the CLI (`flask tenants ...`) and the admin API (`/admin/...`) both act through (no
Flask here).

**Records.** A tenant's record (storage/tenants) overrides the deployment's defaults one limit
at a time: `max_rooms` and `max_participants` (QUOTA_MAX_ROOMS, QUOTA_MAX_PARTICIPANTS),
`max_webhook_endpoints` (TENANT_WEBHOOK_ENDPOINTS_MAX) and `agents`, the agent names it may
dispatch (AGENT_NAMES_ALLOWED). A tenant without a record has the defaults.

**Reading it is cheap.** Every request of a tenant asks `is_suspended`, and the token route the
limits, from one read of the record, kept by each instance for TENANT_RECORD_CACHE seconds
(default 1; at most CACHED_TENANTS_MAX tenants): an operator's change reaches every instance
within that time, and at once on the instance that made it.

**Suspension.** A suspended tenant's requests answer 403 `tenant_suspended` (auth.py); its live
rooms are ended at once (each told why first, a data message `{"code": "tenant_suspended"}` on
topic `tokensvc`), and a room a refreshed token starts again is ended on its `room_started` or
`participant_joined` (`Ownership.on_event`); usage stops with its rooms. Its webhook deliveries
wait until it is resumed: the delivery engine asks `is_suspended` before each attempt.

**Audit.** Every operator change and every management action of a tenant is an entry of the
trail (storage/audit): who (the operator, or the tenant with its bearer's subject and bound
identity), what, on what, when, and the outcome (`ok` or the error code).
"""

import json
import secrets
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from .config import Settings
from .errors import ApiError, InvalidRequest, LiveKitNotFound
from .ownership import NOTICE_SECONDS, Ownership, notice
from .storage import ACTIVE, SUSPENDED, TENANT_LIMITS, AuditEntry, TenantRecord
from .usage import Limits, format_time

#: How many tenants' records each instance keeps read (the least recently read go first).
CACHED_TENANTS_MAX = 4096
#: The most audit entries one listing returns.
AUDIT_LISTED_MAX = 1000
#: The records one request has read (`Tenants.begin_request`): read once per request even with
#: TENANT_RECORD_CACHE=0.
READ_IN_REQUEST: ContextVar[dict | None] = ContextVar("tokensvc_tenant_records", default=None)
#: Who acts: the operator (ADMIN_TOKEN, the CLI) or a tenant's bearer.
OPERATOR, TENANT = "operator", "tenant"


@dataclass(frozen=True)
class Actor:
    """Who acts: OPERATOR or TENANT, with the bearer's subject and bound identity when it has
    them."""

    kind: str
    subject: str = ""
    identity: str = ""


#: The operator as the CLI acts (the API says "admin-api").
CLI_OPERATOR = Actor(OPERATOR, "cli")
API_OPERATOR = Actor(OPERATOR, "admin-api")


def parse_limits(document: Mapping) -> dict:
    """The limits a change sets, from JSON-like values: a whole number from 0 (`agents`: a list
    of agent names), or None to remove the override; 400 naming each bad or unknown field."""
    problems: dict[str, list[str]] = {}
    limits: dict = {}
    for name, value in document.items():
        if name not in TENANT_LIMITS:
            problems[name] = [f"Unknown field; one of: {', '.join(TENANT_LIMITS)}."]
        elif value is None:
            limits[name] = None
        elif name == "agents":
            if not isinstance(value, list) or not all(
                isinstance(agent, str) and agent.strip() for agent in value
            ):
                problems[name] = ["Must be a list of agent names, or null."]
            else:
                limits[name] = tuple(dict.fromkeys(value))
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems[name] = ["Must be a whole number from 0, or null."]
        else:
            limits[name] = value
    if problems:
        raise InvalidRequest("some fields are invalid", fields=problems)
    return limits


class Tenants:
    """The operator's records and the audit trail, on the holds' storage, for one instance."""

    def __init__(
        self,
        settings: Settings,
        store,
        audit,
        ownership: Ownership | None = None,
        clock=time.monotonic,
    ):
        """Use `store` (storage TenantStore) and `audit` (AuditStore), both observed;
        `ownership` ends a suspended tenant's rooms; `clock` (seconds) ages the cache."""
        self.settings = settings
        self.store = store
        self.audit_store = audit
        self.ownership = ownership
        self.clock = clock
        self.cache_seconds = settings.tenant_record_cache
        self._cache: dict[str, tuple[TenantRecord | None, float]] = {}
        self._lock = threading.Lock()
        self._changes = 0  # the operator's changes made here: a read begun before one is not kept

    # Reading a record (every request of a tenant).

    @staticmethod
    def begin_request() -> None:
        """A request starts (the auth hook): what it reads of the records is read once."""
        READ_IN_REQUEST.set({})

    def record(self, tenant: str) -> TenantRecord | None:
        """The tenant's record (None: it has none), read at most once per request and once per
        TENANT_RECORD_CACHE seconds on this instance."""
        in_request = READ_IN_REQUEST.get()
        if in_request is not None and tenant in in_request:
            return in_request[tenant]
        now = self.clock()
        cached = self._cache.get(tenant)
        if cached is not None and now < cached[1]:
            return cached[0]
        changes = self._changes
        record = self.store.get(tenant)
        if in_request is not None:
            in_request[tenant] = record
        if self.cache_seconds > 0:
            with self._lock:
                if changes != self._changes:  # changed here meanwhile: what was read may be old
                    return record
                self._cache.pop(tenant, None)
                if len(self._cache) >= CACHED_TENANTS_MAX:
                    del self._cache[next(iter(self._cache))]
                self._cache[tenant] = (record, now + self.cache_seconds)
        return record

    def _forget(self, tenant: str) -> None:
        """Drop this instance's copies of a record the operator just changed."""
        with self._lock:
            self._cache.pop(tenant, None)
            self._changes += 1
        in_request = READ_IN_REQUEST.get()
        if in_request is not None:
            in_request.pop(tenant, None)

    def is_suspended(self, tenant: str) -> bool:
        """Whether the operator suspended the tenant (cheap: the cached record)."""
        record = self.record(tenant)
        return record is not None and record.suspended

    def limits(self, tenant: str) -> Limits:
        """The tenant's quotas: its record's, else the settings'."""
        record = self.record(tenant)
        settings = self.settings
        if record is None:
            return Limits(settings.quota_max_rooms, settings.quota_max_participants)
        return Limits(
            record.max_rooms if record.max_rooms is not None else settings.quota_max_rooms,
            record.max_participants
            if record.max_participants is not None
            else settings.quota_max_participants,
        )

    def max_webhook_endpoints(self, tenant: str) -> int:
        """How many webhook endpoints the tenant may have."""
        record = self.record(tenant)
        if record is not None and record.max_webhook_endpoints is not None:
            return record.max_webhook_endpoints
        return self.settings.tenant_webhook_endpoints_max

    def agents_allowed(self, tenant: str | None) -> tuple[str, ...] | None:
        """The agent names the tenant may dispatch (None: any)."""
        record = self.record(tenant) if tenant is not None else None
        if record is not None and record.agents is not None:
            return record.agents
        return self.settings.agent_names_allowed

    # The operator's actions (the CLI and the admin API).

    def render(self, tenant: str, record: TenantRecord | None = None) -> dict:
        """A tenant as the CLI and the API show it: its overrides (null: the default), what
        applies, its status and reason, and its record's times (null: no record)."""
        record = record if record is not None else self.store.get(tenant)
        found = record or TenantRecord(tenant)
        limits = self.limits_of(found)
        return {
            "id": tenant,
            "status": found.status,
            "reason": found.reason,
            "max_rooms": found.max_rooms,
            "max_participants": found.max_participants,
            "max_webhook_endpoints": found.max_webhook_endpoints,
            "agents": list(found.agents) if found.agents is not None else None,
            "effective": limits,
            "created_at": format_time(found.created_at) if record else None,
            "updated_at": format_time(found.updated_at) if record else None,
        }

    def limits_of(self, record: TenantRecord) -> dict:
        """What applies to a record's tenant: each override, else the default."""
        settings = self.settings

        def either(value, default):
            return value if value is not None else default

        agents = either(record.agents, settings.agent_names_allowed)
        return {
            "max_rooms": either(record.max_rooms, settings.quota_max_rooms),
            "max_participants": either(record.max_participants, settings.quota_max_participants),
            "max_webhook_endpoints": either(
                record.max_webhook_endpoints, settings.tenant_webhook_endpoints_max
            ),
            "agents": list(agents) if agents is not None else None,
        }

    def list_all(self) -> list[dict]:
        """Every tenant with a record."""
        return [self.render(record.id, record) for record in self.store.all()]

    def show(self, tenant: str) -> dict:
        """One tenant (with or without a record)."""
        return self.render(tenant)

    def set_limits(self, tenant: str, limits: Mapping, actor: Actor) -> dict:
        """Set (None: remove) some of the tenant's limits; audited."""

        def act() -> TenantRecord:
            record = self.store.change(tenant, limits)
            self._forget(tenant)
            return record

        return self.render(tenant, self._audited(actor, tenant, "tenants.set", act, dict(limits)))

    def suspend(self, tenant: str, reason: str, actor: Actor) -> dict:
        """Suspend the tenant: its requests are refused from now on and its live rooms end at
        once (each told why first); audited with the rooms ended."""
        ended: list[str] = []

        def act() -> TenantRecord:
            record = self.store.change(tenant, {}, SUSPENDED, reason)
            self._forget(tenant)
            ended.extend(self.end_rooms(tenant))
            return record

        record = self._audited(actor, tenant, "tenants.suspend", act, {"reason": reason})
        rendered = self.render(tenant, record)
        rendered["rooms_ended"] = len(ended)
        return rendered

    def resume(self, tenant: str, actor: Actor) -> dict:
        """Resume a suspended tenant; audited."""

        def act() -> TenantRecord:
            record = self.store.change(tenant, {}, ACTIVE, "")
            self._forget(tenant)
            return record

        return self.render(tenant, self._audited(actor, tenant, "tenants.resume", act, {}))

    def end_rooms(self, tenant: str) -> list[str]:
        """End every live room of the tenant (DeleteRoom), each told why first (every notice
        sent, one NOTICE_SECONDS for all to arrive, then every room ended); the names."""
        if self.ownership is None or self.ownership.rooms is None:
            return []
        rooms = self.ownership.live_rooms(tenant)
        told = [
            self.ownership.tell(room.name, notice("tenant_suspended"), wait=False) for room in rooms
        ]
        if any(told):
            time.sleep(NOTICE_SECONDS)
        ended = []
        for room in rooms:
            try:
                self.ownership.rooms.delete_room(room.name)
            except LiveKitNotFound:
                continue
            ended.append(room.name)
            why = {"reason": "tenant_suspended"}
            self.ownership.told(tenant, "room.ended", room.name, why, f"{room.sid}:suspended")
        return ended

    def _audited(self, actor: Actor, tenant: str, action: str, act, detail: dict):
        """Run `act()` and keep its audit entry, with its outcome, whether it succeeded or not."""
        outcome = "ok"
        try:
            return act()
        except ApiError as exc:
            outcome = exc.error_code
            raise
        except Exception:
            outcome = "internal_error"
            raise
        finally:
            self.add_entry(actor, tenant, action, tenant, outcome, detail)

    # The audit trail.

    def add_entry(
        self,
        actor: Actor,
        tenant: str,
        action: str,
        target: str,
        outcome: str,
        detail: Mapping | None = None,
    ) -> None:
        """Keep one entry of the trail."""
        self.audit_store.add(
            AuditEntry(
                "au_" + secrets.token_hex(10),
                0,
                tenant,
                actor.kind,
                actor.subject,
                actor.identity,
                action,
                target,
                outcome,
                json.dumps(dict(detail or {}), ensure_ascii=False, separators=(",", ":")),
            )
        )

    def audit(self, tenant: str | None, limit: int = AUDIT_LISTED_MAX) -> list[dict]:
        """The newest entries of the tenant's trail (None: every tenant's), newest first."""
        return [
            {
                "id": entry.id,
                "at": format_time(entry.at),
                "tenant": entry.tenant,
                "actor": entry.actor,
                "subject": entry.subject,
                "identity": entry.identity,
                "action": entry.action,
                "target": entry.target,
                "outcome": entry.outcome,
                "detail": json.loads(entry.detail),
            }
            for entry in self.audit_store.entries(tenant, min(limit, AUDIT_LISTED_MAX))
        ]

    def close(self) -> None:
        """Close what the two stores opened."""
        self.store.close()
        self.audit_store.close()
