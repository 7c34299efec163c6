//! Group commit for the PostgreSQL store: a node's appends that arrive together are stored by
//! one statement, in one transaction.
//!
//! Why: on its own, a plain message is one statement and one commit ([`FAST_APPEND`]), and under
//! load PostgreSQL's work per statement and per commit, not the relay's, bounded what two nodes
//! stored (~3,000 msg/s on a two-core machine, BENCHMARKS.md). So each node has one task,
//! [`run`], that takes every append waiting in its queue (at most [`MAX_BATCH`]) and stores the
//! plain ones with [`BATCH_APPEND`]: one round trip and one commit for the lot. Nothing is
//! answered before that commit. An append alone in the queue takes the one-statement path at
//! once: nobody waits for company.
//!
//! How a batch keeps every guarantee of the one-by-one path (see the module above):
//! - **Seq**: the statement locks its conversations (`FOR UPDATE`, in id order) before it reads
//!   their `last_seq`, numbers each conversation's events from there and moves `last_seq` by
//!   their count. Locks are taken in id order by every batch, and a single append locks one row,
//!   so batches from several nodes cannot deadlock each other or a single append.
//! - **Order**: only conversations whose every append in the batch is plain go in the
//!   statement, and within one, only the appends before the first it cannot take (a guard that
//!   does not hold, a repeated client id). All the others then go one by one, in the order they
//!   arrived, after the statement has committed.
//! - **Idempotency**: a client id already stored, or repeated inside the batch, is left to the
//!   one-by-one path, which answers it with the original. A twin committed by another node after
//!   the statement began trips the unique index: the statement fails as a whole, nothing of it is
//!   stored, and every append of the batch goes one by one.
//!
//! [`FAST_APPEND`]: super::FAST_APPEND
//! [`MAX_BATCH`]: crate::store::appends::MAX_BATCH

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use protocol::{ConversationId, Event, EventBody};
use sqlx::{PgPool, Row};
use tokio::sync::Semaphore;

use super::{conversation_from_row, json, PgStore, CONVERSATION_COLUMNS};
use crate::metrics::GroupCommit;
use crate::store::appends::{Appends, Batches, Request};
use crate::store::{now_ms, preview_of, role_str, Appended, Effect, StoreError, StoreResult};

/// Batches of one node in flight at once. More than one, so a batch that waits for a row lock
/// another node holds, or for its commit's flush, does not hold up the node's other
/// conversations (at 5,000 msg/s on two nodes, one at a time gave five times the median
/// latency of eight, and four about twice; BENCHMARKS.md); at most half the pool
/// ([`super::POOL_SIZE`]), because the single appends and the reads need connections too.
const FLIGHTS: usize = 8;

/// Starts a node's batching task on the current tokio runtime and returns the callers' side;
/// the task appends through `pool` and ends when the last handle is dropped.
pub(super) fn start(pool: PgPool) -> Appends {
    let (appends, queue, group) = Appends::channel();
    tokio::spawn(run(pool, queue, group));
    appends
}

/// The batching loop: whatever is waiting, as one batch, with at most [`FLIGHTS`] batches in
/// flight; while all are, the queue fills and the next batch is larger.
async fn run(pool: PgPool, mut queue: Batches, group: GroupCommit) {
    let flights = Arc::new(Semaphore::new(FLIGHTS));
    loop {
        let Ok(permit) = flights.clone().acquire_owned().await else {
            return;
        };
        let Some(requests) = queue.next().await else {
            return;
        };
        let (pool, group) = (pool.clone(), group.clone());
        tokio::spawn(async move {
            store_batch(&pool, requests, &group).await;
            drop(permit);
        });
    }
}

/// Stores a batch and answers each caller: first those stored together, then the others one by
/// one, in arrival order. A caller that gave up (its socket closed) no longer listens: fine, its
/// event is stored and its next reader sees it.
async fn store_batch(pool: &PgPool, requests: Vec<Request>, group: &GroupCommit) {
    let mut outcomes: Vec<Together> = Vec::new();
    if requests.len() > 1 {
        match store_together(pool, &requests).await {
            Ok(together) => {
                group.count(together.iter().filter(|o| matches!(o, Some(Ok(_)))).count());
                outcomes = together;
            }
            // Another node stored a twin of one of these after the statement began: expected
            // now and then (a client that resent through the other node), and the one-by-one
            // path answers it with the original.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                tracing::debug!(error = %e, appends = requests.len(), "group append met a twin; storing its appends one by one");
            }
            Err(e) => {
                tracing::warn!(error = %e, appends = requests.len(), "group append failed; storing its appends one by one");
            }
        }
    }
    outcomes.resize_with(requests.len(), || None);
    let mut rest = Vec::new();
    for (request, outcome) in requests.into_iter().zip(outcomes) {
        match outcome {
            Some(outcome) => {
                let _ = request.reply.send(outcome);
            }
            None => rest.push(request),
        }
    }
    for request in rest {
        let outcome = PgStore::append_alone(pool, &request.id, request.new).await;
        let _ = request.reply.send(outcome);
    }
}

