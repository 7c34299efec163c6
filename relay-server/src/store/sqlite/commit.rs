//! Group commit for the SQLite store: appends that arrive while the single writer is busy are
//! stored together, in one transaction.
//!
//! Why: SQLite has one writer, and with sqlx every statement is a round trip to the connection's
//! worker thread. On its own an append costs `BEGIN`, two statements and `COMMIT`, and each WAL
//! commit writes the pages it touched again. Under load (thousands of messages a second) most of
//! that is per transaction, not per message. So one task, [`run`], owns the appends: it takes
//! every request waiting in its queue (at most [`MAX_BATCH`]), stores them in one transaction,
//! commits once, and only then answers each caller. Nothing is acknowledged before the commit
//! that stored it, and a request alone in the queue is served at once: nobody waits for company.
//!
//! [`MAX_BATCH`]: crate::store::appends::MAX_BATCH
//!
//! A batch is one transaction written as SQL text ([`store_in_transaction`]), so that `BEGIN` and
//! `COMMIT` share their round trips with the statements beside them. Its plain appends (messages
//! that change a conversation only by their seq and preview; see [`Plan`]) are stored together:
//! `BEGIN IMMEDIATE` with one read of their conversations, then one multi-row `INSERT`, one
//! `UPDATE` and `COMMIT` — two round trips for a whole batch of them. Each other append takes the
//! fast path ([`append_fast`]: two statements that either change nothing — no eligible
//! conversation — or fail as a whole statement, which SQLite undoes alone — a repeated client id)
//! or, when that does not apply, the careful path ([`super::append_in`]), whose refusals (closed,
//! taken, unknown) all come before it writes. So a refused append leaves the transaction as it
//! found it, and the batch goes on. Any other error (the engine failing) rolls the whole batch
//! back, and each of its appends is then tried in a transaction of its own: one bad append never
//! fails the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use protocol::{ConversationId, ConversationStatus, Event, EventBody};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Sqlite, SqlitePool};

use super::checkpoint::Signals;
use super::{
    append_in, bind_event, conversation_from_row, json, ConversationRecord, CONVERSATION_COLUMNS,
};
use crate::metrics::{GroupCommit, Wal};
use crate::store::appends::{Appends, Batches, Request};
use crate::store::{
    now_ms, preview_of, role_str, Appended, Effect, NewEvent, StoreError, StoreResult,
};

/// Starts the committing task on the current tokio runtime and returns the callers' side. The
/// task ends when every handle is dropped; once `write` is closed, it answers every request with
/// the pool's error. Each commit notifies the WAL checkpointer, and the committer rewinds the
/// WAL when it asks (see [`super::checkpoint`]).
pub(super) fn start(write: SqlitePool, signals: Arc<Signals>, wal: Wal) -> Appends {
    let (appends, queue, group) = Appends::channel();
    tokio::spawn(run(write, queue, signals, wal, group));
    appends
}

/// The committing loop: a batch of whatever is waiting, stored and answered, until every
/// handle of the store is gone.
///
/// While appends keep coming, the loop keeps the writer connection from one batch to the next
/// (at most [`HOLD`]): sqlx returns a connection to its pool through a spawned task that pings
/// SQLite's worker thread, and the next acquire waits for both. Measured at 5,000 msg/s, that
/// made `BEGIN` the slowest step of a group commit (210 µs of ~0.6 ms). Past [`HOLD`], or once
/// nothing waits, the connection goes back to the pool, so the other writers (sessions,
/// assignments, settings) wait at most that long.
async fn run(
    write: SqlitePool,
    mut queue: Batches,
    signals: Arc<Signals>,
    wal: Wal,
    group: GroupCommit,
) {
    let mut held: Option<(PoolConnection<Sqlite>, Instant)> = None;
    while let Some(requests) = queue.next().await {
        let (mut connection, since) = match held.take() {
            Some(held) => held,
            None => match write.acquire().await {
                Ok(connection) => (connection, Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, appends = requests.len(), "group commit could not get the writer connection");
                    for request in requests {
                        let _ = request.reply.send(Err(StoreError::Database(again(&e))));
                    }
                    continue;
                }
            },
        };
        let healthy = commit_batch(&mut connection, requests, &group).await;
        // Before the checkpointer hears of this commit: its pass, woken by the news, would
        // otherwise run beside the rewind and make it "busy".
        if signals.take_rewind() {
            super::checkpoint::rewind(&mut connection, &signals, &wal).await;
        }
        // The WAL grew (or a failed batch left it as it was: a spare checkpoint is harmless).
        signals.committed.notify_one();
        if healthy && !queue.is_empty() && since.elapsed() < HOLD {
            held = Some((connection, since));
        }
    }
}

