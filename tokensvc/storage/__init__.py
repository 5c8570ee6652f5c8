"""The service's storage (`STORAGE_URL`: the embedded SQLite file or Redis): the ownership
record (holds), the usage and quota records, tenants' webhooks and the console's tickets. Each
store has one contract (`contracts.py`) and one module per backend (`sqlite/`, `redis/`); the
openers pick the backend from the URL. No Flask here.
"""

from .clock import StorageClock
from .contracts import (
    DELIVERY_RETENTION_MS,
    EXTEND_SLACK_MS,
    LISTED_PER_TENANT,
    RETENTION_MS,
    Backend,
    Claim,
    ConsoleTicketStore,
    Continuity,
    Delivery,
    Endpoint,
    EventFacts,
    Finished,
    Hold,
    HoldStore,
    MintCheck,
    NewDelivery,
    Outcome,
    RecordState,
    RoomRecord,
    SessionRecord,
    Stats,
    UsageReport,
    UsageStore,
    WebhookStore,
)
from .observed import ObservedHolds
from .openers import open_console_tickets, open_holds, open_usage, open_webhook_store
from .sqlite.base import sqlite_path

__all__ = [
    "DELIVERY_RETENTION_MS",
    "EXTEND_SLACK_MS",
    "LISTED_PER_TENANT",
    "RETENTION_MS",
    "Backend",
    "Continuity",
    "Claim",
    "ConsoleTicketStore",
    "Delivery",
    "Endpoint",
    "EventFacts",
    "Finished",
    "Hold",
    "HoldStore",
    "MintCheck",
    "NewDelivery",
    "Outcome",
    "ObservedHolds",
    "RecordState",
    "RoomRecord",
    "SessionRecord",
    "Stats",
    "StorageClock",
    "UsageReport",
    "UsageStore",
    "WebhookStore",
    "open_console_tickets",
    "open_holds",
    "open_usage",
    "open_webhook_store",
    "sqlite_path",
]
