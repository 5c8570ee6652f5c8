CREATE TABLE IF NOT EXISTS holds (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until INTEGER NOT NULL,
    gone INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS holds_until ON holds (until);
CREATE INDEX IF NOT EXISTS holds_holder ON holds (holder);
CREATE TABLE IF NOT EXISTS removals (
    name TEXT NOT NULL,
    identity TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (name, identity)
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires INTEGER
);
