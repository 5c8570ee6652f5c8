CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT NOT NULL DEFAULT '',
    previous_until INTEGER NOT NULL DEFAULT 0,
    disabled_at INTEGER,
    disabled_reason TEXT NOT NULL DEFAULT '',
    failing_since INTEGER,
    failures INTEGER NOT NULL DEFAULT 0,
    probe_at INTEGER NOT NULL DEFAULT 0,
    served_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_tenant ON webhook_endpoints (tenant);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    deadline INTEGER NOT NULL,
    lease_until INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_tenant ON webhook_deliveries (tenant, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_queue ON webhook_deliveries
    (endpoint_id, status, next_attempt_at, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_lease ON webhook_deliveries (lease_until);
CREATE TABLE IF NOT EXISTS webhook_outcomes (
    outcome TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_tenants (
    tenant TEXT PRIMARY KEY,
    served_at INTEGER NOT NULL
);
