-- The visitor's data rights (issue #18): who erased or expired what, and when.
-- One row per erasure of a visitor (action `erase_visitor`, by an admin's username) and per
-- retention pass that deleted something (action `retention`, by `retention`). `subject` is the
-- visitor id or the site key; `detail` is JSON counts. It names ids, never the erased content.
CREATE TABLE audit_log (
    id      TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
-- The retention job looks for a site's closed conversations by age.
CREATE INDEX conversations_retention ON conversations (site, status, updated_at);
-- Erasing a visitor reads their gaps by conversation (already indexed: knowledge_gaps_once) and
-- their queue waits by conversation.
CREATE INDEX queue_waits_conversation ON queue_waits (conversation_id);
