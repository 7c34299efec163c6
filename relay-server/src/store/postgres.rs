//! The PostgreSQL store: for several relay nodes sharing one database.
//!
//! Unlike SQLite ([`super::sqlite`]), writes are not serialised by the relay: many nodes and a
//! pool of connections append at once, so every guarantee is held by the database itself.
//!
//! - **Seq**: `append` locks the conversation row (`SELECT ... FOR UPDATE`) before anything
//!   else and bumps `last_seq` in the same transaction that inserts the event, so concurrent
//!   appends to one conversation (from any node) run one after another and get `n`, `n + 1`, ...
//!   A single append locks exactly one row and a group statement locks its rows in id order,
//!   so appends cannot deadlock each other.
//! - **Idempotency**: the duplicate check runs under that lock, so a racing twin has either
//!   committed (and is found) or not started. The unique index `events_idempotency` backs it
//!   up: should an insert still collide, the original is read and returned as a duplicate.
//! - **One open conversation per visitor**: a partial unique index on `visitor_id` where the
//!   status is not `closed`; `open_conversation` inserts with `ON CONFLICT DO NOTHING` and reads
//!   the winner.
//! - **Group commit** ([`batch`]): the plain messages a node receives together are stored by
//!   one statement that holds the same guarantees for the lot: it locks their conversations in
//!   id order (so two nodes' batches cannot deadlock), numbers from the locked `last_seq`, and
//!   leaves repeats and everything it cannot take to the one-by-one path above.
//!
//! Transactions run at READ COMMITTED (the default): each statement after the lock sees what
//! other transactions committed before it, which is what the checks above rely on.

use std::time::Duration;

use async_trait::async_trait;
use protocol::{Author, ClientId, ConversationId, Event, EventBody, PageContext, Seq};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction};

use std::collections::HashMap;

use protocol::AgentInfo;

mod agents;
mod batch;
mod identity;
mod rights;

use super::{
    auto_join, check_rateable, choose, is_bot, new_id, now_ms, parse_role, parse_status,
    preview_of, role_str, status_str, AgentRating, AgentRecord, Appended, Capacity,
    ConversationRecord, Effect, Gap, GapKind, NewEvent, QueueState, SiteSettingsRecord, Store,
    StoreError, StoreResult, VisitorRecord, AGENT_COLUMNS, ASSIGN_SCAN, WAIT_SAMPLES,
};

/// The advisory lock every automatic assignment holds (transaction-scoped): assignments from all
/// nodes run one after another, so the loads each one reads include the previous one's.
const ASSIGN_LOCK: i64 = 0x7061_726c_6579; // "parley"

/// Attempts of one `assign_next` when the conversation it chose was taken or closed by someone
/// else between its read and its lock.
const ASSIGN_ATTEMPTS: usize = 5;

/// Connections per relay node. Appends hold one for a few milliseconds; 16 keeps a node's
/// bursts from queueing while leaving room for many nodes under PostgreSQL's default
/// `max_connections` (100).
const POOL_SIZE: u32 = 16;

/// How many times `open_conversation` retries when the open conversation it lost a race to was
/// closed before it could read it. Each retry needs another node to open *and* close one in
/// between, so more than a couple never happen in practice.
const OPEN_ATTEMPTS: usize = 5;

const CONVERSATION_COLUMNS: &str =
    "id, site, visitor_id, status, bot, assignee_id, last_seq, preview, context, created_at, updated_at, rating, queued_at, offline_email, labels";

const EVENT_COLUMNS: &str = "conversation_id, seq, at, author_role, author_id, author_name, body";

/// PostgreSQL-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    /// Shared by reads and writes: the database, not the relay, serialises writers.
    pool: PgPool,
    /// Appends go through it, so those arriving together are stored by one statement (group
    /// commit, see [`batch`]).
    batcher: super::appends::Appends,
}

