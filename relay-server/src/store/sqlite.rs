//! The SQLite store: the default, embedded, zero-setup engine.
//!
//! Two connections write, one at a time: the writer thread's ([`writer`]), which stores plain
//! messages, and sqlx's pool of exactly one connection, for everything else. They take turns
//! through one lock ([`writes`]) and every write transaction begins `IMMEDIATE`, so the relay
//! itself serialises writes: no `SQLITE_BUSY` retries, and "read `last_seq`, write
//! `last_seq + 1`" inside a transaction is safe without row locks. Reads use a separate pool
//! (WAL lets them run beside the writer). Appends arriving together share one transaction
//! (group commit, [`writer`] and [`commit`]): each is still answered only after the commit that
//! stored it. WAL checkpoints run on a connection of their own ([`checkpoint`]), never inside a
//! commit.
//! `synchronous = NORMAL` in WAL mode: a committed transaction survives a crash of the relay
//! (kill -9); surviving power loss as well needs `synchronous = FULL` (`?synchronous=full`... see
//! [`SqliteStore::connect`]).

mod agents;
mod checkpoint;
mod commit;
mod identity;
mod rights;
mod writer;
mod writes;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use protocol::{Author, ClientId, ConversationId, Event, EventBody, PageContext, Seq};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use std::collections::HashMap;

use protocol::AgentInfo;

use super::{
    auto_join, check_rateable, choose, is_bot, new_id, now_ms, parse_role, parse_status,
    preview_of, role_str, status_str, AgentRating, AgentRecord, Appended, Capacity,
    ConversationRecord, Effect, Gap, GapKind, NewEvent, QueueState, SiteSettingsRecord, Store,
    StoreError, StoreResult, VisitorRecord, AGENT_COLUMNS, ASSIGN_SCAN, WAIT_SAMPLES,
};

/// SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    /// sqlx's writer connection, taken in turns with the writer thread's (see [`writes`]).
    write: writes::Writes,
    /// Readers.
    read: SqlitePool,
    /// Appends go through it, so those arriving together share one transaction (group commit,
    /// see [`commit`]): plain ones on the writer thread's connection ([`writer`]), the others
    /// on `write`.
    committer: super::appends::Appends,
    /// Checkpoints the WAL on a connection of its own, at most every
    /// [`checkpoint::EVERY`] while the committer commits, so no commit does it (see
    /// [`checkpoint`]); stops when the last clone of the store is dropped.
    _checkpointer: Arc<checkpoint::Checkpointer>,
    /// The WAL's figures, kept by the committer and the checkpointer ([`Store::wal`]).
    wal: crate::metrics::Wal,
}