/// The same acquire error for each caller of a batch (`sqlx::Error` is not `Clone`).
fn again(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Longest the committer keeps the writer connection across batches (see [`run`]).
const HOLD: Duration = Duration::from_millis(10);

/// Stores one batch, counts what it stored in `group`, and answers its callers. `false` when
/// the engine failed: the caller then gives the connection back to the pool instead of keeping
/// it for the next batch.
async fn commit_batch(
    connection: &mut SqliteConnection,
    requests: Vec<Request>,
    group: &GroupCommit,
) -> bool {
    match store_together(connection, &requests).await {
        Ok(outcomes) => {
            // Refusals and repeats answered with their original stored nothing.
            group.count(
                outcomes
                    .iter()
                    .filter(|o| matches!(o, Ok(a) if !a.duplicate))
                    .count(),
            );
            for (request, outcome) in requests.into_iter().zip(outcomes) {
                // A caller that gave up (its socket closed) no longer listens: fine, the
                // event is stored and its next reader sees it.
                let _ = request.reply.send(outcome);
            }
            true
        }
        Err(e) if requests.len() == 1 => {
            if let Some(request) = requests.into_iter().next() {
                let _ = request.reply.send(Err(e));
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, appends = requests.len(), "group commit failed; storing its appends one by one");
            for request in requests {
                let alone = store_together(connection, std::slice::from_ref(&request)).await;
                let outcome = alone.and_then(|mut outcomes| {
                    outcomes.pop().unwrap_or(Err(StoreError::Corrupt(
                        "a batch of one gave no outcome".into(),
                    )))
                });
                let _ = request.reply.send(outcome);
            }
            false
        }
    }
}

/// Stores `requests` in one transaction. `Ok` holds each request's outcome, in order (an
/// outcome may be a refusal such as [`StoreError::Closed`]); `Err` means nothing was stored, and
/// no transaction is left open on `connection`.
async fn store_together(
    connection: &mut SqliteConnection,
    requests: &[Request],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    let stored = store_in_transaction(connection, requests).await;
    if stored.is_err() {
        // Whatever statement failed, the transaction it was in goes. "No transaction is
        // active" (the failure was `BEGIN` or `COMMIT` itself) is as good as a rollback.
        if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *connection).await {
            tracing::debug!(error = %e, "rollback after a failed group commit");
        }
    }
    stored
}

/// The transaction of [`store_together`], written as SQL text rather than with sqlx's
/// `Transaction`: `BEGIN` and `COMMIT` then travel to SQLite's worker thread with the statements
/// next to them instead of in round trips of their own. A batch of plain appends (see [`Plan`])
/// — nearly every batch under load — costs two round trips, `BEGIN IMMEDIATE` with the read of
/// its conversations, then the insert, the update and `COMMIT`, where it cost five. Measured at
/// 5,000 msg/s, those round trips were most of the writer's time (BENCHMARKS.md). On error the
/// caller rolls back.
async fn store_in_transaction(
    connection: &mut SqliteConnection,
    requests: &[Request],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    let ids = plain_candidates(requests);
    // `IMMEDIATE`: the writer's lock is taken before the read, so the conversations read are
    // the ones the insert writes after, whatever else opens this database file.
    let mut read = String::from("BEGIN IMMEDIATE");
    if !ids.is_empty() {
        read.push_str(&format!(
            "; SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id IN ({})",
            placeholders(ids.len())
        ));
    }
    let mut query = sqlx::query(&read);
    for id in &ids {
        query = query.bind(&id.0);
    }
    let mut current = HashMap::with_capacity(ids.len());
    for row in query.fetch_all(&mut *connection).await? {
        let conversation = conversation_from_row(&row)?;
        current.insert(conversation.id.clone(), conversation);
    }

    let plan = Plan::new(requests, current);
    let whole = plan.count == requests.len();
    let mut stored = Vec::new();
    if plan.count > 0 {
        let touched = plan.touched();
        let sql = plan.sql(touched.len(), whole);
        match plan
            .bind(requests, &touched, sqlx::query(&sql))
            .execute(&mut *connection)
            .await
        {
            Ok(_) if whole => return Ok(plan.stored.into_iter().flatten().map(Ok).collect()),
            Ok(_) => stored = plan.stored,
            // A repeated client id: the insert is the transaction's first write and SQLite
            // undid that statement alone, so the transaction goes on as if it never ran, and
            // every append goes the one-by-one way, which answers a repeat with its original.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(e.into()),
        }
    }
    stored.resize_with(requests.len(), || None);

    let mut outcomes = Vec::with_capacity(requests.len());
    for (request, stored) in requests.iter().zip(stored) {
        if let Some(appended) = stored {
            outcomes.push(Ok(appended));
            continue;
        }
        let outcome = match append_fast(&mut *connection, &request.id, &request.new).await? {
            Some(appended) => Ok(appended),
            None => match append_in(&mut *connection, &request.id, request.new.clone()).await {
                Err(e) if !is_refusal(&e) => return Err(e),
                outcome => outcome,
            },
        };
        outcomes.push(outcome);
    }
    sqlx::query("COMMIT").execute(&mut *connection).await?;
    Ok(outcomes)
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
/// after it in that conversation) is left `None` for the one-by-one path, which runs after this
/// and so reads the seqs stored here.
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
                    Effect::None => true,
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

    /// The insert and the update (of `touched` conversations) as one query text, with `COMMIT`
    /// after them when `commit`. A repeated client id fails the insert (plain `INSERT`, no
    /// `ON CONFLICT`), and SQLite runs nothing of the text after a failed statement.
    fn sql(&self, touched: usize, commit: bool) -> String {
        format!(
            "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name, client_id, body)
             VALUES {};
             UPDATE conversations SET last_seq = v.column2, preview = v.column3, updated_at = v.column4
             FROM (VALUES {}) AS v WHERE conversations.id = v.column1{}",
            rows_of(self.count, 8),
            rows_of(touched, 4),
            if commit { "; COMMIT" } else { "" },
        )
    }

    /// Binds [`Plan::sql`]'s parameters: each stored event, then each of `touched`
    /// ([`Plan::touched`]) with where it ended.
    fn bind<'q>(
        &'q self,
        requests: &'q [Request],
        touched: &[&'q ConversationId],
        mut query: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        for (request, appended) in requests.iter().zip(&self.stored) {
            let Some(appended) = appended else { continue };
            query = bind_event(query, &appended.event, request.new.client_id.as_ref());
        }
        for id in touched {
            let conversation = &self.current[id];
            query = query
                .bind(&id.0)
                .bind(conversation.last_seq as i64)
                .bind(&conversation.preview)
                .bind(conversation.updated_at);
        }
        query
    }
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

/// Refusals are decided before the careful path writes anything, so the transaction goes on.
fn is_refusal(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::NotFound | StoreError::Forbidden | StoreError::Closed
    )
}

