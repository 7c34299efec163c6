-- CSAT: the visitor's rating of a closed conversation (1–5, optional comment), at most one per
-- conversation. Kept on the conversation row: it is listed with it, and "per agent" is the
-- assignee the conversation had when it was closed. NULL for every existing conversation.
ALTER TABLE conversations ADD COLUMN rating INTEGER CHECK (rating BETWEEN 1 AND 5);
ALTER TABLE conversations ADD COLUMN rating_comment TEXT;
ALTER TABLE conversations ADD COLUMN rated_at INTEGER;
-- The per-agent numbers read only rated conversations.
CREATE INDEX conversations_rated ON conversations (assignee_id) WHERE rating IS NOT NULL;