/// [`PgStore::append_fast`]'s statement for `Effect::None`, `Effect::Assign` and
/// `Effect::BotReply`, in that order (built once: they differ only by the guard).
///
/// The `UPDATE` matches nothing — and so nothing is written — when the conversation is closed,
/// the guard does not hold, or the client id was already stored (`NOT EXISTS`, on the
/// idempotency index's own expression). The last check is why a repeated client id, the usual
/// case after a reconnect, does not reach the unique index: PostgreSQL logs every statement that
/// fails, and a repeat is no error.
static FAST_APPEND: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
    ["", " AND assignee_id = $9", " AND bot"].map(|guard| {
        format!(
            "WITH c AS (
                 UPDATE conversations SET last_seq = last_seq + 1,
                     preview = COALESCE($1, preview), updated_at = $2
                 WHERE id = $3 AND status <> 'closed'{guard}
                   AND NOT EXISTS (SELECT 1 FROM events WHERE conversation_id = $3
                       AND COALESCE(author_id, '') = COALESCE($5, '') AND client_id = $7)
                 RETURNING {CONVERSATION_COLUMNS}
             ), e AS (
                 INSERT INTO events (conversation_id, seq, at, author_role, author_id,
                     author_name, client_id, body)
                 SELECT id, last_seq, $2, $4, $5, $6, $7, $8 FROM c
             )
             SELECT {CONVERSATION_COLUMNS} FROM c"
        )
    })
});

