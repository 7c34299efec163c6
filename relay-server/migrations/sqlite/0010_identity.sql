-- Issue #25: signed visitor identity and history that follows the person across browsers.

-- The site's user id a visitor proved with a token signed by the site (NULL: anonymous), and
-- what the last such token said about them. One visitor per user id and site: every browser
-- that proves the same user id is that visitor.
ALTER TABLE visitors ADD COLUMN user_id TEXT;
ALTER TABLE visitors ADD COLUMN name TEXT;
ALTER TABLE visitors ADD COLUMN email TEXT;
-- The token's `attributes`, as a JSON object.
ALTER TABLE visitors ADD COLUMN attributes TEXT;
-- When an identity was last verified (Unix ms).
ALTER TABLE visitors ADD COLUMN verified_at INTEGER;
CREATE UNIQUE INDEX visitors_user ON visitors (site, user_id) WHERE user_id IS NOT NULL;

-- One row per browser's visitor token (SHA-256 of it): an identified visitor has one per
-- browser they used. `visitors.token_hash` stays as it was written (the first browser's, or a
-- placeholder for a visitor created by an identity) and is no longer read.
CREATE TABLE visitor_tokens (
    token_hash   TEXT PRIMARY KEY,
    visitor_id   TEXT NOT NULL REFERENCES visitors(id),
    site         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    -- Last `hello` with it (Unix ms): an anonymous token unused too long stops working.
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX visitor_tokens_visitor ON visitor_tokens (visitor_id);
INSERT INTO visitor_tokens (token_hash, visitor_id, site, created_at, last_seen_at)
    SELECT token_hash, id, site, created_at, created_at FROM visitors;