/// The statement of [`store_together`]. Its parameters are one array per column of the batch's
/// plain appends (in arrival order), then the time stamped on all of them. Each step is a `WITH`:
///
/// - `locked`: the open conversations concerned, locked in id order. `FOR UPDATE` returns each
///   row as it is once locked, so `last_seq` is the one committed last, not the statement's
///   snapshot;
/// - `flags`: whether each append may go here: the conversation is locked (it exists and is
///   open), the guard holds (`assignee`: the agent it must already belong to; `bot`: the bot
///   must still have it), and its client id is neither stored nor earlier in the batch (a
///   comparison with a null, such as a conversation nobody has yet, counts as "may not": unlike
///   `false`, a null would be skipped by `bool_and`);
/// - `accepted`: per conversation, the appends before the first that may not, numbered;
/// - `updated` moves each conversation's `last_seq`, preview and time; `inserted` stores the
///   events at `last_seq + k`.
///
/// It returns one row per stored append: its position in the arrays, its seq, the preview
/// before the batch, and the conversation as the batch left it.
static BATCH_APPEND: LazyLock<String> = LazyLock::new(|| {
    let returned = CONVERSATION_COLUMNS
        .split(", ")
        .map(|column| format!("u.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::bool[]) WITH ORDINALITY
                 AS i(conversation_id, preview, author_role, author_id, author_name, client_id,
                      body, assignee, bot, ord)
         ), locked AS (
             SELECT id, last_seq, preview, assignee_id, bot FROM conversations
             WHERE id = ANY($1::text[]) AND status <> 'closed'
             ORDER BY id FOR UPDATE
         ), flags AS (
             SELECT i.*, l.last_seq AS base, l.preview AS before, COALESCE(
                 (i.assignee IS NULL OR l.assignee_id = i.assignee)
                 AND (NOT i.bot OR l.bot)
                 AND (i.client_id IS NULL OR (
                     i.ord = min(i.ord) OVER (PARTITION BY i.conversation_id,
                         COALESCE(i.author_id, ''), i.client_id)
                     AND NOT EXISTS (SELECT 1 FROM events e
                         WHERE e.conversation_id = i.conversation_id
                           AND COALESCE(e.author_id, '') = COALESCE(i.author_id, '')
                           AND e.client_id = i.client_id))), false) AS ok
             FROM input i JOIN locked l ON l.id = i.conversation_id
         ), accepted AS (
             SELECT f.*, row_number() OVER (PARTITION BY conversation_id ORDER BY ord) AS k
             FROM (SELECT flags.*, bool_and(ok) OVER (PARTITION BY conversation_id ORDER BY ord)
                       AS prefix
                   FROM flags) f
             WHERE f.prefix
         ), totals AS (
             SELECT conversation_id, max(base) + count(*) AS last_seq,
                 (array_agg(preview ORDER BY ord DESC) FILTER (WHERE preview IS NOT NULL))[1]
                     AS preview,
                 bool_or(author_role = 'visitor') AS by_visitor
             FROM accepted GROUP BY conversation_id
         ), updated AS (
             UPDATE conversations c SET last_seq = t.last_seq,
                 preview = COALESCE(t.preview, c.preview), updated_at = $10,
                 -- A conversation a greeting opened joins the queue when the visitor writes.
                 queued_at = CASE WHEN t.by_visitor AND c.queued_at IS NULL AND c.status = 'open'
                     AND NOT c.bot AND c.assignee_id IS NULL THEN $10 ELSE c.queued_at END
             FROM totals t WHERE c.id = t.conversation_id AND c.id = ANY($1::text[])
             RETURNING c.*
         ), inserted AS (
             INSERT INTO events (conversation_id, seq, at, author_role, author_id, author_name,
                 client_id, body)
             SELECT conversation_id, base + k, $10, author_role, author_id, author_name,
                 client_id, body
             FROM accepted
         )
         SELECT a.ord, a.base + a.k AS seq, a.before, {returned}
         FROM accepted a JOIN updated u ON u.id = a.conversation_id"
    )
});

/// One append's columns in [`BATCH_APPEND`]'s arrays, or `None` when it is not plain: a message
/// with no effect, an agent's in a conversation already theirs, the bot's while it has it.
fn guard_of(effect: &Effect) -> Option<(Option<&str>, bool)> {
    match effect {
        Effect::None => Some((None, false)),
        Effect::Assign(agent) => Some((Some(agent), false)),
        Effect::BotReply => Some((None, true)),
        _ => None,
    }
}

/// What [`store_together`] did with one request: stored (or stored and not read back), or
/// `None`, left to the one-by-one path.
type Together = Option<StoreResult<Appended>>;

