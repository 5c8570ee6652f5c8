CREATE TABLE IF NOT EXISTS usage_rooms (
    sid TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    seen_at INTEGER NOT NULL,
    lost INTEGER NOT NULL DEFAULT 0,
    lost_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_rooms_tenant ON usage_rooms (tenant, started_at);
CREATE INDEX IF NOT EXISTS usage_rooms_name ON usage_rooms (name);
CREATE TABLE IF NOT EXISTS usage_sessions (
    sid TEXT PRIMARY KEY,
    room_sid TEXT NOT NULL,
    identity TEXT NOT NULL,
    joined_at INTEGER,
    left_at INTEGER,
    seated INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS usage_sessions_room ON usage_sessions (room_sid);
CREATE TABLE IF NOT EXISTS quota_reservations (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE INDEX IF NOT EXISTS usage_rooms_live ON usage_rooms (tenant, name, finished_at);
