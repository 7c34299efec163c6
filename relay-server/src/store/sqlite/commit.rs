//! Group commit for the SQLite store: appends that arrive while the writer is busy are stored
//! together, in one transaction.
//!
//! Why: SQLite has one writer. On its own an append costs `BEGIN`, two statements and `COMMIT`,
//! and each WAL commit writes the pages it touched again. Under load (thousands of messages a
//! second) most of that is per transaction, not per message. So appends are queued
//! ([`Appends`]), and whatever is waiting (at most [`MAX_BATCH`]) is stored in one transaction,
//! committed once, and only then is each caller answered. Nothing is acknowledged before the
//! commit that stored it, and a request alone in the queue is served at once: nobody waits for
//! company.
//!
//! [`MAX_BATCH`]: crate::store::appends::MAX_BATCH
//!
//! Two committers share the work. The writer thread ([`super::writer`]) takes every batch first
//! and stores its plain appends (messages; nearly everything under load) in one transaction of
//! its own. What it leaves — appends with effects, refusals, repeated client ids — comes here,
//! to [`run`], which stores each on sqlx's writer connection, in one transaction per batch: by
//! the fast path ([`append_fast`]: two statements that either change nothing — no eligible
//! conversation — or fail as a whole statement, which SQLite undoes alone — a repeated client
//! id) or, when that does not apply, the careful path ([`super::append_in`]), whose refusals
//! (closed, taken, unknown) all come before it writes. So a refused append leaves the
//! transaction as it found it, and the batch goes on. Any other error (the engine failing) rolls
//! the whole batch back, and each of its appends is then tried in a transaction of its own: one
//! bad append never fails the others.

use std::sync::{Arc, LazyLock};

use sqlx::sqlite::SqliteConnection;

use super::checkpoint::Signals;
use super::writes::{Turn, Writes};
use super::{append_in, conversation_from_row, json, CONVERSATION_COLUMNS};
use crate::metrics::{GroupCommit, Wal};
use crate::store::appends::{self, Appends, Batches, Request};
use crate::store::{
    now_ms, preview_of, role_str, Appended, Effect, NewEvent, StoreError, StoreResult,
};
use protocol::{ConversationId, Event, EventBody};

/// Starts both committers — the writer thread on `writer`, the careful task on the current
/// tokio runtime with `write` — and returns the callers' side. Both end when every handle is
/// dropped; once `write` is closed, the careful task answers what it gets with the pool's error.
/// Each commit notifies the WAL checkpointer, and the writer thread rewinds the WAL when it asks
/// (see [`super::checkpoint`]).
pub(super) fn start(
    write: Writes,
    writer: rusqlite::Connection,
    turn: Turn,
    signals: Arc<Signals>,
    wal: Wal,
) -> std::io::Result<Appends> {
    let (appends, queue, group) = Appends::channel();
    let (careful, careful_queue) = appends::forward();
    super::writer::start(
        writer,
        turn,
        queue,
        careful,
        signals.clone(),
        wal,
        group.clone(),
    )?;
    tokio::spawn(run(write, careful_queue, signals, group));
    Ok(appends)
}

/// The careful committing loop: a batch of whatever the writer thread handed on, stored and
/// answered, until every handle of the store is gone. Each batch takes the writers' turn and the
/// connection, and gives both back after its commit ([`Writes::acquire`]).
async fn run(write: Writes, mut queue: Batches, signals: Arc<Signals>, group: GroupCommit) {
    while let Some(requests) = queue.next().await {
        let mut connection = match write.acquire().await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(error = %e, appends = requests.len(), "group commit could not get the writer connection");
                for request in requests {
                    let _ = request.reply.send(Err(again(&e)));
                }
                continue;
            }
        };
        commit_batch(&mut connection, requests, &group).await;
        drop(connection);
        // The WAL grew (or a failed batch left it as it was: a spare checkpoint is harmless).
        signals.committed.notify_one();
    }
}

/// The same acquire error for each caller of a batch (neither error type is `Clone`).
fn again(e: &StoreError) -> StoreError {
    StoreError::Database(match e {
        StoreError::Database(sqlx::Error::PoolClosed) => sqlx::Error::PoolClosed,
        StoreError::Database(sqlx::Error::PoolTimedOut) => sqlx::Error::PoolTimedOut,
        other => sqlx::Error::Protocol(other.to_string()),
    })
}

/// Stores one batch, counts what it stored in `group`, and answers its callers.
async fn commit_batch(
    connection: &mut SqliteConnection,
    requests: Vec<Request>,
    group: &GroupCommit,
) {
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
        }
        Err(e) if requests.len() == 1 => {
            if let Some(request) = requests.into_iter().next() {
                let _ = request.reply.send(Err(e));
            }
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

/// The transaction of [`store_together`]: each append by [`append_fast`] or, when that does not
/// apply, [`append_in`], written as SQL text (`BEGIN IMMEDIATE`, `COMMIT`) rather than with
/// sqlx's `Transaction` so that the writer thread's transactions and these exclude each other
/// from their first statement (see [`super::writer`]). On error the caller rolls back.
async fn store_in_transaction(
    connection: &mut SqliteConnection,
    requests: &[Request],
) -> StoreResult<Vec<StoreResult<Appended>>> {
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *connection)
        .await?;
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
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
        // A visitor's message joins the queue a conversation a greeting opened.
        Effect::None if new.author.role == protocol::Role::Visitor => &FAST_APPEND[5],
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

/// [`append_fast`]'s insert and update for `Effect::None`, `Assign`, `Close`, `Handoff`,
/// `BotReply` and a visitor's `Effect::None`, in that order, built once: they differ only by the effect's guard and what it
/// sets.
static FAST_APPEND: LazyLock<[(String, String); 6]> = LazyLock::new(|| {
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
        // A visitor's message: a conversation a greeting opened (open, not the bot's, nobody's,
        // not queued) starts waiting now.
        (
            ", queued_at = CASE WHEN queued_at IS NULL AND status = 'open' AND bot = 0
                 AND assignee_id IS NULL THEN ?2 ELSE queued_at END",
            "",
        ),
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
