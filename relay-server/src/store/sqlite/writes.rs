//! Whose turn it is to write: the SQLite store's two writer connections (sqlx's, for everything
//! but plain appends, and the writer thread's, see [`super::writer`]) take turns through one
//! fair lock.
//!
//! Why a lock of our own rather than SQLite's: a connection that finds the database locked
//! waits in SQLite's busy handler, which sleeps and retries (1, 2, 5 … 100 ms) and gets the lock
//! only if it happens to be free when it wakes. Under load the writer thread commits back to
//! back, so an agent's `take` or a new session could sleep for seconds, and the writer thread
//! itself would sleep whole milliseconds behind them. The lock queues both sides in order, each
//! for one transaction, so neither ever meets `SQLITE_BUSY` from the other. (Other processes
//! opening the file, and the checkpointer, still meet the busy handler as before.)

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{Mutex, MutexGuard, OwnedMutexGuard};

use crate::store::StoreResult;

/// sqlx's writer connection (a pool of one) and the turn it shares with the writer thread.
#[derive(Clone)]
pub(super) struct Writes {
    pool: SqlitePool,
    turn: Turn,
}

/// The lock both writers take for each transaction (FIFO: tokio's mutex is fair).
#[derive(Clone, Default)]
pub(super) struct Turn(Arc<Mutex<()>>);

impl Turn {
    /// Waits for the turn from a thread outside the async runtime (the writer thread).
    pub(super) fn blocking(&self) -> MutexGuard<'_, ()> {
        self.0.blocking_lock()
    }

    async fn take(&self) -> OwnedMutexGuard<()> {
        self.0.clone().lock_owned().await
    }
}

/// sqlx's writer connection, held with the turn: deref it to run statements.
pub(super) struct Held {
    connection: PoolConnection<Sqlite>,
    /// Released after the connection is handed back to its pool (fields drop in order).
    _turn: OwnedMutexGuard<()>,
}

impl Writes {
    pub(super) fn new(pool: SqlitePool, turn: Turn) -> Self {
        Self { pool, turn }
    }

    /// Waits for the turn, then for the connection. Always in this order (the writer thread
    /// takes only the turn), so no two writers can each hold what the other waits for.
    pub(super) async fn acquire(&self) -> StoreResult<Held> {
        let turn = self.turn.take().await;
        let connection = self.pool.acquire().await?;
        Ok(Held {
            connection,
            _turn: turn,
        })
    }

    /// Closes the pool (see [`super::SqliteStore::close`]).
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

impl Deref for Held {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for Held {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}
