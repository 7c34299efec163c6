-- Offline messages, admin agents and per-site routing settings (issue #3, bot-first routing).

-- May use the console's admin pages. The agent `admin` is the one the relay creates on a first
-- start, so existing deployments keep someone who can reach them.
ALTER TABLE agents ADD COLUMN admin BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE agents SET admin = TRUE WHERE username = 'admin';

-- Set when the visitor left a message while nobody was available: agents' replies are emailed
-- to this address. NULL for every existing conversation.
ALTER TABLE conversations ADD COLUMN offline_email TEXT;

-- Settings saved from the admin page; a row replaces the config file's values for its site.
CREATE TABLE site_settings (
    site                TEXT PRIMARY KEY,
    routing             TEXT NOT NULL CHECK (routing IN ('bot_first', 'agents_first')),
    -- Business hours as JSON ({"tz": "Asia/Seoul", "mon": "09:00-18:00", ...}); NULL: always open.
    hours               TEXT,
    -- Conversations one agent may hold at once; NULL: no limit.
    max_chats_per_agent BIGINT CHECK (max_chats_per_agent > 0),
    updated_at          BIGINT NOT NULL,
    -- Username of the admin who saved it.
    updated_by          TEXT NOT NULL
);
