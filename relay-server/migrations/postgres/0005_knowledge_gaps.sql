-- Knowledge gaps: what the bot could not answer, so a site manager sees what to add. One row per
-- visitor message and kind: `unanswered` (the bot was not sure; `question` is the visitor's text)
-- or `handoff_after_answer` (the bot showed entry `entry_id`, then the visitor handed off;
-- `question` is what the entry was shown for). Grouping by similarity happens on read.
CREATE TABLE knowledge_gaps (
    id              TEXT PRIMARY KEY,
    site            TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    -- Seq of the visitor message that produced the row: a repeated bot turn records nothing new.
    seq             BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('unanswered', 'handoff_after_answer')),
    question        TEXT NOT NULL,
    entry_id        TEXT,
    entry_title     TEXT,
    -- The visitor's page when it happened (the conversation's context URL), if known.
    page_url        TEXT,
    at              BIGINT NOT NULL
);
CREATE UNIQUE INDEX knowledge_gaps_once ON knowledge_gaps (conversation_id, seq, kind);
CREATE INDEX knowledge_gaps_at ON knowledge_gaps (at);
