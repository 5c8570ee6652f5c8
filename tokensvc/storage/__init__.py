"""The service's storage (`STORAGE_URL`: the embedded SQLite file or Redis): the ownership
record (holds), the usage and quota records, tenants' webhooks, tenants' records and the audit
trail. Each store has one contract
(`contracts.py`) and one module per backend (`sqlite/`, `redis/`); the openers pick the backend
from the URL. No Flask here.
"""

from .clock import StorageClock
from .contracts import (
    ACTIVE,
    DELIVERY_RETENTION_MS,
    EXTEND_SLACK_MS,
    LISTED_PER_TENANT,
    RETENTION_MS,
    SUSPENDED,
    TENANT_LIMITS,
    Attempt,
    AuditEntry,
    AuditStore,
    Backend,
    Delivery,
    Endpoint,
    EventFacts,
    Hold,
    HoldStore,
    MintCheck,
    NewDelivery,
    RoomRecord,
    SessionRecord,
    Stats,
    TenantRecord,
    TenantStore,
    UsageReport,
    UsageStore,
    WebhookStore,
)
from .observed import ObservedHolds
from .openers import open_audit, open_holds, open_tenants, open_usage, open_webhook_store
from .sqlite.base import sqlite_path

__all__ = [
    "ACTIVE",
    "SUSPENDED",
    "TENANT_LIMITS",
    "AuditEntry",
    "AuditStore",
    "TenantRecord",
    "TenantStore",
    "open_audit",
    "open_tenants",
    "DELIVERY_RETENTION_MS",
    "EXTEND_SLACK_MS",
    "LISTED_PER_TENANT",
    "RETENTION_MS",
    "Attempt",
    "Backend",
    "Delivery",
    "Endpoint",
    "EventFacts",
    "Hold",
    "HoldStore",
    "MintCheck",
    "NewDelivery",
    "ObservedHolds",
    "RoomRecord",
    "SessionRecord",
    "Stats",
    "StorageClock",
    "UsageReport",
    "UsageStore",
    "WebhookStore",
    "open_holds",
    "open_usage",
    "open_webhook_store",
    "sqlite_path",
]
