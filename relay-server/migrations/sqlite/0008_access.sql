-- Access that can be taken back (issue #19).

-- An agent removed from the config file is disabled, not deleted: their name stays on the
-- conversations they answered, but they cannot sign in and their sessions are gone.
ALTER TABLE agents ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Revoking an agent's sessions and purging expired ones must not scan the table.
CREATE INDEX sessions_by_agent ON sessions (agent_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- /readyz writes here: a node is ready only when it can commit, not merely read.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
);
