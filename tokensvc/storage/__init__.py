"""The service's storage (`STORAGE_URL`: the embedded SQLite file or Redis): the ownership
record (holds), the usage and quota records, and tenants' webhooks. Each store has one contract
(`contracts.py`) and one module per backend (`sqlite/`, `redis/`); the openers pick the backend
from the URL. No Flask here.
"""

from .clock import StorageClock
from .contracts import (
    DELIVERY_RETENTION_MS,
    EXTEND_SLACK_MS,
    LISTED_PER_TENANT,
    RETENTION_MS,
    Attempt,
    Backend,
    Delivery,
    Endpoint,
    EventFacts,
    Hold,
    HoldStore,
    LiveLife,
    MintCheck,
    NewDelivery,
    ReconcileStore,
    RoomRecord,
    SessionRecord,
    Stats,
    UsageReport,
    UsageStore,
    WebhookStore,
)
from .observed import ObservedHolds
from .openers import open_holds, open_reconcile, open_usage, open_webhook_store
from .sqlite.base import sqlite_path

__all__ = [
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
    "LiveLife",
    "MintCheck",
    "NewDelivery",
    "ObservedHolds",
    "ReconcileStore",
    "RoomRecord",
    "SessionRecord",
    "Stats",
    "StorageClock",
    "UsageReport",
    "UsageStore",
    "WebhookStore",
    "open_holds",
    "open_reconcile",
    "open_usage",
    "open_webhook_store",
    "sqlite_path",
]
