-- Parley schema v1 (SQLite). Times are Unix milliseconds; ids are UUIDv7 text.

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    -- argon2id PHC string; never the password itself.
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value: a leaked database does not yield live sessions.
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE visitors (
    id         TEXT PRIMARY KEY,
    site       TEXT NOT NULL,
    -- SHA-256 of the visitor token kept in the browser's localStorage.
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    visitor_id  TEXT NOT NULL REFERENCES visitors(id),
    status      TEXT NOT NULL CHECK (status IN ('open', 'assigned', 'closed')),
    assignee_id TEXT REFERENCES agents(id),
    -- Seq of the newest event; the next event gets last_seq + 1 in the same transaction.
    last_seq    INTEGER NOT NULL DEFAULT 0,
    preview     TEXT,
    context     TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX conversations_visitor ON conversations (visitor_id, created_at);
CREATE INDEX conversations_updated ON conversations (updated_at);

CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    author_role     TEXT NOT NULL,
    author_id       TEXT,
    author_name     TEXT,
    -- The client's idempotency key; a repeat from the same author is answered, not stored.
    client_id       TEXT,
    -- protocol::EventBody as JSON.
    body            TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX events_idempotency ON events (conversation_id, author_id, client_id)
    WHERE client_id IS NOT NULL;
