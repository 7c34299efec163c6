-- Issue #19: agents managed from the console, agents limited to some sites, and who did what.

-- `config`: the config file owns the agent (name, password, admin, sites, limit; the console
-- may only disable and enable them). `console`: created in the console (or the generated first
-- admin), whose admins own everything about them.
ALTER TABLE agents ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'config';
-- The site keys the agent serves, as a JSON array; NULL: every site.
ALTER TABLE agents ADD COLUMN sites TEXT;
-- Most conversations given to the agent automatically; NULL: the site's limit.
ALTER TABLE agents ADD COLUMN max_chats BIGINT;
-- Who disabled the agent: `config` (removed from the file: listing them again enables them) or
-- an admin's username (only an admin enables them again).
ALTER TABLE agents ADD COLUMN disabled_by TEXT;
UPDATE agents SET disabled_by = 'config' WHERE disabled;
-- The generated first admin belongs to the console: it can be reset and demoted there.
UPDATE agents SET managed_by = 'console' WHERE username = 'admin' AND admin;