impl PgStore {
    /// Connects to `url` (`postgres://USER[:PASS]@HOST[:PORT]/DB`) and migrates the database.
    /// The database must exist. Several nodes may start at once: sqlx's migrator holds an
    /// advisory lock while it migrates.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        let batcher = batch::start(pool.clone());
        Ok(Self { pool, batcher })
    }

    /// The event a client id already produced, if any.
    async fn original<'e, E>(
        executor: E,
        id: &ConversationId,
        author_id: &Option<String>,
        client_id: &ClientId,
    ) -> StoreResult<Option<Event>>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE conversation_id = $1 AND COALESCE(author_id, '') = COALESCE($2, '')
               AND client_id = $3"
        ))
        .bind(&id.0)
        .bind(author_id)
        .bind(&client_id.0)
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
    }

    /// The conversation `id`, read through `pool`.
    async fn conversation_on(
        pool: &PgPool,
        id: &ConversationId,
    ) -> StoreResult<Option<ConversationRecord>> {
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1"
        ))
        .bind(&id.0)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    /// The visitor's conversation that is not closed, if any.
    async fn open_of(&self, visitor_id: &str) -> StoreResult<Option<ConversationRecord>> {
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE visitor_id = $1 AND status <> 'closed'"
        ))
        .bind(visitor_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(conversation_from_row)
        .transpose()
    }

    /// The common append in one statement and one round trip, outside any explicit
    /// transaction: the conversation's `UPDATE` (which takes its row lock, so appends to one
    /// conversation still go one at a time, each from the seq the previous one committed) and
    /// the event's `INSERT`, in one `WITH`. It applies only where the careful path
    /// ([`Self::append_in`]) would change nothing but the seq, preview and time: a plain message,
    /// an agent's message in a conversation already theirs, the bot's reply while it has the
    /// conversation. `None` when it does not apply (no such conversation, closed, the guard does
    /// not hold) or when the event repeats a client id (see [`FAST_APPEND`]); the careful path
    /// then works out the answer. Why: the careful path is six round trips (`BEGIN`, lock,
    /// repeat check, update, insert, `COMMIT`), and they, not PostgreSQL's work, bounded a node's
    /// appends (BENCHMARKS.md).
    async fn append_fast(
        pool: &PgPool,
        id: &ConversationId,
        new: &NewEvent,
    ) -> StoreResult<Option<Appended>> {
        let statement = match &new.effect {
            Effect::None => &FAST_APPEND[0],
            Effect::Assign(_) => &FAST_APPEND[1],
            Effect::BotReply => &FAST_APPEND[2],
            _ => return Ok(None),
        };
        let preview = match &new.body {
            EventBody::Message { text, .. } => Some(preview_of(text)),
            _ => None,
        };
        let now = now_ms();
        let mut query = sqlx::query(statement)
            .bind(&preview)
            .bind(now)
            .bind(&id.0)
            .bind(role_str(new.author.role))
            .bind(&new.author.id)
            .bind(&new.author.name)
            .bind(new.client_id.as_ref().map(|c| c.0.as_str()))
            .bind(json(&new.body));
        if let Effect::Assign(agent) = &new.effect {
            query = query.bind(agent);
        }
        let row = match query.fetch_optional(pool).await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            // Two appends of one client id at the same moment: both passed the repeat check
            // before either inserted; the second trips the unique index.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let conversation = conversation_from_row(&row)?;
        Ok(Some(Appended {
            event: Event {
                conversation_id: id.clone(),
                seq: conversation.last_seq,
                at: now,
                author: new.author.clone(),
                body: new.body.clone(),
            },
            conversation,
            duplicate: false,
        }))
    }

    /// One append on its own: the one-statement path ([`Self::append_fast`]) where it applies,
    /// else the careful transaction ([`Self::append_in`]). What [`batch`] does with each append
    /// it does not store together.
    async fn append_alone(
        pool: &PgPool,
        id: &ConversationId,
        new: NewEvent,
    ) -> StoreResult<Appended> {
        if let Some(appended) = Self::append_fast(pool, id, &new).await? {
            return Ok(appended);
        }
        let client_id = new.client_id.clone();
        let author_id = new.author.id.clone();
        let mut tx = pool.begin().await?;
        match Self::append_in(&mut tx, id, new).await {
            Ok(appended) => match tx.commit().await {
                Ok(()) => Ok(appended),
                Err(e) => Err(e.into()),
            },
            // The lock makes this unreachable today; should the twin still slip past the
            // check, the index refuses it and the original is the answer, as for any repeat.
            Err(e) if violates(&e, "events_idempotency") => {
                drop(tx);
                let Some(client_id) = client_id else {
                    return Err(e);
                };
                let Some(event) = Self::original(pool, id, &author_id, &client_id).await? else {
                    return Err(e);
                };
                let conversation = Self::conversation_on(pool, id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Ok(Appended {
                    event,
                    conversation,
                    duplicate: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The body of [`Store::append`] inside `tx`; the caller commits.
    async fn append_in(
        tx: &mut Transaction<'_, Postgres>,
        id: &ConversationId,
        new: NewEvent,
    ) -> StoreResult<Appended> {
        // The row lock: every append to this conversation waits here for the previous one.
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 FOR UPDATE"
        ))
        .bind(&id.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let conv = conversation_from_row(&row)?;

        if let Some(client_id) = &new.client_id {
            if let Some(event) = Self::original(&mut **tx, id, &new.author.id, client_id).await? {
                return Ok(Appended {
                    event,
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
            "UPDATE conversations SET last_seq = last_seq + 1, status = $1, assignee_id = $2,
                 preview = $3, updated_at = $4, bot = $6, queued_at = $7 WHERE id = $5
             RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(status_str(status))
        .bind(&assignee)
        .bind(&preview)
        .bind(now)
        .bind(&id.0)
        .bind(is_bot(status))
        .bind(queued_at)
        .fetch_one(&mut **tx)
        .await?;
        if let (Effect::Assign(agent), None) = (&new.effect, &conv.assignee_id) {
            sqlx::query(
                "UPDATE agents SET assign_turn = (SELECT COALESCE(MAX(assign_turn), 0) + 1 FROM agents)
                 WHERE id = $1",
            )
            .bind(agent)
            .execute(&mut **tx)
            .await?;
        }
        if let Some((agent, waited_ms)) = waited {
            sqlx::query(
                "INSERT INTO queue_waits (conversation_id, agent_id, waited_ms, at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&id.0)
            .bind(agent)
            .bind(waited_ms)
            .bind(now)
            .execute(&mut **tx)
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
        sqlx::query(
            "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name,
                 client_id, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id.0)
        .bind(event.seq as i64)
        .bind(event.at)
        .bind(role_str(event.author.role))
        .bind(&event.author.id)
        .bind(&event.author.name)
        .bind(new.client_id.as_ref().map(|c| c.0.as_str()))
        .bind(json(&event.body))
        .execute(&mut **tx)
        .await?;
        Ok(Appended {
            event,
            conversation,
            duplicate: false,
        })
    }
}

/// Conversations assigned and not closed, per agent.
async fn loads<'e, E>(executor: E) -> StoreResult<HashMap<String, u32>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
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

/// True when `e` is a unique violation of the named index.
fn violates(e: &StoreError, index: &str) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            db.is_unique_violation() && db.constraint() == Some(index)
        }
        _ => false,
    }
}

fn conversation_from_row(row: &PgRow) -> StoreResult<ConversationRecord> {
    let Json(context): Json<PageContext> = row.try_get("context")?;
    Ok(ConversationRecord {
        id: ConversationId(row.try_get("id")?),
        site: row.try_get("site")?,
        visitor_id: row.try_get("visitor_id")?,
        status: parse_status(row.try_get::<&str, _>("status")?, row.try_get("bot")?)?,
        assignee_id: row.try_get("assignee_id")?,
        last_seq: seq_from(row.try_get("last_seq")?)?,
        preview: row.try_get("preview")?,
        context,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        rating: row
            .try_get::<Option<i16>, _>("rating")?
            .map(|r| u8::try_from(r).map_err(|_| StoreError::Corrupt(format!("rating {r}"))))
            .transpose()?,
        queued_at: row.try_get("queued_at")?,
        offline_email: row.try_get("offline_email")?,
        labels: super::labels_from_db(row.try_get("labels")?)?,
    })
}

fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    let body: &str = row.try_get("body")?;
    Ok(Event {
        conversation_id: ConversationId(row.try_get("conversation_id")?),
        seq: seq_from(row.try_get("seq")?)?,
        at: row.try_get("at")?,
        author: Author {
            role: parse_role(row.try_get::<&str, _>("author_role")?)?,
            id: row.try_get("author_id")?,
            name: row.try_get("author_name")?,
        },
        body: serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn agent_from_row(row: &PgRow) -> StoreResult<AgentRecord> {
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

/// A stored BIGINT seq; negative only if the row was tampered with.
fn seq_from(v: i64) -> StoreResult<Seq> {
    Seq::try_from(v).map_err(|_| StoreError::Corrupt(format!("seq {v}")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

#[async_trait]
impl Store for PgStore {
    async fn close(&self) {
        self.pool.close().await;
    }

    async fn ping(&self) -> StoreResult<()> {
        // A commit: a read-only (recovering, failed-over) or full database fails here as it
        // would fail the next append.
        sqlx::query(
            "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at",
        )
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn group_commit(&self) -> crate::metrics::GroupCommit {
        self.batcher.group_commit()
    }

    async fn agent_count(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM agents")
            .fetch_one(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET display_name = EXCLUDED.display_name,
                 password_hash = EXCLUDED.password_hash, managed_by = 'config',
                 disabled = CASE WHEN agents.disabled_by IS NULL OR agents.disabled_by = 'config'
                     THEN FALSE ELSE agents.disabled END,
                 disabled_by = CASE WHEN agents.disabled_by = 'config'
                     THEN NULL ELSE agents.disabled_by END
             RETURNING {AGENT_COLUMNS}"
        ))
        .bind(new_id())
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        agent_from_row(&row)
    }

    async fn agent_by_username(&self, username: &str) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    async fn agent_by_id(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
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
        sqlx::query(
            "INSERT INTO sessions (token_hash, agent_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(agent_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_agent(&self, token_hash: &str, now: i64) -> StoreResult<Option<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE NOT disabled AND id =
                 (SELECT agent_id FROM sessions WHERE token_hash = $1 AND expires_at > $2)"
        ))
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(agent_from_row)
        .transpose()
    }

    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_agent_sessions(&self, agent_id: &str) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE agent_id = $1")
            .bind(agent_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn purge_expired_sessions(&self, now: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn agents(&self) -> StoreResult<Vec<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent_from_row)
        .collect()
    }

    async fn set_agent_disabled(&self, agent_id: &str, disabled: bool) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE agents SET disabled = $1, disabled_by = $2 WHERE id = $3")
            .bind(disabled)
            .bind(disabled.then_some(super::DISABLED_BY_CONFIG))
            .bind(agent_id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE agent_id = $1")
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
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE visitor_id = $1
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .bind(visitor_id)
        .fetch_optional(&self.pool)
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
        for _ in 0..OPEN_ATTEMPTS {
            if let Some(existing) = self.open_of(visitor_id).await? {
                return Ok((existing, false));
            }
            // A concurrent twin makes this wait for it and then do nothing; the next loop turn
            // reads the twin's conversation.
            let now = now_ms();
            let created = sqlx::query(&format!(
                "INSERT INTO conversations (id, site, visitor_id, status, context, created_at,
                     updated_at, bot, queued_at)
                 VALUES ($1, $2, $3, 'open', $4, $5, $6, $7, $8)
                 ON CONFLICT (visitor_id) WHERE status <> 'closed' DO NOTHING
                 RETURNING {CONVERSATION_COLUMNS}"
            ))
            .bind(new_id())
            .bind(site)
            .bind(visitor_id)
            .bind(Json(context))
            .bind(now)
            .bind(now)
            .bind(bot)
            // Without the bot it waits for a person from the start.
            .bind((!bot && waiting).then_some(now))
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = created {
                return Ok((conversation_from_row(&row)?, true));
            }
        }
        Err(StoreError::Corrupt(format!(
            "visitor {visitor_id}: no open conversation after {OPEN_ATTEMPTS} attempts \
             (conversations are being opened and closed faster than they can be read)"
        )))
    }

    async fn conversation(&self, id: &ConversationId) -> StoreResult<Option<ConversationRecord>> {
        Self::conversation_on(&self.pool, id).await
    }

    async fn open_conversations(
        &self,
        sites: Option<&[String]>,
        limit: i64,
    ) -> StoreResult<Vec<ConversationRecord>> {
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE status != 'closed'
                 AND ($1::text[] IS NULL OR site = ANY($1))
             ORDER BY updated_at DESC, id DESC LIMIT $2"
        ))
        .bind(sites)
        .bind(limit)
        .fetch_all(&self.pool)
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
        sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE status = 'closed' AND (updated_at < $1 OR (updated_at = $1 AND id < $2))
                 AND ($4::text[] IS NULL OR site = ANY($4))
             ORDER BY updated_at DESC, id DESC LIMIT $3"
        ))
        .bind(at)
        .bind(id)
        .bind(limit)
        .bind(sites)
        .fetch_all(&self.pool)
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
            "UPDATE conversations SET context = $1, updated_at = $2 WHERE id = $3
             RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(Json(context))
        .bind(now_ms())
        .bind(&id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(conversation_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn append(&self, id: &ConversationId, new: NewEvent) -> StoreResult<Appended> {
        self.batcher.append(id, new).await
    }

    async fn assign_next(
        &self,
        online: &[AgentInfo],
        capacity: &Capacity,
    ) -> StoreResult<Option<Appended>> {
        if online.is_empty() {
            return Ok(None);
        }
        for _ in 0..ASSIGN_ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            // Every node's assignments in turn; READ COMMITTED: each statement below sees
            // what the previous holder committed.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ASSIGN_LOCK)
                .execute(&mut *tx)
                .await?;
            let waiting: Vec<(ConversationId, String)> = sqlx::query(
                "SELECT id, site FROM conversations WHERE status = 'open' AND NOT bot
                 AND queued_at IS NOT NULL
                 ORDER BY queued_at, id LIMIT $1",
            )
            .bind(ASSIGN_SCAN)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((ConversationId(r.try_get("id")?), r.try_get("site")?)))
            .collect::<StoreResult<_>>()?;
            if waiting.is_empty() {
                return Ok(None);
            }
            let loads = loads(&mut *tx).await?;
            let turns: HashMap<String, i64> = sqlx::query("SELECT id, assign_turn FROM agents")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("assign_turn")?)))
                .collect::<StoreResult<_>>()?;
            let Some((conversation, agent)) = choose(&waiting, online, &loads, &turns, capacity)
            else {
                return Ok(None);
            };
            // A manual take or a close may have won meanwhile (they do not hold the advisory
            // lock): check under the row lock, which `append_in` takes again harmlessly.
            let still_waiting: Option<bool> = sqlx::query_scalar(
                "SELECT status = 'open' AND NOT bot AND queued_at IS NOT NULL FROM conversations
                 WHERE id = $1 FOR UPDATE",
            )
            .bind(&conversation.0)
            .fetch_optional(&mut *tx)
            .await?;
            if still_waiting != Some(true) {
                continue;
            }
            let appended = Self::append_in(&mut tx, &conversation, auto_join(agent)).await?;
            tx.commit().await?;
            return Ok(Some(appended));
        }
        Ok(None)
    }

    async fn queue_state(&self) -> StoreResult<QueueState> {
        let waiting = sqlx::query_scalar::<_, String>(
            "SELECT id FROM conversations WHERE status = 'open' AND NOT bot
                 AND queued_at IS NOT NULL
             ORDER BY queued_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(ConversationId)
        .collect();
        let loads = loads(&self.pool).await?;
        let avg: Option<f64> = sqlx::query_scalar(
            "SELECT AVG(waited_ms)::DOUBLE PRECISION FROM
                 (SELECT waited_ms FROM queue_waits ORDER BY id DESC LIMIT $1) recent",
        )
        .bind(WAIT_SAMPLES)
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueState {
            waiting,
            loads,
            avg_wait_ms: avg.map(|a| a.round() as i64),
        })
    }

    async fn assigned_to(&self, agent_id: &str) -> StoreResult<Vec<ConversationId>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM conversations WHERE status = 'assigned' AND assignee_id = $1
             ORDER BY created_at, id",
        )
        .bind(agent_id)
        .fetch_all(&self.pool)
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
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(&id.0)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
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
        let ids: Vec<&str> = after.iter().map(|(id, _)| id.0.as_str()).collect();
        let seqs: Vec<i64> = after
            .iter()
            .map(|(_, seq)| i64::try_from(*seq).unwrap_or(i64::MAX))
            .collect();
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM (
                 SELECT e.*, row_number() OVER (PARTITION BY e.conversation_id ORDER BY e.seq) AS n
                 FROM unnest($1::text[], $2::bigint[]) AS c(id, after)
                 JOIN events e ON e.conversation_id = c.id AND e.seq > c.after
             ) x WHERE n <= $3 ORDER BY conversation_id, seq"
        ))
        .bind(&ids)
        .bind(&seqs)
        .bind(limit)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        // The row lock, as in `append`: a racing second rating waits and then sees the first.
        let row = sqlx::query(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 FOR UPDATE"
        ))
        .bind(&id.0)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        check_rateable(&conversation_from_row(&row)?, visitor_id)?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE conversations SET last_seq = last_seq + 1, rating = $1, rating_comment = $2,
                 rated_at = $3, updated_at = $3 WHERE id = $4 RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(i16::from(score))
        .bind(&comment)
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
        sqlx::query(
            "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name,
                 client_id, body)
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&id.0)
        .bind(event.seq as i64)
        .bind(event.at)
        .bind(role_str(event.author.role))
        .bind(&event.author.id)
        .bind(&event.author.name)
        .bind(json(&event.body))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Appended {
            event,
            conversation,
            duplicate: false,
        })
    }

    async fn agent_ratings(&self) -> StoreResult<Vec<AgentRating>> {
        sqlx::query(
            "SELECT assignee_id, COUNT(*) AS n, AVG(rating)::float8 AS mean FROM conversations
             WHERE rating IS NOT NULL GROUP BY assignee_id ORDER BY n DESC, assignee_id",
        )
        .fetch_all(&self.pool)
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
        sqlx::query("UPDATE agents SET admin = $1 WHERE username = $2")
            .bind(admin)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn mark_offline(
        &self,
        id: &ConversationId,
        email: &str,
    ) -> StoreResult<ConversationRecord> {
        let row = sqlx::query(&format!(
            "UPDATE conversations SET offline_email = $1, bot = FALSE, updated_at = $2
             WHERE id = $3 AND status != 'closed' RETURNING {CONVERSATION_COLUMNS}"
        ))
        .bind(email)
        .bind(now_ms())
        .bind(&id.0)
        .fetch_optional(&self.pool)
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
        let changed = sqlx::query("UPDATE conversations SET labels = $1 WHERE id = $2")
            .bind(&text)
            .bind(&conversation_id.0)
            .execute(&self.pool)
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
        .fetch_all(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)
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
        .execute(&self.pool)
        .await;
        match done {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::ShortcutTaken)
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    async fn delete_canned(&self, id: &str) -> StoreResult<bool> {
        Ok(sqlx::query("DELETE FROM canned_replies WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn site_settings(&self) -> StoreResult<Vec<SiteSettingsRecord>> {
        sqlx::query(
            "SELECT site, routing, hours, max_chats_per_agent, updated_at, updated_by
             FROM site_settings ORDER BY site",
        )
        .fetch_all(&self.pool)
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
             VALUES ($1, $2, $3, $4, $5, $6)
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
        .execute(&self.pool)
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
        // Locked (SKIP LOCKED: two nodes' passes take different rows), tokens first.
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT v.id FROM visitors v WHERE v.site = $1 AND v.created_at < $2
             AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = v.id)
             ORDER BY v.created_at, v.id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(site)
        .bind(created_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM visitor_tokens WHERE visitor_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM visitors WHERE id = ANY($1)")
            .bind(&ids)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (conversation_id, seq, kind) DO NOTHING",
        )
        .bind(new_id())
        .bind(&gap.site)
        .bind(&gap.conversation_id.0)
        .bind(i64::try_from(gap.seq).unwrap_or(i64::MAX))
        .bind(gap.kind.as_str())
        .bind(&gap.question)
        .bind(&gap.entry_id)
        .bind(&gap.entry_title)
        .bind(&gap.page_url)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn gaps(&self, site: Option<&str>, since: i64, limit: i64) -> StoreResult<Vec<Gap>> {
        sqlx::query(
            "SELECT site, conversation_id, seq, kind, question, entry_id, entry_title, page_url, at FROM knowledge_gaps
             WHERE ($1::TEXT IS NULL OR site = $1) AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(site)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(gap_from_row)
        .collect()
    }
}

fn gap_from_row(row: &PgRow) -> StoreResult<Gap> {
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
