//! The SQLite store's writer thread: the group commit of plain appends, on a connection of its
//! own, driven directly (rusqlite) rather than through sqlx.
//!
//! Why a thread of our own: with sqlx every statement is a message to the connection's worker
//! thread and back, every row it returns another message, and the committing task that sends
//! them is woken for each. Profiled at 5,000 msg/s, that machinery (sqlx's channels, its
//! argument copies, the futures that collect rows) took ~10 % of the relay's CPU on the tokio
//! workers, and each hop is a thread wake-up, which is dear on these virtual machines. On this
//! thread the relay needs a quarter less CPU per message (BENCHMARKS.md).
//! Here one thread takes a batch from the queue, runs its whole transaction itself, and answers
//! each caller: one hand-over in, one out.
//!
//! What it stores: the batch's *plain* appends (see [`Plan`]) — messages that change a
//! conversation only by its seq and preview, nearly every append under load — in one
//! transaction: `BEGIN IMMEDIATE`, one read of their conversations, one multi-row `INSERT`, one
//! `UPDATE`, `COMMIT`. Everything else (effects that change a conversation's state, refusals, a
//! repeated client id, and whatever follows such an append in the same conversation) is handed
//! on, still unanswered, to the careful committer ([`super::commit`]), which stores it one by one
//! on sqlx's writer connection. Within a conversation that keeps the callers' order; across
//! conversations no order was promised. If this thread's transaction fails for any reason, it
//! stores nothing and hands the whole batch on, so the careful path answers each append with
//! its own outcome — a failure is never answered from here, and never dropped.
//!
//! Two connections write the database (this one and sqlx's): every write transaction on either
//! begins `IMMEDIATE`, so each takes SQLite's write lock before it reads what it will change,
//! and waits for the other under the busy timeout instead of failing.
//!
//! Between two batches the thread also rewinds the WAL when the checkpointer asks
//! ([`super::checkpoint`]), and tells the checkpointer of each commit.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::{ConversationId, ConversationStatus, Event, EventBody, Seq};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OpenFlags, Row, TransactionBehavior};

use super::checkpoint::Signals;
use super::writes::Turn;
use super::{ConversationRecord, CONVERSATION_COLUMNS};
use crate::metrics::{GroupCommit, Wal};
use crate::store::appends::{Batches, Forward, Request};
use crate::store::{now_ms, parse_status, preview_of, role_str, Appended, Effect};

/// The writer thread's page cache, in KiB (`PRAGMA cache_size` takes negative numbers as KiB).
/// Memory is taken as pages are used, up to this.
const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// Opens the writer thread's connection to the database file at `path` (created and migrated
/// already), with the durability pragmas of sqlx's connections (see
/// [`super::SqliteStore::connect`]).
pub(super) fn open(path: &Path, full_sync: bool) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(Duration::from_secs(10))?;
    // Its own page cache keeps the appends' hot pages (conversations, the events' idempotency
    // index): with SQLite's default 2 MiB they are evicted under load and every append re-reads
    // them through a system call. `secure_delete`: each append rewrites its conversation row,
    // and without it the old row (with the previous message's preview) stays in the page's free
    // space, where erasing the visitor later would not reach it (see `super::rights`).
    connection.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
         PRAGMA secure_delete = ON;",
        if full_sync { "FULL" } else { "NORMAL" }
    ))?;
    // One statement text per batch size (up to 256) for the insert and the update each; with a
    // cache of 100 they were prepared again and again (measured through sqlx, on tmpfs at
    // 5,000 msg/s: p50 5.4 → 3.3 ms).
    connection.set_prepared_statement_cache_capacity(1024);
    Ok(connection)
}

/// Starts the writer thread on `connection`. It takes batches from `queue` until every handle of
/// the store is gone, and hands on to `careful` what it does not store.
pub(super) fn start(
    connection: Connection,
    turn: Turn,
    queue: Batches,
    careful: Forward,
    signals: Arc<Signals>,
    wal: Wal,
    group: GroupCommit,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(connection, turn, queue, careful, signals, wal, group))
        .map(|_| ())
}

fn run(
    mut connection: Connection,
    turn: Turn,
    mut queue: Batches,
    careful: Forward,
    signals: Arc<Signals>,
    wal: Wal,
    group: GroupCommit,
) {
    while let Some(requests) = queue.blocking_next() {
        let my_turn = turn.blocking();
        let stored = match store_plain(&mut connection, &requests) {
            Ok(stored) => stored,
            Err(Failed::Repeat) => Vec::new(),
            Err(Failed::Engine(e)) => {
                tracing::warn!(error = %e, appends = requests.len(), "group commit failed; storing its appends one by one");
                Vec::new()
            }
        };
        // Still in this thread's turn, so no commit slips in. Before the checkpointer hears of
        // this commit: its pass, woken by the news, would otherwise run beside the rewind and
        // make it "busy".
        if signals.take_rewind() {
            super::checkpoint::rewind(&connection, &signals, &wal);
        }
        // Before handing anything on: the careful committer needs the turn to take it.
        drop(my_turn);
        signals.committed.notify_one();
        let mut stored = stored.into_iter();
        let mut grouped = 0;
        for request in requests {
            match stored.next().flatten() {
                Some(appended) => {
                    grouped += 1;
                    // A caller that gave up (its socket closed) no longer listens: fine, the
                    // event is stored and its next reader sees it.
                    let _ = request.reply.send(Ok(appended));
                }
                None => careful.blocking_send(request),
            }
        }
        group.count(grouped);
    }
}