/// The common case in two statements: the event row is inserted from the conversation row, but
/// only if the conversation accepts it (not closed; the effect's guard, e.g. the bot still has
/// it) — else nothing is inserted. A repeated client id trips the unique index and SQLite undoes
/// that statement alone. Either way `None`: the careful path works out what it was. Then the
/// conversation takes the new seq and the effect.
async fn append_fast(
    connection: &mut SqliteConnection,
    id: &ConversationId,
    new: &NewEvent,
) -> StoreResult<Option<Appended>> {
    let preview = match &new.body {
        EventBody::Message { text, .. } => Some(preview_of(text)),
        _ => None,
    };
    let (insert, update) = match &new.effect {
        Effect::None => &FAST_APPEND[0],
        Effect::Assign(_) => &FAST_APPEND[1],
        Effect::Transfer { .. } | Effect::Requeue(_) => return Ok(None),
        Effect::Close => &FAST_APPEND[2],
        Effect::Handoff => &FAST_APPEND[3],
        Effect::BotReply => &FAST_APPEND[4],
    };
    let now = now_ms();
    let mut query = sqlx::query(insert)
        .bind(now)
        .bind(role_str(new.author.role))
        .bind(&new.author.id)
        .bind(&new.author.name)
        .bind(new.client_id.as_ref().map(|c| c.0.as_str()))
        .bind(json(&new.body))
        .bind(&id.0);
    if let Effect::Assign(agent) = &new.effect {
        query = query.bind(agent);
    }
    match query.execute(&mut *connection).await {
        Ok(done) if done.rows_affected() == 1 => {}
        Ok(_) => return Ok(None),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let row = sqlx::query(update)
        .bind(&preview)
        .bind(now)
        .bind(&id.0)
        .fetch_one(&mut *connection)
        .await?;
    let conversation = conversation_from_row(&row)?;
    let event = Event {
        conversation_id: id.clone(),
        seq: conversation.last_seq,
        at: now,
        author: new.author.clone(),
        body: new.body.clone(),
    };
    Ok(Some(Appended {
        event,
        conversation,
        duplicate: false,
    }))
}

/// [`append_fast`]'s insert and update for `Effect::None`, `Assign`, `Close`, `Handoff` and
/// `BotReply`, in that order, built once: they differ only by the effect's guard and what it
/// sets.
static FAST_APPEND: LazyLock<[(String, String); 5]> = LazyLock::new(|| {
    [
        ("", ""),
        // Only an agent's message in a conversation already theirs: taking it from the queue or
        // the bot records queue times, which the careful path does.
        ("", " AND assignee_id = ?8"),
        (", status = 'closed'", ""),
        // Only while the bot has it (otherwise the careful path says Forbidden); into the
        // people's queue, waiting from now.
        (", bot = 0, queued_at = ?2", " AND bot = 1"),
        ("", " AND bot = 1"),
    ]
    .map(|(set_effect, guard)| {
        (
            format!(
                "INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name, client_id, body)
                 SELECT id, last_seq + 1, ?1, ?2, ?3, ?4, ?5, ?6 FROM conversations
                 WHERE id = ?7 AND status != 'closed'{guard}"
            ),
            format!(
                "UPDATE conversations SET last_seq = last_seq + 1, preview = COALESCE(?1, preview),
                     updated_at = ?2{set_effect}
                 WHERE id = ?3 RETURNING {CONVERSATION_COLUMNS}"
            ),
        )
    })
});
