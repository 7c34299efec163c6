-- Issue #19: access that can be taken back, readiness that needs a commit, bounded lists.

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

-- The agent's `welcome` lists open conversations and the latest closed ones; older closed ones
-- are paged (`GET /api/conversations`) by (updated_at, id).
CREATE INDEX conversations_status_updated ON conversations (status, updated_at, id);

-- Retention deletes a site's visitors left without conversations, oldest first.
CREATE INDEX visitors_site_created ON visitors (site, created_at);