const CONVERSATION_COLUMNS: &str =
    "id, site, visitor_id, status, bot, assignee_id, last_seq, preview, context, created_at, updated_at, rating, queued_at, offline_email, labels";

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH`) and migrates it.
    /// Add `?synchronous=full` to the URL to survive power loss, not only crashes, at some cost
    /// in write latency.
    ///
    /// `?wal_limit_mib=N` sets how large the WAL may grow under writes that never pause before
    /// a checkpoint rewinds it (default [`checkpoint::DEFAULT_WAL_LIMIT_MIB`]; see [`checkpoint`]).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let (clean, query) = url.split_once('?').unwrap_or((url, ""));
        let mut full_sync = false;
        let mut wal_limit_mib = checkpoint::DEFAULT_WAL_LIMIT_MIB;
        for (key, value) in query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        {
            match (key, value) {
                ("synchronous", "full") => full_sync = true,
                ("synchronous", "normal") => full_sync = false,
                ("wal_limit_mib", n) => {
                    wal_limit_mib = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        StoreError::Database(sqlx::Error::Configuration(
                            format!("wal_limit_mib must be a positive number of MiB, not {n:?}")
                                .into(),
                        ))
                    })?
                }
                _ => {
                    return Err(StoreError::Database(sqlx::Error::Configuration(
                        format!(
                            "unknown SQLite URL option {key}={value} (known: synchronous=full|normal, wal_limit_mib=N)"
                        )
                        .into(),
                    )))
                }
            }
        }
        if let Some(path) = clean.strip_prefix("sqlite://") {
            if let Some(dir) = std::path::Path::new(path).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                }
            }
        }
        let options = SqliteConnectOptions::from_str(clean)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            // Statement journals and the ephemeral tables of `UPDATE … FROM (VALUES …)` in
            // memory: with SQLite's default each group commit opened, wrote and deleted a
            // temporary file (measured: ~6 % of the writer thread in `open` and `pwrite`).
            .pragma("temp_store", "memory")
            // Freed cells and pages are zeroed, so an erased visitor's words do not stay in the
            // file's free space (see [`rights`]). The writer thread sets it too.
            .pragma("secure_delete", "on")
            .busy_timeout(Duration::from_secs(10));
        // sqlx's writer: sessions, assignments, settings and the appends the writer thread hands
        // on. Its statements are few and fixed, and it does not see the appends' hot pages, so
        // it keeps SQLite's default page and statement caches (the writer thread has the large
        // ones, see [`writer::open`]).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            // No check before each acquire: sqlx would ping the connection's worker thread, a
            // round trip per transaction that cannot fail for an in-process database (every
            // statement reports a broken connection anyway). Same for the readers.
            .test_before_acquire(false)
            .connect_with(
                options
                    .clone()
                    // Checkpoints run beside it, not inside its commits (see [`checkpoint`]).
                    .pragma("wal_autocheckpoint", "0"),
            )
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone().read_only(true))
            .await?;
        let signals = Arc::new(checkpoint::Signals::default());
        let wal = crate::metrics::Wal::default();
        let writer = writer::open(options.get_filename(), full_sync)
            .map_err(|e| StoreError::Database(sqlx::Error::Configuration(e.into())))?;
        let turn = writes::Turn::default();
        let write = writes::Writes::new(write, turn.clone());
        let committer = commit::start(write.clone(), writer, turn, signals.clone(), wal.clone())
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let checkpointer = Arc::new(
            checkpoint::Checkpointer::start(&options, wal_limit_mib, signals, wal.clone()).await?,
        );
        Ok(Self {
            write,
            read,
            committer,
            _checkpointer: checkpointer,
            wal,
        })
    }

    /// Closes both pools, checkpointing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// A conversation row ([`CONVERSATION_COLUMNS`]) read through sqlx. The writer thread reads the
/// same columns through rusqlite (`writer::conversation_from`): change the two together.
fn conversation_from_row(row: &SqliteRow) -> StoreResult<ConversationRecord> {
    let context: String = row.try_get("context")?;
    Ok(ConversationRecord {
        id: ConversationId(row.try_get("id")?),
        site: row.try_get("site")?,
        visitor_id: row.try_get("visitor_id")?,
        status: parse_status(row.try_get::<&str, _>("status")?, row.try_get("bot")?)?,
        assignee_id: row.try_get("assignee_id")?,
        last_seq: row.try_get::<i64, _>("last_seq")? as Seq,
        preview: row.try_get("preview")?,
        context: serde_json::from_str(&context).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        rating: row
            .try_get::<Option<i64>, _>("rating")?
            .map(|r| u8::try_from(r).map_err(|_| StoreError::Corrupt(format!("rating {r}"))))
            .transpose()?,
        queued_at: row.try_get("queued_at")?,
        offline_email: row.try_get("offline_email")?,
        labels: super::labels_from_db(row.try_get("labels")?)?,
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
    let body: String = row.try_get("body")?;
    Ok(Event {
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        seq: row.try_get::<i64, _>("seq")? as Seq,
        at: row.try_get("at")?,
        author: Author {
            role: parse_role(row.try_get::<&str, _>("author_role")?)?,
            id: row.try_get("author_id")?,
            name: row.try_get("author_name")?,
        },
        body: serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn agent_from_row(row: &SqliteRow) -> StoreResult<AgentRecord> {
    Ok(AgentRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        password_hash: row.try_get("password_hash")?,
        admin: row.try_get("admin")?,
        disabled: row.try_get("disabled")?,
        managed_by: super::Managed::parse(row.try_get("managed_by")?)?,
        sites: super::sites_from_db(row.try_get("sites")?)?,
        max_chats: super::max_chats_from_db(row.try_get("max_chats")?)?,
        disabled_by: row.try_get("disabled_by")?,
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

#[async_trait]
impl Store for SqliteStore {
    async fn close(&self) {
        // The inherent method (both pools, WAL checkpoint).
        SqliteStore::close(self).await
    }

    async fn ping(&self) -> StoreResult<()> {
        // A commit, through the writers' turn: a locked database, a read-only or full disk fail
        // here as they would fail the next append.
        sqlx::query(
            "INSERT INTO health (id, checked_at) VALUES (1, ?)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(now_ms())
        .execute(&mut *self.write.acquire().await?)
        .await?;
        Ok(())
    }

    fn wal(&self) -> Option<crate::metrics::Wal> {
        Some(self.wal.clone())
    }

    fn group_commit(&self) -> crate::metrics::GroupCommit {
        self.committer.group_commit()
    }

    async fn agent_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM agents")
            .fetch_one(&self.read)
            .await?)
    }

    async fn upsert_agent(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
    ) -> StoreResult<AgentRecord> {
        // The file owns a listed agent; one it had removed (and so disabled) is enabled again,
        // one an admin disabled stays disabled.
        let row = sqlx::query(&format!(
            "INSERT INTO agents (id, username, display_name, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name,
                 password_hash = excluded.password_hash, managed_by = 'config',
                 disabled = CASE WHEN agents.disabled_by IS NULL OR agents.disabled_by = 'config'
                     THEN 0 ELSE agents.disabled END,
                 disabled_by = CASE WHEN agents.disabled_by = 'config'
                     THEN NULL ELSE agents.disabled_by END
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(new_id())
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(now_ms())
        .fetch_one(&mut *self.write.acquire().await?)
        .await?;
        agent_from_row(&row)
    }

    async fn agent_by_username(&self, username: &str) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE username = ?"
        ))
        .bind(username)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    async fn agent_by_id(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(agent_from_row)
            .transpose()
    }

    async fn create_session(
        &self,
        token_hash: &str,
        agent_id: &str,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query("INSERT INTO sessions (token_hash, agent_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(agent_id)
            .bind(now_ms())
            .bind(expires_at)
            .execute(&mut *self.write.acquire().await?)
            .await?;
        Ok(())
    }

    async fn session_agent(&self, token_hash: &str, now: i64) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE disabled = 0 AND id =
                 (SELECT agent_id FROM sessions WHERE token_hash = ? AND expires_at > ?)"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *self.write.acquire().await?)
            .await?;
        Ok(())
    }

    async fn delete_agent_sessions(&self, agent_id: &str) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE agent_id = ?")
            .bind(agent_id)
            .execute(&mut *self.write.acquire().await?)
            .await?
            .rows_affected())
    }

    async fn purge_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *self.write.acquire().await?)
            .await?
            .rows_affected())
    }

    async fn agents(&self) -> StoreResult<Vec<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY username"
        ))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(agent_from_row)
        .collect()
    }

    async fn set_agent_disabled(&self, agent_id: &str, disabled: bool) -> StoreResult<()> {
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE agents SET disabled = ?, disabled_by = ? WHERE id = ?")
            .bind(disabled)
            .bind(disabled.then_some(super::DISABLED_BY_CONFIG))
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE agent_id = ?")
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_agent(
        &self,
        new: &super::NewAgent,
        audit: &super::AgentAudit,
    ) -> StoreResult<AgentRecord> {
        self.create_agent_impl(new, audit).await
    }

    async fn update_agent(
        &self,
        agent_id: &str,
        change: &super::AgentChange,
        audit: Option<&super::AgentAudit>,
    ) -> StoreResult<(AgentRecord, bool)> {
        self.update_agent_impl(agent_id, change, audit).await
    }

    async fn create_visitor(&self, site: &str, token_hash: &str) -> StoreResult<VisitorRecord> {
        self.create_visitor_impl(site, token_hash).await
    }

    async fn visitor_by_token(
        &self,
        site: &str,
        token_hash: &str,
    ) -> StoreResult<Option<VisitorRecord>> {
        self.visitor_by_token_impl(site, token_hash).await
    }

    async fn touch_visitor_token(&self, token_hash: &str) -> StoreResult<()> {
        self.touch_visitor_token_impl(token_hash).await
    }

    async fn identify_visitor(
        &self,
        site: &str,
        visitor_id: Option<&str>,
        token_hash: &str,
        identity: &crate::identity::Verified,
    ) -> StoreResult<(VisitorRecord, super::Identified)> {
        self.identify_visitor_impl(site, visitor_id, token_hash, identity)
            .await
    }

    async fn visitor_profile(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<super::VisitorProfile>> {
        self.visitor_profile_impl(visitor_id).await
    }

    async fn latest_conversation(
        &self,
        visitor_id: &str,
    ) -> StoreResult<Option<ConversationRecord>> {
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = ?
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(visitor_id)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    async fn open_conversation_as(
        &self,
        site: &str,
        visitor_id: &str,
        context: &PageContext,
        bot: bool,
        waiting: bool,
    ) -> StoreResult<(ConversationRecord, bool)> {
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        let existing = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = ? AND status != 'closed'
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(visitor_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            tx.commit().await?;
            return Ok((conversation_from_row(&row)?, false));
        }
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO conversations (id, site, visitor_id, status, bot, context, created_at, updated_at, queued_at)
             VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?) RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(new_id())
        .bind(site)
        .bind(visitor_id)
        .bind(bot)
        .bind(json(context))
        .bind(now)
        .bind(now)
        // Without the bot it waits for a person from the start (one a greeting opened: once
        // the visitor writes).
        .bind((!bot && waiting).then_some(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((conversation_from_row(&row)?, true))
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>> {
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?"
        ))
        .bind(&id.0)
        .fetch_optional(&self.read)
        .await?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    async fn open_conversations(
        &self,
        sites: Option<&[String]>,
        limit: i64,
    ) -> StoreResult<Vec<ConversationRecord>> {
        let sites = sites.map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE status != 'closed'
                 AND (?1 IS NULL OR site IN (SELECT value FROM json_each(?1)))
             ORDER BY updated_at DESC, id DESC LIMIT ?2"
        ))
        .bind(sites)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(conversation_from_row)
        .collect()
    }

    async fn closed_conversations(
        &self,
        sites: Option<&[String]>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<ConversationRecord>> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let sites = sites.map(|s| serde_json::to_string(s).unwrap_or_else(|_| "[]".into()));
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE status = 'closed' AND (updated_at < ?1 OR (updated_at = ?1 AND id < ?2))
                 AND (?3 IS NULL OR site IN (SELECT value FROM json_each(?3)))
             ORDER BY updated_at DESC, id DESC LIMIT ?4"
        ))
        .bind(at)
        .bind(id)
        .bind(sites)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(conversation_from_row)
        .collect()
    }

    async fn update_context(
        &self,
        id: &ConversationId,
        context: &PageContext,
    ) -> StoreResult<ConversationRecord> {
        let row = sqlx::query(&format!(
            "UPDATE conversations SET context = ?, updated_at = ? WHERE id = ? RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(json(context))
        .bind(now_ms())
        .bind(&id.0)
        .fetch_optional(&mut *self.write.acquire().await?)
        .await?;
        row.as_ref()
            .map(conversation_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn append(&self, id: &ConversationId, new: NewEvent) -> StoreResult<Appended> {
        self.committer.append(id, new).await
    }

    async fn assign_next(
        &self,
        online: &[AgentInfo],
        capacity: &Capacity,
    ) -> StoreResult<Option<Appended>> {
        if online.is_empty() {
            return Ok(None);
        }
        // `IMMEDIATE` in the writers' turn: nothing else writes between this read and the
        // append below.
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        let waiting: Vec<(ConversationId, String)> = sqlx::query(
            "SELECT id, site FROM conversations WHERE status = 'open' AND bot = 0
                 AND queued_at IS NOT NULL
             ORDER BY queued_at, id LIMIT ?",
        )
        .bind(ASSIGN_SCAN)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((ConversationId(r.try_get("id")?), r.try_get("site")?)))
        .collect::<StoreResult<_>>()?;
        if waiting.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let loads = loads(&mut *tx).await?;
        let turns: HashMap<String, i64> = sqlx::query("SELECT id, assign_turn FROM agents")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("assign_turn")?)))
            .collect::<StoreResult<_>>()?;
        let Some((conversation, agent)) = choose(&waiting, online, &loads, &turns, capacity) else {
            tx.rollback().await?;
            return Ok(None);
        };
        let appended = append_in(&mut tx, &conversation, auto_join(agent)).await?;
        tx.commit().await?;
        Ok(Some(appended))
    }

    async fn queue_state(&self) -> StoreResult<QueueState> {
        let waiting = sqlx::query_scalar::<_, String>(
            "SELECT id FROM conversations WHERE status = 'open' AND bot = 0 AND queued_at IS NOT NULL
             ORDER BY queued_at, id",
        )
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(ConversationId)
        .collect();
        let loads = loads(&self.read).await?;
        let avg: Option<f64> = sqlx::query_scalar(
            "SELECT AVG(waited_ms) FROM (SELECT waited_ms FROM queue_waits ORDER BY id DESC LIMIT ?)",
        )
        .bind(WAIT_SAMPLES)
        .fetch_one(&self.read)
        .await?;
        Ok(QueueState {
            waiting,
            loads,
            avg_wait_ms: avg.map(|a| a.round() as i64),
        })
    }

    async fn assigned_to(&self, agent_id: &str) -> StoreResult<Vec<ConversationId>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM conversations WHERE status = 'assigned' AND assignee_id = ?
             ORDER BY created_at, id",
        )
        .bind(agent_id)
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(ConversationId)
        .collect())
    }

    async fn events_after(
        &self,
        id: &ConversationId,
        after: Seq,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        sqlx::query(
            "SELECT conversation_id, seq, at, author_role, author_id, author_name, body FROM events
             WHERE conversation_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(&id.0)
        .bind(after as i64)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn events_after_each(
        &self,
        after: &[(ConversationId, Seq)],
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        if after.is_empty() {
            return Ok(Vec::new());
        }
        // One parameter whatever the count (a JSON array of `[id, after]` pairs), so the text,
        // and the prepared statement, are always the same.
        let pairs: Vec<(&str, i64)> = after
            .iter()
            .map(|(id, seq)| (id.0.as_str(), i64::try_from(*seq).unwrap_or(i64::MAX)))
            .collect();
        sqlx::query(
            "SELECT conversation_id, seq, at, author_role, author_id, author_name, body FROM (
                 SELECT e.conversation_id, e.seq, e.at, e.author_role, e.author_id,
                     e.author_name, e.body,
                     row_number() OVER (PARTITION BY e.conversation_id ORDER BY e.seq) AS n
                 FROM json_each(?) AS c
                 JOIN events e ON e.conversation_id = json_extract(c.value, '$[0]')
                     AND e.seq > json_extract(c.value, '$[1]')
             ) WHERE n <= ? ORDER BY conversation_id, seq",
        )
        .bind(json(&pairs))
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(event_from_row)
        .collect()
    }

    async fn rate(
        &self,
        id: &ConversationId,
        visitor_id: &str,
        author: Author,
        score: u8,
        comment: Option<String>,
    ) -> StoreResult<Appended> {
        // `IMMEDIATE` in the writers' turn: nothing can close, rate or append between this read
        // and the update.
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?"
        ))
        .bind(&id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        check_rateable(&conversation_from_row(&row)?, visitor_id)?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE conversations SET last_seq = last_seq + 1, rating = ?, rating_comment = ?,
                 rated_at = ?, updated_at = ? WHERE id = ? RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(i64::from(score))
        .bind(&comment)
        .bind(now)
        .bind(now)
        .bind(&id.0)
        .fetch_one(&mut *tx)
        .await?;
        let conversation = conversation_from_row(&row)?;
        let event = Event {
            conversation_id: id.clone(),
            seq: conversation.last_seq,
            at: now,
            author,
            body: EventBody::Rating { score, comment },
        };
        insert_event(&mut tx, &event, None).await?;
        tx.commit().await?;
        Ok(Appended {
            event,
            conversation,
            duplicate: false,
        })
    }

    async fn agent_ratings(&self) -> StoreResult<Vec<AgentRating>> {
        sqlx::query(
            "SELECT assignee_id, COUNT(*) AS n, AVG(rating) AS mean FROM conversations
             WHERE rating IS NOT NULL GROUP BY assignee_id ORDER BY n DESC, assignee_id",
        )
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok(AgentRating {
                agent_id: row.try_get("assignee_id")?,
                count: row.try_get("n")?,
                average: row.try_get("mean")?,
            })
        })
        .collect()
    }

    async fn set_agent_admin(&self, username: &str, admin: bool) -> StoreResult<()> {
        sqlx::query("UPDATE agents SET admin = ? WHERE username = ?")
            .bind(admin)
            .bind(username)
            .execute(&mut *self.write.acquire().await?)
            .await?;
        Ok(())
    }

    async fn mark_offline(
        &self,
        id: &ConversationId,
        email: &str,
    ) -> StoreResult<ConversationRecord> {
        let row = sqlx::query(&format!(
            "UPDATE conversations SET offline_email = ?, bot = 0, updated_at = ?
             WHERE id = ? AND status != 'closed' RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(email)
        .bind(now_ms())
        .bind(&id.0)
        .fetch_optional(&mut *self.write.acquire().await?)
        .await?;
        match row {
            Some(row) => conversation_from_row(&row),
            None => match self.conversation(id).await? {
                Some(_) => Err(StoreError::Closed),
                None => Err(StoreError::NotFound),
            },
        }
    }

    async fn set_labels(
        &self,
        conversation_id: &ConversationId,
        labels: &[String],
    ) -> StoreResult<Option<ConversationRecord>> {
        let text = (!labels.is_empty())
            .then(|| serde_json::to_string(labels))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
        let changed = sqlx::query("UPDATE conversations SET labels = ? WHERE id = ?")
            .bind(&text)
            .bind(&conversation_id.0)
            .execute(&mut *self.write.acquire().await?)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        self.conversation(conversation_id).await
    }

    async fn canned_replies(&self) -> StoreResult<Vec<super::CannedReply>> {
        let rows = sqlx::query(
            "SELECT id, site, owner_id, shortcut, text, updated_by, updated_at FROM canned_replies
             ORDER BY shortcut, id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(super::CannedReply {
                    id: r.try_get("id")?,
                    site: r.try_get("site")?,
                    owner_id: r.try_get("owner_id")?,
                    shortcut: r.try_get("shortcut")?,
                    text: r.try_get("text")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn save_canned(&self, reply: &super::CannedReply) -> StoreResult<()> {
        let done = sqlx::query(
            "INSERT INTO canned_replies (id, site, owner_id, shortcut, text, updated_by, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET site = excluded.site, owner_id = excluded.owner_id,
                 shortcut = excluded.shortcut, text = excluded.text,
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(&reply.id)
        .bind(&reply.site)
        .bind(&reply.owner_id)
        .bind(&reply.shortcut)
        .bind(&reply.text)
        .bind(&reply.updated_by)
        .bind(reply.updated_at)
        .execute(&mut *self.write.acquire().await?)
        .await;
        match done {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::ShortcutTaken)
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn delete_canned(&self, id: &str) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM canned_replies WHERE id = ?")
            .bind(id)
            .execute(&mut *self.write.acquire().await?)
            .await?
            .rows_affected()
            > 0)
    }

    async fn site_settings(&self) -> StoreResult<Vec<SiteSettingsRecord>> {
        sqlx::query(
            "SELECT site, routing, hours, max_chats_per_agent, updated_at, updated_by
             FROM site_settings ORDER BY site",
        )
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|row| {
            Ok(SiteSettingsRecord {
                site: row.try_get("site")?,
                routing: row.try_get("routing")?,
                hours: row.try_get("hours")?,
                max_chats_per_agent: row.try_get("max_chats_per_agent")?,
                updated_at: row.try_get("updated_at")?,
                updated_by: row.try_get("updated_by")?,
            })
        })
        .collect()
    }

    async fn put_site_settings(&self, s: &SiteSettingsRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO site_settings (site, routing, hours, max_chats_per_agent, updated_at, updated_by)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (site) DO UPDATE SET routing = excluded.routing, hours = excluded.hours,
                 max_chats_per_agent = excluded.max_chats_per_agent,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&s.site)
        .bind(&s.routing)
        .bind(&s.hours)
        .bind(s.max_chats_per_agent)
        .bind(s.updated_at)
        .bind(&s.updated_by)
        .execute(&mut *self.write.acquire().await?)
        .await?;
        Ok(())
    }

    async fn visitor_data(&self, visitor_id: &str) -> StoreResult<Option<super::VisitorData>> {
        self.visitor_data_impl(visitor_id).await
    }

    async fn erase_visitor(
        &self,
        visitor_id: &str,
        actor: &str,
    ) -> StoreResult<Option<super::Erased>> {
        self.erase_visitor_impl(visitor_id, actor).await
    }

    async fn expire_idle_visitors(
        &self,
        site: &str,
        created_before: i64,
        limit: i64,
    ) -> StoreResult<u64> {
        // The same visitors for both statements: the transaction holds the write lock, and the
        // order is total.
        const IDLE: &str = "SELECT v.id FROM visitors v WHERE v.site = ?1 AND v.created_at < ?2
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id)
             ORDER BY v.created_at, v.id LIMIT ?3";
        let mut held = self.write.acquire().await?;
        let mut tx = sqlx::Connection::begin_with(&mut *held, "BEGIN IMMEDIATE").await?;
        sqlx::query(&format!(
            "DELETE FROM visitor_tokens WHERE visitor_id IN ({IDLE})"
        ))
        .bind(site)
        .bind(created_before)
        .bind(limit)
        .execute(&mut *tx)
        .await?;
        let gone = sqlx::query(&format!("DELETE FROM visitors WHERE id IN ({IDLE})"))
            .bind(site)
            .bind(created_before)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    async fn expire_closed(
        &self,
        site: &str,
        closed_before: i64,
        limit: i64,
    ) -> StoreResult<super::Erased> {
        self.expire_closed_impl(site, closed_before, limit).await
    }

    async fn audit_log(&self, limit: i64) -> StoreResult<Vec<super::AuditRecord>> {
        self.audit_log_impl(limit).await
    }

    async fn record_gap(&self, gap: &Gap) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO knowledge_gaps (id, site, conversation_id, seq, kind, question, entry_id,
                 entry_title, page_url, at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (conversation_id, seq, kind) DO NOTHING",
        )
        .bind(new_id())
        .bind(&gap.site)
        .bind(&gap.conversation_id.0)
        .bind(gap.seq as i64)
        .bind(gap.kind.as_str())
        .bind(&gap.question)
        .bind(&gap.entry_id)
        .bind(&gap.entry_title)
        .bind(&gap.page_url)
        .bind(now_ms())
        .execute(&mut *self.write.acquire().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn gaps(&self, site: Option<&str>, since: i64, limit: i64) -> StoreResult<Vec<Gap>> {
        sqlx::query(
            "SELECT site, conversation_id, seq, kind, question, entry_id, entry_title, page_url, at FROM knowledge_gaps
             WHERE (? IS NULL OR site = ?) AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(site)
        .bind(site)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(gap_from_row)
        .collect()
    }
}

fn gap_from_row(row: &SqliteRow) -> StoreResult<Gap> {
    Ok(Gap {
        site: row.try_get("site")?,
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        seq: row.try_get::<i64, _>("seq")? as Seq,
        kind: GapKind::parse(row.try_get::<&str, _>("kind")?)?,
        question: row.try_get("question")?,
        entry_id: row.try_get("entry_id")?,
        entry_title: row.try_get("entry_title")?,
        page_url: row.try_get("page_url")?,
        at: row.try_get("at")?,
    })
}

/// The careful append inside `tx` (the caller commits): also records queue times — when the
/// conversation entered the queue, how long it waited, whose turn was last.
async fn append_in(
    connection: &mut SqliteConnection,
    id: &ConversationId,
    new: NewEvent,
) -> StoreResult<Appended> {
    let row = sqlx::query(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?"
    ))
    .bind(&id.0)
    .fetch_optional(&mut *connection)
    .await?
    .ok_or(StoreError::NotFound)?;
    let conv = conversation_from_row(&row)?;

    if let Some(client_id) = &new.client_id {
        let dup = sqlx::query(
            "SELECT conversation_id, seq, at, author_role, author_id, author_name, body FROM events
                 WHERE conversation_id = ? AND author_id IS ? AND client_id = ?",
        )
        .bind(&id.0)
        .bind(&new.author.id)
        .bind(&client_id.0)
        .fetch_optional(&mut *connection)
        .await?;
        if let Some(row) = dup {
            return Ok(Appended {
                event: event_from_row(&row)?,
                conversation: conv,
                duplicate: true,
            });
        }
    }

    let (status, assignee) = new.effect.apply(&conv)?;
    let preview = match &new.body {
        EventBody::Message { text, .. } => Some(preview_of(text)),
        _ => conv.preview.clone(),
    };
    let now = now_ms();
    let (queued_at, waited) =
        new.effect
            .queue_times(&conv, now, new.author.role == protocol::Role::Visitor);
    let row = sqlx::query(&format!(
            "UPDATE conversations SET last_seq = last_seq + 1, status = ?, bot = ?, assignee_id = ?,
                 preview = ?, updated_at = ?, queued_at = ? WHERE id = ? RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(status_str(status))
        .bind(is_bot(status))
        .bind(&assignee)
        .bind(&preview)
        .bind(now)
        .bind(queued_at)
        .bind(&id.0)
        .fetch_one(&mut *connection)
        .await?;
    if let (Effect::Assign(agent), None) = (&new.effect, &conv.assignee_id) {
        sqlx::query(
            "UPDATE agents SET assign_turn = (SELECT COALESCE(MAX(assign_turn), 0) + 1 FROM agents)
                 WHERE id = ?",
        )
        .bind(agent)
        .execute(&mut *connection)
        .await?;
    }
    if let Some((agent, waited_ms)) = waited {
        sqlx::query(
                "INSERT INTO queue_waits (conversation_id, agent_id, waited_ms, at) VALUES (?, ?, ?, ?)",
            )
            .bind(&id.0)
            .bind(agent)
            .bind(waited_ms)
            .bind(now)
            .execute(&mut *connection)
            .await?;
    }
    let conversation = conversation_from_row(&row)?;
    let event = Event {
        conversation_id: id.clone(),
        seq: conversation.last_seq,
        at: now,
        author: new.author,
        body: new.body,
    };
    insert_event(connection, &event, new.client_id.as_ref()).await?;
    Ok(Appended {
        event,
        conversation,
        duplicate: false,
    })
}

/// Conversations assigned and not closed, per agent.
async fn loads<'e, E>(executor: E) -> StoreResult<HashMap<String, u32>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query(
        "SELECT assignee_id, COUNT(*) AS n FROM conversations
         WHERE status = 'assigned' AND assignee_id IS NOT NULL GROUP BY assignee_id",
    )
    .fetch_all(executor)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("assignee_id")?, r.try_get::<i64, _>("n")? as u32)))
    .collect()
}

/// Binds one event row's eight columns, in `events`' column order (`insert_event` and the
/// group commit's multi-row `INSERT` both list them so).
fn bind_event<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    event: &'q Event,
    client_id: Option<&'q ClientId>,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    query
        .bind(&event.conversation_id.0)
        .bind(event.seq as i64)
        .bind(event.at)
        .bind(role_str(event.author.role))
        .bind(&event.author.id)
        .bind(&event.author.name)
        .bind(client_id.map(|c| c.0.as_str()))
        .bind(json(&event.body))
}

/// Inserts one event row inside the appending transaction.
async fn insert_event(
    connection: &mut SqliteConnection,
    event: &Event,
    client_id: Option<&ClientId>,
) -> Result<(), sqlx::Error> {
    let query = sqlx::query(
        "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name, client_id, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
    bind_event(query, event, client_id)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
