//! WAL checkpoints for the SQLite store, off the append path.
//!
//! Why: by default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages, on
//! the writer's connection. A checkpoint copies pages into the database file and syncs it, which
//! takes milliseconds, and every append queued behind that commit waits for it: measured, that
//! alone tripled the relay's p99 visitor→agent latency at 1,000 msg/s. So the writer never
//! checkpoints (`wal_autocheckpoint = 0`, set in [`super::SqliteStore::connect`]) and this task,
//! on a connection of its own, runs a `PASSIVE` checkpoint after commits, at most every
//! [`EVERY`] (and every [`IDLE_EVERY`] when nothing is committed, for writes that bypass the
//! committer). `PASSIVE` never waits for the writer or for readers; the writer rewinds the WAL by
//! itself once a checkpoint has caught up, so the file stays small in steady state. A crash
//! between checkpoints loses nothing: committed transactions are in the WAL, and the next open
//! replays it.
//!
//! Why often: a checkpoint's cost to the writer grows with what it copies and syncs. Checkpoints
//! one second apart at 5,000 msg/s each copied and synced ~60 MB, took 55–75 ms, and stalled
//! commits running beside them for 10–48 ms (the slow commits ended as the checkpoint did, in
//! its syncs); that was most of the relay's p99. Ten a second, each copies a tenth, and commits
//! slower than 8 ms went from 11–19 per 10 s run to 0–1: p99 visitor→agent 34 → 7–9 ms on the
//! same machine (BENCHMARKS.md).
//!
//! Under writes that never pause, "once a checkpoint has caught up" never comes: each `PASSIVE`
//! pass copies what was there when it began, the writer adds more meanwhile, and the WAL grows
//! without bound (measured: 70 MB/s at 5,000 msg/s, 1.3 GB after 20 s, latency climbing with
//! it). So once the WAL holds more than its limit, this task asks the writer thread to rewind it
//! ([`Signals::ask_rewind`]): between two batches, on its own connection and in its turn (see
//! [`super::writes`]), the writer thread runs one more `PASSIVE` pass ([`rewind`]), which copies
//! the few frames this task's last pass left while no commit can slip in, so the next write
//! transaction starts the WAL over from its beginning. That holds appends back for the pass's syncs (6–25 ms measured, every
//! ~256 MiB of WAL), where the `RESTART` checkpoint used before, which from its own connection
//! must also take the writer's lock and wait for every reader, held them back 13–50 ms. A reader
//! on an old snapshot can still keep the rewind from taking; past twice the limit this task
//! falls back to that `RESTART`, under a short busy timeout ([`RESTART_WAIT`]) so that a long
//! reader makes it give up until next time instead of stalling appends.
//!
//! Both count what they do in the store's WAL figures ([`Wal`], exported at `/metrics`): the
//! WAL's size at each pass, rewinds and `RESTART`s by outcome, failed passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::metrics::Wal;

/// Least time between two checkpoints while commits keep coming (see the module header: at
/// 5,000 msg/s, 50 ms and 100 ms measured alike, 250 ms already let stalls through, 1 s was the
/// bulk of the p99).
pub const EVERY: Duration = Duration::from_millis(100);

/// Time between two checkpoints when no group commit woke the task: writes that do not go
/// through the committer (sessions, assignments, settings) are checkpointed too.
pub const IDLE_EVERY: Duration = Duration::from_secs(1);

/// Default WAL size past which it is rewound (see the module header), in MiB. Each rewind holds
/// appends back for a few milliseconds: 64 MiB doubled p99 at 5,000 msg/s; 1,024 MiB (one
/// rewind every ~15 s at that rate) measured p99 7.8 against 9–11 ms in 20 s runs, for a WAL
/// file four times as large.
pub const DEFAULT_WAL_LIMIT_MIB: u32 = 256;

/// Least time between two rewinds asked of the writer thread. Each holds appends back for its syncs;
/// when a reader keeps one from taking, asking again at every checkpoint (ten a second) would
/// stall the writer ten times a second instead of once. At 5,000 msg/s a rewind is due every
/// ~3.5 s, so this never delays one that can take.
pub const REWIND_EVERY: Duration = Duration::from_secs(1);

/// Longest a `RESTART` checkpoint waits for the writer's transaction and for readers: it holds
/// appends back meanwhile, so it gives up early and tries again on the next tick.
pub const RESTART_WAIT: Duration = Duration::from_millis(100);

/// `PASSIVE` passes tried before a fallback `RESTART`: each copies what was appended during the
/// previous.
const CATCH_UP_PASSES: usize = 4;

/// Frames left uncopied below which a `RESTART` is cheap enough to run.
const FEW_FRAMES: i64 = 512;

/// What the writer thread and this task tell each other.
#[derive(Default)]
pub struct Signals {
    /// A group commit was made (the WAL grew): time for a checkpoint.
    pub committed: Notify,
    /// The WAL is past its limit: the writer thread should [`rewind`] it between two batches.
    rewind: AtomicBool,
}

impl Signals {
    /// Asks the writer thread to rewind the WAL (once, however often asked before it does).
    pub fn ask_rewind(&self) {
        self.rewind.store(true, Ordering::Release);
    }

    /// Whether a rewind was asked for since the last call.
    pub fn take_rewind(&self) -> bool {
        self.rewind.swap(false, Ordering::AcqRel)
    }
}

