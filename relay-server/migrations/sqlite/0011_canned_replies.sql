-- Issue #21: canned replies. Shared ones (owner_id NULL) are written by admins for one site or
-- every site (site NULL); an agent's own are theirs alone. `shortcut` is what follows `/` in
-- the console's composer; one per owner and site.
CREATE TABLE canned_replies (
    id         TEXT PRIMARY KEY,
    site       TEXT,
    owner_id   TEXT REFERENCES agents(id),
    shortcut   TEXT NOT NULL,
    text       TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX canned_replies_shortcut
    ON canned_replies (COALESCE(owner_id, ''), COALESCE(site, ''), shortcut);
