-- Parley schema v1 (PostgreSQL). Same tables as the SQLite schema; times are Unix milliseconds
-- (BIGINT), ids are UUIDv7 text. Several relay nodes may share this database: the constraints
-- below, not the relay, are what keep concurrent nodes from breaking the invariants.

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    -- argon2id PHC string; never the password itself.
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    -- SHA-256 of the cookie value: a leaked database does not yield live sessions.
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE visitors (
    id         TEXT PRIMARY KEY,
    site       TEXT NOT NULL,
    -- SHA-256 of the visitor token kept in the browser's localStorage.
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    visitor_id  TEXT NOT NULL REFERENCES visitors(id),
    status      TEXT NOT NULL CHECK (status IN ('open', 'assigned', 'closed')),
    assignee_id TEXT REFERENCES agents(id),
    -- Seq of the newest event; the next event gets last_seq + 1 in the same transaction, under
    -- this row's lock (appends to one conversation from several nodes serialise here).
    last_seq    BIGINT NOT NULL DEFAULT 0,
    preview     TEXT,
    -- protocol::PageContext. JSONB: small, written rarely (hello / page change), and operators
    -- can query it (`context->>'url'`) without the relay.
    context     JSONB NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX conversations_visitor ON conversations (visitor_id, created_at);
CREATE INDEX conversations_updated ON conversations (updated_at);
-- At most one conversation per visitor that is not closed: two nodes opening one for the same
-- visitor at once cannot both succeed (open_conversation uses ON CONFLICT on this index).
CREATE UNIQUE INDEX conversations_one_open ON conversations (visitor_id) WHERE status <> 'closed';

CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    seq             BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    author_role     TEXT NOT NULL,
    author_id       TEXT,
    author_name     TEXT,
    -- The client's idempotency key; a repeat from the same author is answered, not stored.
    client_id       TEXT,
    -- protocol::EventBody as JSON TEXT, not JSONB: it is written on every message (the hot
    -- path), never queried inside, and kept byte-for-byte as the relay serialised it (the same
    -- as in SQLite).
    body            TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
-- COALESCE: an author without id (system) still gets one key per client id (NULLs would be
-- distinct in a plain unique index), without needing PostgreSQL 15's NULLS NOT DISTINCT.
CREATE UNIQUE INDEX events_idempotency ON events (conversation_id, COALESCE(author_id, ''), client_id)
    WHERE client_id IS NOT NULL;