/// On the writer thread's connection, in its turn, between two transactions: copies what the WAL holds beyond the
/// last checkpoint, so that the next write transaction starts the WAL over (see the module
/// header). A reader still on an older snapshot keeps the copy short of the end, or one reading
/// at the moment of the next transaction keeps the WAL from starting over; then the WAL goes on
/// growing and the checkpointer asks again, a [`REWIND_EVERY`] later. If the checkpointer's own
/// pass is running, SQLite does nothing ("busy"): that passes in milliseconds, so the rewind is
/// asked again of the writer thread's next batch at once. Counted in `wal` as `done`, `blocked` or
/// `busy`.
pub fn rewind(writer: &rusqlite::Connection, signals: &Signals, wal: &Wal) {
    let passive = writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Progress {
            busy: row.get::<_, i64>(0)? != 0,
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    });
    match passive {
        Ok(p) if p.busy => {
            wal.count_rewind("busy");
            signals.ask_rewind();
        }
        Ok(p) if p.log != p.copied => {
            wal.count_rewind("blocked");
            tracing::debug!(
                frames = p.log,
                copied = p.copied,
                "WAL past its limit; a reader kept it from being rewound"
            );
        }
        Ok(_) => wal.count_rewind("done"),
        Err(e) => {
            wal.failures.inc();
            tracing::warn!(error = %e, "rewinding the SQLite WAL failed; retrying");
        }
    }
}

/// Stops the checkpointing task when the store's last handle is dropped.
pub struct Checkpointer {
    _stop: DropGuard,
}

/// What `PRAGMA wal_checkpoint` reports: frames in the WAL, and how many are in the database
/// file (-1 for both when the database is not in WAL mode).
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The checkpoint could not finish: a `RESTART` that gave up waiting, or another
    /// checkpoint was running (then `log` and `copied` are -1: nothing was done).
    busy: bool,
    log: i64,
    copied: i64,
}

async fn checkpoint(connection: &mut SqliteConnection, mode: &str) -> sqlx::Result<Progress> {
    let (busy, log, copied): (i64, i64, i64) =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
            .fetch_one(connection)
            .await?;
    Ok(Progress {
        busy: busy != 0,
        log,
        copied,
    })
}

/// One tick: a `PASSIVE` pass; past the limit, a rewind asked of the writer thread (at most every
/// [`REWIND_EVERY`], `last_ask` says when the last was); past twice the limit, the catch-up and
/// `RESTART` described above.
async fn tick(
    connection: &mut SqliteConnection,
    limit_frames: i64,
    page_size: i64,
    signals: &Signals,
    wal: &Wal,
    last_ask: &mut Option<Instant>,
) -> sqlx::Result<()> {
    let mut progress = checkpoint(connection, "PASSIVE").await?;
    if progress.busy {
        // The writer thread's rewind was running: nothing was read, try next time.
        return Ok(());
    }
    wal.bytes.set(progress.log.max(0) * page_size);
    if progress.log <= limit_frames {
        return Ok(());
    }
    if progress.log <= 2 * limit_frames {
        if last_ask.is_none_or(|at| at.elapsed() >= REWIND_EVERY) {
            signals.ask_rewind();
            *last_ask = Some(Instant::now());
        }
        return Ok(());
    }
    for _ in 0..CATCH_UP_PASSES {
        if progress.log - progress.copied <= FEW_FRAMES {
            break;
        }
        progress = checkpoint(connection, "PASSIVE").await?;
    }
    let (usual,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
        .fetch_one(&mut *connection)
        .await?;
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        RESTART_WAIT.as_millis()
    ))
    .execute(&mut *connection)
    .await?;
    let restarted = checkpoint(connection, "RESTART").await;
    // Back to the store's own timeout for the PASSIVE passes, which never block anyone.
    sqlx::query(&format!("PRAGMA busy_timeout = {usual}"))
        .execute(&mut *connection)
        .await?;
    let restarted = restarted?;
    wal.count_restart(if restarted.busy { "gave_up" } else { "done" });
    if restarted.busy {
        tracing::debug!(
            frames = restarted.log,
            "WAL past its limit, but a reader or the writer held on; rewinding next time"
        );
    }
    Ok(())
}

impl Checkpointer {
    /// Opens a connection with `options` and checkpoints through it after the commits that
    /// `signals` announces (at most every [`EVERY`]), or every [`IDLE_EVERY`], until the
    /// returned handle is dropped, having the WAL rewound once it holds more than
    /// `wal_limit_mib`. A failed checkpoint is logged and tried again next time: the WAL only
    /// grows meanwhile, nothing is lost.
    pub async fn start(
        options: &SqliteConnectOptions,
        wal_limit_mib: u32,
        signals: Arc<Signals>,
        wal: Wal,
    ) -> sqlx::Result<Self> {
        let mut connection = options.connect().await?;
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&mut connection)
            .await?;
        let page_size = page_size.max(512);
        let limit_frames = i64::from(wal_limit_mib) * 1024 * 1024 / page_size;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let mut last_ask = None;
            loop {
                // `Notify` keeps one permit: commits made while this task checkpointed or
                // rested wake it at once, a burst of them once.
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = signals.committed.notified() => {}
                    _ = tokio::time::sleep(IDLE_EVERY) => {}
                }
                let ticked = tick(
                    &mut connection,
                    limit_frames,
                    page_size,
                    &signals,
                    &wal,
                    &mut last_ask,
                )
                .await;
                if let Err(e) = ticked {
                    wal.failures.inc();
                    tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
                }
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tokio::time::sleep(EVERY) => {}
                }
            }
            let _ = connection.close().await;
        });
        Ok(Self {
            _stop: stop.drop_guard(),
        })
    }
}
