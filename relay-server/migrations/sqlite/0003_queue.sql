-- Queue and assignment. `queued_at`: when the conversation last entered the people's queue
-- (created on an agents-first site, handed off by the bot, or requeued); it waits while its
-- status is 'open' and the bot flag is clear, oldest `queued_at` first. Conversations already
-- waiting keep their place by their last change.
ALTER TABLE conversations ADD COLUMN queued_at INTEGER;
UPDATE conversations SET queued_at = updated_at WHERE status = 'open' AND bot = 0;
CREATE INDEX conversations_queue ON conversations (status, queued_at);
-- Round robin among equally loaded agents: the least recently assigned goes first. A counter,
-- not a time: the agent assigned last has the highest value (two assignments in one millisecond
-- still have an order).
ALTER TABLE agents ADD COLUMN assign_turn INTEGER NOT NULL DEFAULT 0;
-- One row per conversation taken from the queue: how long it waited. The visitor's estimate is
-- the average of the latest rows.
CREATE TABLE queue_waits (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    waited_ms       INTEGER NOT NULL,
    at              INTEGER NOT NULL
);
