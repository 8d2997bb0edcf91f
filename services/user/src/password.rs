//! Password hashing (argon2id, OWASP parameters: 19 MiB, 2 passes) on a fixed pool of
//! hashing threads, and the per-account limit on login attempts.
//!
//! A hash costs 19 MiB and tens of milliseconds of a core, so an anonymous flood of
//! sign-ups or logins must not decide how many run:
//! - `workers` threads hash, each with its own 19 MiB of memory blocks, allocated
//!   once and reused: memory is bounded by the pool, not by the flood;
//! - a job holds its worker until its hash is done — a request whose deadline passes
//!   or whose client goes away does not free the slot early — and a queued job whose
//!   caller is gone is skipped before it starts;
//! - at most `queue` jobs wait; beyond that a request is refused at once
//!   ([`HashError::Busy`], `RESOURCE_EXHAUSTED`).
//!
//! The gauges `password_hashes_running`, `password_hashes_queued` and
//! `password_hashes_running_max` (the most that ever ran at once) show it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

/// Why a hash was not computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full.
    #[error("too many password checks at once")]
    Busy,
    /// The hash failed (unreadable stored hash, broken pool).
    #[error("password hashing failed: {0}")]
    Failed(String),
}

enum Work {
    Hash(String),
    Verify(String, String),
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Answer, HashError>>,
}

enum Answer {
    Hashed(String),
    Verified(bool),
}

#[derive(Default)]
struct Load {
    running: AtomicUsize,
    queued: AtomicUsize,
    peak: AtomicUsize,
}

/// The hashing pool.
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    load: Arc<Load>,
}

impl Hasher {
    /// A pool of `workers` threads (at least one) with room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> anyhow::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let load = Arc::new(Load::default());
        for i in 0..workers.max(1) {
            let (rx, load) = (rx.clone(), load.clone());
            std::thread::Builder::new()
                .name(format!("weft-hash-{i}"))
                .spawn(move || worker(&rx, &load))?;
        }
        Ok(Self { jobs, load })
    }

    async fn run(&self, work: Work) -> Result<Answer, HashError> {
        let (reply, answer) = oneshot::channel();
        self.load.queued.fetch_add(1, Ordering::SeqCst);
        match self.jobs.try_send(Job { work, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                metrics::counter!("password_hashes_refused_total").increment(1);
                return Err(HashError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(HashError::Failed("the hashing pool stopped".into()));
            }
        }
        metrics::gauge!("password_hashes_queued")
            .set(self.load.queued.load(Ordering::SeqCst) as f64);
        answer
            .await
            .map_err(|_| HashError::Failed("the hashing worker dropped the job".into()))?
    }

    /// Hashes `password` into a PHC string.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        match self.run(Work::Hash(password)).await? {
            Answer::Hashed(phc) => Ok(phc),
            Answer::Verified(_) => Err(HashError::Failed("unexpected answer".into())),
        }
    }

    /// Whether `password` matches the PHC string `phc`.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, HashError> {
        match self.run(Work::Verify(password, phc)).await? {
            Answer::Verified(ok) => Ok(ok),
            Answer::Hashed(_) => Err(HashError::Failed("unexpected answer".into())),
        }
    }

    /// The most hashes that ever ran at once.
    pub fn peak(&self) -> usize {
        self.load.peak.load(Ordering::SeqCst)
    }
}

fn worker(jobs: &Mutex<std::sync::mpsc::Receiver<Job>>, load: &Load) {
    // This worker's memory, reused by every hash it computes.
    let mut blocks = vec![Block::default(); Params::DEFAULT.block_count()];
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        load.queued.fetch_sub(1, Ordering::SeqCst);
        if job.reply.is_closed() {
            // The caller is gone (deadline, cancellation): nothing to compute.
            continue;
        }
        let now = load.running.fetch_add(1, Ordering::SeqCst) + 1;
        load.peak.fetch_max(now, Ordering::SeqCst);
        metrics::gauge!("password_hashes_running").set(now as f64);
        metrics::gauge!("password_hashes_running_max").set(load.peak.load(Ordering::SeqCst) as f64);
        let answer = match &job.work {
            Work::Hash(password) => hash_with(&mut blocks, password).map(Answer::Hashed),
            Work::Verify(password, phc) => {
                verify_with(&mut blocks, password, phc).map(Answer::Verified)
            }
        };
        let now = load.running.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("password_hashes_running").set(now as f64);
        let _ = job.reply.send(answer);
    }
}

fn hash_with(blocks: &mut [Block], password: &str) -> Result<String, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let params = Params::DEFAULT;
    let salt = SaltString::generate(&mut OsRng);
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut blocks[..])
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

fn verify_with(blocks: &mut Vec<Block>, password: &str, phc: &str) -> Result<bool, HashError> {
    let failed = |e: &dyn std::fmt::Display| HashError::Failed(format!("stored hash: {e}"));
    let parsed = PasswordHash::new(phc).map_err(|e| failed(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| failed(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| failed(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| failed(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(HashError::Failed(
            "stored hash has no salt or output".into(),
        ));
    };
    let mut raw_salt = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut raw_salt).map_err(|e| failed(&e))?;
    if blocks.len() < params.block_count() {
        // A hash made with more memory than today's parameters (rare): grow once.
        blocks.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, &mut blocks[..])
        .map_err(|e| failed(&e))?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| failed(&e))? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_differ_and_read_what_the_library_writes() {
        let hasher = Hasher::new(2, 4).unwrap_or_else(|e| panic!("{e}"));
        let a = hasher
            .hash("correct horse 42".into())
            .await
            .unwrap_or_default();
        let b = hasher
            .hash("correct horse 42".into())
            .await
            .unwrap_or_default();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(
            hasher
                .verify("correct horse 42".into(), a.clone())
                .await
                .unwrap_or(false)
        );
        assert!(
            !hasher
                .verify("wrong horse 42".into(), a.clone())
                .await
                .unwrap_or(true)
        );
        // A hash made by argon2's own PasswordHasher verifies here, and ours there.
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"another 7 words", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(
            hasher
                .verify("another 7 words".into(), theirs)
                .await
                .unwrap_or(false)
        );
        let ours = PasswordHash::new(&a).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Argon2::default()
                .verify_password(b"correct horse 42", &ours)
                .is_ok()
        );
        assert!(
            hasher
                .verify("x".into(), "not a hash".into())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_pool_never_runs_more_than_its_workers() {
        let hasher = Hasher::new(1, 1).unwrap_or_else(|e| panic!("{e}"));
        let jobs: Vec<_> = (0..8)
            .map(|i| {
                let h = hasher.clone();
                tokio::spawn(async move { h.hash(format!("password number {i}")).await })
            })
            .collect();
        let mut busy = 0;
        for j in jobs {
            if matches!(j.await, Ok(Err(HashError::Busy))) {
                busy += 1;
            }
        }
        assert!(busy >= 1, "some were refused");
        assert_eq!(hasher.peak(), 1);
    }
}
