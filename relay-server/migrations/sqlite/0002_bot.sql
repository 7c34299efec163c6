-- Bot-first routing: a conversation the knowledge-base bot still handles. Its stored status stays
-- 'open' (so the one-open-conversation rules hold) and this flag is set; a hand-off or an agent's
-- take clears it. 0 for every existing conversation: they were all in the people's queue.
ALTER TABLE conversations ADD COLUMN bot INTEGER NOT NULL DEFAULT 0;
