//! The hand-over between callers of [`Store::append`](super::Store::append) and an engine's
//! group-commit task (SQLite's writer thread, PostgreSQL's batcher): a caller queues its append
//! with a one-shot reply and waits for the commit that stored it; the task takes whatever is
//! waiting as one batch. SQLite's writer thread hands what it does not store itself on to a
//! second task the same way ([`Forward`]).

use protocol::ConversationId;
use tokio::sync::{mpsc, oneshot};

use super::{Appended, NewEvent, StoreError, StoreResult};
use crate::metrics::GroupCommit;

/// Appends waiting for their engine's task. Callers past it wait to enqueue (backpressure on the
/// sockets that send); they are never refused.
const QUEUE: usize = 4096;

/// Most appends in one batch. Large enough that a burst is stored in a few commits, small enough
/// that the first caller of a batch is not kept long by the last.
pub(super) const MAX_BATCH: usize = 256;

/// One caller's append, and where its outcome goes.
pub(super) struct Request {
    pub(super) id: ConversationId,
    pub(super) new: NewEvent,
    pub(super) reply: oneshot::Sender<StoreResult<Appended>>,
}

/// The callers' side: cloned into every handle of the store. When the last one is dropped the
/// task's queue closes and the task ends.
#[derive(Clone)]
pub(super) struct Appends {
    requests: mpsc::Sender<Request>,
    /// What the task stored together, counted by the task (for `/metrics`).
    group: GroupCommit,
}

impl Appends {
    /// A new hand-over: the callers' side, and the task's batches and counters.
    pub(super) fn channel() -> (Self, Batches, GroupCommit) {
        let (requests, queue) = mpsc::channel(QUEUE);
        let group = GroupCommit::default();
        (
            Self {
                requests,
                group: group.clone(),
            },
            Batches { queue },
            group,
        )
    }

    /// How many appends the task stored together.
    pub(super) fn group_commit(&self) -> GroupCommit {
        self.group.clone()
    }

    /// Stores one event (see [`super::Store::append`]); returns after its commit. A task that
    /// is gone (the store closed) answers as a closed pool.
    pub(super) async fn append(&self, id: &ConversationId, new: NewEvent) -> StoreResult<Appended> {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            id: id.clone(),
            new,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        outcome
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?
    }
}

/// A hand-over from one group-commit task to another, with the same queue bound: requests are
/// moved on, still waiting for their reply.
pub(super) fn forward() -> (Forward, Batches) {
    let (requests, queue) = mpsc::channel(QUEUE);
    (Forward { requests }, Batches { queue })
}

/// The sending side of [`forward`], for a thread outside the async runtime.
pub(super) struct Forward {
    requests: mpsc::Sender<Request>,
}

impl Forward {
    /// Hands `request` on, waiting while the receiving task's queue is full. A receiving task
    /// that is gone (the store closed) is answered for, as a closed pool: never dropped silently.
    pub(super) fn blocking_send(&self, request: Request) {
        if let Err(mpsc::error::SendError(request)) = self.requests.blocking_send(request) {
            let _ = request
                .reply
                .send(Err(StoreError::Database(sqlx::Error::PoolClosed)));
        }
    }
}

/// The task's side: the appends waiting, taken as batches.
pub(super) struct Batches {
    queue: mpsc::Receiver<Request>,
}

impl Batches {
    /// [`Batches::next`] for a thread outside the async runtime: waits for the first append,
    /// then takes what else is waiting.
    pub(super) fn blocking_next(&mut self) -> Option<Vec<Request>> {
        let first = self.queue.blocking_recv()?;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match self.queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Every append waiting, at least one (waits for it) and at most [`MAX_BATCH`]; `None` once
    /// every handle of the store is gone.
    pub(super) async fn next(&mut self) -> Option<Vec<Request>> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        (self.queue.recv_many(&mut batch, MAX_BATCH).await > 0).then_some(batch)
    }
}
