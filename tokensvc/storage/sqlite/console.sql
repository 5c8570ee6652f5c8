CREATE TABLE IF NOT EXISTS console_tickets (
    id TEXT PRIMARY KEY,
    payload TEXT NOT NULL,
    expires INTEGER NOT NULL
);
