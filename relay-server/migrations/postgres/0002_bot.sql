-- Bot-first routing: a conversation the knowledge-base bot still handles. Its stored status stays
-- 'open' (so the one-open-conversation index holds) and this flag is set; a hand-off or an
-- agent's take clears it. FALSE for every existing conversation: they were all with people.
ALTER TABLE conversations ADD COLUMN bot BOOLEAN NOT NULL DEFAULT FALSE;
