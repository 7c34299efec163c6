//! Password verification on a small, fixed pool of threads, so that what logins cost the relay
//! is bounded whatever strangers send.
//!
//! An argon2 verification needs its memory cost in RAM (19 MiB with the default parameters).
//! Run on tokio's blocking pool, every concurrent login took a fresh thread and a fresh 19 MiB,
//! and glibc kept each thread's arena afterwards: 40 concurrent failed logins grew the relay by
//! gigabytes. Here `workers` threads each own one block buffer, reused for every verification,
//! so the memory is `workers × m_cost` for the life of the relay. At most `workers + queue`
//! verifications are admitted at once; a login that cannot get a slot within `wait` is told the
//! relay is busy (503) instead of piling up.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, Semaphore};

/// Largest memory cost (KiB) a stored hash may ask for; a bigger one is refused, not allocated.
const MAX_M_COST_KIB: u32 = 256 * 1024;

/// The verification pool.
pub struct Hasher {
    /// Jobs for the workers; its capacity is the number of admitted jobs, so sends never block.
    jobs: mpsc::SyncSender<Job>,
    /// Admission: one permit per job admitted (running or queued).
    slots: Arc<Semaphore>,
    /// How long a login may wait for a slot before it is told the relay is busy.
    wait: Duration,
}

/// No slot became free in time.
#[derive(Debug, thiserror::Error)]
#[error("too many logins are being checked")]
pub struct Busy;

struct Job {
    password: String,
    phc: String,
    reply: oneshot::Sender<bool>,
}

impl Hasher {
    /// Starts `workers` threads (at least one) admitting at most `queue` waiting jobs besides the
    /// running ones. The threads end when the `Hasher` is dropped.
    pub fn start(workers: usize, queue: usize, wait: Duration) -> std::io::Result<Self> {
        let workers = workers.max(1);
        let admitted = workers + queue;
        let (jobs, rx) = mpsc::sync_channel::<Job>(admitted);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("parley-argon2-{n}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Self {
            jobs,
            slots: Arc::new(Semaphore::new(admitted)),
            wait,
        })
    }

    /// Whether `password` matches the PHC string `phc` (false for a malformed one).
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, Busy> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                password,
                phc,
                reply,
            })
            .map_err(|_| Busy)?;
        let ok = answer.await.unwrap_or(false);
        drop(permit);
        Ok(ok)
    }
}

/// One worker: takes jobs until the pool is dropped, reusing one block buffer.
fn work(rx: &Mutex<mpsc::Receiver<Job>>) {
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let ok = verify_with(&mut blocks, &job.password, &job.phc);
        let _ = job.reply.send(ok);
    }
}

/// Verifies `password` against `phc` in `blocks` (grown to the hash's memory cost, never shrunk),
/// comparing the outputs in constant time.
fn verify_with(blocks: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_M_COST_KIB {
        tracing::warn!(
            m_cost = params.m_cost(),
            "stored password hash too costly: refused"
        );
        return false;
    }
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    blocks.resize(params.block_count(), Block::default());
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..])
        .is_err()
    {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_password;

    #[tokio::test]
    async fn verifies_with_reused_memory() {
        let hasher = Hasher::start(1, 2, Duration::from_secs(30)).expect("threads");
        let phc = hash_password("correct horse").expect("hash");
        assert!(hasher
            .verify("correct horse".into(), phc.clone())
            .await
            .expect("slot"));
        assert!(!hasher
            .verify("wrong".into(), phc.clone())
            .await
            .expect("slot"));
        // Same worker, same buffer, again right.
        assert!(hasher
            .verify("correct horse".into(), phc)
            .await
            .expect("slot"));
        assert!(!hasher
            .verify("x".into(), "not a hash".into())
            .await
            .expect("slot"));
    }

    #[tokio::test]
    async fn a_full_pool_says_busy() {
        // No queue, one worker, no patience: while one verification runs, the next is refused.
        let hasher = Arc::new(Hasher::start(1, 0, Duration::from_millis(1)).expect("threads"));
        let phc = hash_password("pw").expect("hash");
        let permit = hasher.slots.clone().acquire_owned().await.expect("permit");
        let refused = hasher.verify("pw".into(), phc.clone()).await;
        assert!(refused.is_err(), "no slot: busy");
        drop(permit);
        assert!(hasher.verify("pw".into(), phc).await.expect("slot"));
    }
}
