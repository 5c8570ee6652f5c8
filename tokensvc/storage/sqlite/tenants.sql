CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    max_rooms INTEGER,
    max_participants INTEGER,
    max_webhook_endpoints INTEGER,
    agents TEXT,
    status TEXT NOT NULL DEFAULT 'active',
    reason TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