/// Stores the plain appends of `requests` with one [`BATCH_APPEND`]: each request's outcome, in
/// request order. `Err` means the statement failed and nothing was stored. Once it has
/// succeeded, nothing of the batch may go the one-by-one way again: an event without a client
/// id would be stored twice. So a returned row that cannot be read back answers the statement's
/// requests with that error instead.
async fn store_together(pool: &PgPool, requests: &[Request]) -> StoreResult<Vec<Together>> {
    // Conversations with an append that is not plain stay out entirely: that append must come
    // in its place among the others, and only the one-by-one path can put it there.
    let mut careful: HashSet<&ConversationId> = HashSet::new();
    for request in requests {
        if guard_of(&request.new.effect).is_none() {
            careful.insert(&request.id);
        }
    }
    let mut chosen = Vec::with_capacity(requests.len());
    let mut columns = Columns::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        if let (false, Some(guard)) = (careful.contains(&request.id), guard_of(&request.new.effect))
        {
            chosen.push(i);
            columns.push(request, guard);
        }
    }
    let mut outcomes: Vec<Together> = (0..requests.len()).map(|_| None).collect();
    if chosen.len() < 2 {
        return Ok(outcomes);
    }
    let now = now_ms();
    let rows = sqlx::query(&BATCH_APPEND)
        .bind(&columns.conversation_id)
        .bind(&columns.preview)
        .bind(&columns.author_role)
        .bind(&columns.author_id)
        .bind(&columns.author_name)
        .bind(&columns.client_id)
        .bind(&columns.body)
        .bind(&columns.assignee)
        .bind(&columns.bot)
        .bind(now)
        .fetch_all(pool)
        .await?;
    match read_back(requests, &chosen, &rows, now) {
        Ok(stored) => {
            for (position, appended) in stored {
                outcomes[position] = Some(Ok(appended));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "a group append was stored but its rows could not be read back");
            for &position in &chosen {
                outcomes[position] = Some(Err(StoreError::Corrupt(e.to_string())));
            }
        }
    }
    Ok(outcomes)
}

/// [`BATCH_APPEND`]'s rows as each request's answer: its position in `requests` and what a
/// single append would have returned for it.
fn read_back(
    requests: &[Request],
    chosen: &[usize],
    rows: &[sqlx::postgres::PgRow],
    now: i64,
) -> StoreResult<Vec<(usize, Appended)>> {
    // Rows come in no particular order: sort them by position so that each conversation's
    // preview can be followed from what it was before the batch.
    let mut numbered = Vec::with_capacity(rows.len());
    for row in rows {
        let ord: i64 = row.try_get("ord")?;
        let position = usize::try_from(ord - 1)
            .ok()
            .and_then(|p| chosen.get(p).copied())
            .ok_or_else(|| StoreError::Corrupt(format!("batch position {ord}")))?;
        numbered.push((position, row));
    }
    numbered.sort_unstable_by_key(|(position, _)| *position);
    let mut previews: HashMap<ConversationId, Option<String>> = HashMap::new();
    let mut stored = Vec::with_capacity(numbered.len());
    for (position, row) in numbered {
        let request = &requests[position];
        let seq = super::seq_from(row.try_get("seq")?)?;
        let mut conversation = conversation_from_row(row)?;
        let preview = previews
            .entry(request.id.clone())
            .or_insert(row.try_get("before")?);
        if let EventBody::Message { text, .. } = &request.new.body {
            *preview = Some(preview_of(text));
        }
        // The conversation as this event left it, which is what a single append returns.
        conversation.last_seq = seq;
        conversation.preview = preview.clone();
        stored.push((
            position,
            Appended {
                event: Event {
                    conversation_id: request.id.clone(),
                    seq,
                    at: now,
                    author: request.new.author.clone(),
                    body: request.new.body.clone(),
                },
                conversation,
                duplicate: false,
            },
        ));
    }
    Ok(stored)
}

/// [`BATCH_APPEND`]'s arrays, one entry per plain append.
struct Columns {
    conversation_id: Vec<String>,
    preview: Vec<Option<String>>,
    author_role: Vec<&'static str>,
    author_id: Vec<Option<String>>,
    author_name: Vec<Option<String>>,
    client_id: Vec<Option<String>>,
    body: Vec<String>,
    assignee: Vec<Option<String>>,
    bot: Vec<bool>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            conversation_id: Vec::with_capacity(n),
            preview: Vec::with_capacity(n),
            author_role: Vec::with_capacity(n),
            author_id: Vec::with_capacity(n),
            author_name: Vec::with_capacity(n),
            client_id: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            assignee: Vec::with_capacity(n),
            bot: Vec::with_capacity(n),
        }
    }

    /// Adds a plain request, with its guard (see [`guard_of`]).
    fn push(&mut self, request: &Request, (assignee, bot): (Option<&str>, bool)) {
        let new = &request.new;
        self.conversation_id.push(request.id.0.clone());
        self.preview.push(match &new.body {
            EventBody::Message { text, .. } => Some(preview_of(text)),
            _ => None,
        });
        self.author_role.push(role_str(new.author.role));
        self.author_id.push(new.author.id.clone());
        self.author_name.push(new.author.name.clone());
        self.client_id
            .push(new.client_id.as_ref().map(|c| c.0.clone()));
        self.body.push(json(&new.body));
        self.assignee.push(assignee.map(str::to_owned));
        self.bot.push(bot);
    }
}