/// Why [`store_plain`] stored nothing.
enum Failed {
    /// A repeated client id: the careful path answers it with the original.
    Repeat,
    /// The engine failed; the careful path will try each append alone.
    Engine(rusqlite::Error),
}

impl From<rusqlite::Error> for Failed {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => Failed::Repeat,
            _ => Failed::Engine(e),
        }
    }
}

/// Stores the plain appends of `requests` in one transaction. Each request's outcome, in order:
/// `Some` if stored here, `None` if it is the careful path's (the list may be shorter than
/// `requests` when nothing was stored). On error nothing was stored: the transaction is rolled
/// back as it is dropped.
fn store_plain(
    connection: &mut Connection,
    requests: &[Request],
) -> Result<Vec<Option<Appended>>, Failed> {
    let ids = plain_candidates(requests);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // `IMMEDIATE`: the write lock is taken before the read, so the conversations read are the
    // ones the insert writes after, whatever the other connections do.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut current = HashMap::with_capacity(ids.len());
    {
        let mut read = transaction.prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({})",
            placeholders(ids.len())
        ))?;
        let mut rows = read.query(params_from_iter(ids.iter().map(|id| id.0.as_str())))?;
        while let Some(row) = rows.next()? {
            let conversation = conversation_from(row)?;
            current.insert(conversation.id.clone(), conversation);
        }
    }
    let plan = Plan::new(requests, current);
    if plan.count == 0 {
        return Ok(Vec::new());
    }
    let touched = plan.touched();
    transaction
        .prepare_cached(&Plan::insert_sql(plan.count))?
        .execute(params_from_iter(plan.event_values(requests)))?;
    transaction
        .prepare_cached(&Plan::update_sql(touched.len()))?
        .execute(params_from_iter(plan.update_values(&touched)))?;
    transaction.commit()?;
    Ok(plan.stored)
}

/// A conversation row as [`super::conversation_from_row`] reads it through sqlx; a value that
/// does not parse is an engine failure here (the careful path then reads it and says so).
fn conversation_from(row: &Row<'_>) -> rusqlite::Result<ConversationRecord> {
    let corrupt = |column: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    };
    let status: String = row.get("status")?;
    let context: String = row.get("context")?;
    Ok(ConversationRecord {
        id: ConversationId(row.get("id")?),
        site: row.get("site")?,
        visitor_id: row.get("visitor_id")?,
        status: parse_status(&status, row.get("bot")?).map_err(|e| corrupt(3, e.to_string()))?,
        assignee_id: row.get("assignee_id")?,
        last_seq: row.get::<_, i64>("last_seq")? as Seq,
        preview: row.get("preview")?,
        context: serde_json::from_str(&context).map_err(|e| corrupt(8, e.to_string()))?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        rating: row
            .get::<_, Option<i64>>("rating")?
            .map(|r| u8::try_from(r).map_err(|_| corrupt(11, format!("rating {r}"))))
            .transpose()?,
        queued_at: row.get("queued_at")?,
        offline_email: row.get("offline_email")?,
        labels: match row.get::<_, Option<String>>("labels")? {
            Some(text) => serde_json::from_str(&text).map_err(|e| corrupt(14, e.to_string()))?,
            None => Vec::new(),
        },
    })
}

/// Conversations whose every append in the batch is of a plain kind (see [`Plan`]): those the
/// batch reads up front.
fn plain_candidates(requests: &[Request]) -> Vec<&ConversationId> {
    let mut eligible: HashMap<&ConversationId, bool> = HashMap::new();
    for request in requests {
        let plain = matches!(
            request.new.effect,
            Effect::None | Effect::Assign(_) | Effect::BotReply
        );
        *eligible.entry(&request.id).or_insert(true) &= plain;
    }
    eligible
        .into_iter()
        .filter_map(|(id, plain)| plain.then_some(id))
        .collect()
}

/// The plain appends of a batch, worked out from its conversations as read inside the
/// transaction, and stored in three statements whatever their number: one read of every
/// conversation concerned, one multi-row `INSERT` of the events, one `UPDATE` of the
/// conversations' seq, preview and time.
///
/// Only what cannot change a conversation beyond its seq and preview goes this way: plain
/// messages, an agent's message in a conversation already theirs, the bot's reply while it has
/// the conversation — and only for conversations whose every request in the batch is such. The
/// rest (unknown or closed conversations, effects, a guard that does not hold, and everything
/// after it in that conversation) is left `None` for the careful path, which runs after this
/// commit and so reads the seqs stored here.
struct Plan {
    /// Each request's outcome if it is stored this way, in request order.
    stored: Vec<Option<Appended>>,
    /// The conversations as they are after the plan, by id.
    current: HashMap<ConversationId, ConversationRecord>,
    /// How many requests are stored this way.
    count: usize,
}

impl Plan {
    fn new(requests: &[Request], mut current: HashMap<ConversationId, ConversationRecord>) -> Self {
        let now = now_ms();
        let mut stored: Vec<Option<Appended>> = vec![None; requests.len()];
        let mut careful: HashSet<&ConversationId> = HashSet::new();
        let mut count = 0;
        for (request, slot) in requests.iter().zip(stored.iter_mut()) {
            if careful.contains(&request.id) {
                continue;
            }
            let Some(conversation) = current.get_mut(&request.id) else {
                continue;
            };
            let accepts = conversation.status != ConversationStatus::Closed
                && match &request.new.effect {
                    // The visitor's first message in a conversation a greeting opened sets its
                    // queue time: the careful path does that.
                    Effect::None => !crate::store::starts_waiting(conversation, &request.new),
                    Effect::Assign(agent) => conversation.assignee_id.as_ref() == Some(agent),
                    Effect::BotReply => conversation.status == ConversationStatus::Bot,
                    _ => false,
                };
            if !accepts {
                careful.insert(&request.id);
                continue;
            }
            conversation.last_seq += 1;
            conversation.updated_at = now;
            if let EventBody::Message { text, .. } = &request.new.body {
                conversation.preview = Some(preview_of(text));
            }
            *slot = Some(Appended {
                event: Event {
                    conversation_id: request.id.clone(),
                    seq: conversation.last_seq,
                    at: now,
                    author: request.new.author.clone(),
                    body: request.new.body.clone(),
                },
                conversation: conversation.clone(),
                duplicate: false,
            });
            count += 1;
        }
        Self {
            stored,
            current,
            count,
        }
    }

    /// Only conversations that took an event, in request order (the update lists them so).
    fn touched(&self) -> Vec<&ConversationId> {
        let mut seen = HashSet::new();
        self.stored
            .iter()
            .flatten()
            .map(|a| &a.event.conversation_id)
            .filter(|id| seen.insert(*id))
            .collect()
    }

    /// The insert of `events` rows. A repeated client id fails it (plain `INSERT`, no
    /// `ON CONFLICT`), and with it the batch.
    fn insert_sql(events: usize) -> String {
        format!(
            "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name, client_id, body)
             VALUES {}",
            rows_of(events, 8),
        )
    }

    /// The update of `touched` conversations' seq, preview and time.
    fn update_sql(touched: usize) -> String {
        format!(
            "UPDATE conversations SET last_seq = v.column2, preview = v.column3, updated_at = v.column4
             FROM (VALUES {}) AS v WHERE conversations.id = v.column1",
            rows_of(touched, 4),
        )
    }

    /// [`Plan::insert_sql`]'s parameters: each stored event's eight columns, in `events`' column
    /// order (as [`super::bind_event`] binds them).
    fn event_values<'a>(&'a self, requests: &'a [Request]) -> impl Iterator<Item = Value> + 'a {
        requests
            .iter()
            .zip(&self.stored)
            .filter_map(|(request, appended)| Some((request, appended.as_ref()?)))
            .flat_map(|(request, appended)| {
                let event = &appended.event;
                [
                    Value::Text(event.conversation_id.0.clone()),
                    Value::Integer(event.seq as i64),
                    Value::Integer(event.at),
                    Value::Text(role_str(event.author.role).to_owned()),
                    text(event.author.id.clone()),
                    text(event.author.name.clone()),
                    text(request.new.client_id.as_ref().map(|c| c.0.clone())),
                    Value::Text(super::json(&event.body)),
                ]
            })
    }

    /// [`Plan::update_sql`]'s parameters: each of `touched` with where it ended.
    fn update_values<'a>(
        &'a self,
        touched: &'a [&'a ConversationId],
    ) -> impl Iterator<Item = Value> + 'a {
        touched.iter().flat_map(|id| {
            let conversation = &self.current[*id];
            [
                Value::Text(id.0.clone()),
                Value::Integer(conversation.last_seq as i64),
                text(conversation.preview.clone()),
                Value::Integer(conversation.updated_at),
            ]
        })
    }
}

/// `NULL` or the text.
fn text(value: Option<String>) -> Value {
    value.map_or(Value::Null, Value::Text)
}

/// `?, ?, …` with `n` placeholders.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `(?, …), (?, …), …`: `n` rows of `columns` placeholders each.
fn rows_of(n: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; n].join(", ")
}
