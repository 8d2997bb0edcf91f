//! Pruning what the backbone no longer needs: inbox rows, sent outbox rows (and a
//! service's own tables, e.g. delivered notification triggers) older than the
//! retention, deleted a small batch per write transaction with a pause between, so
//! a consumer or the relay waiting for the write lock waits for one short batch at
//! most.
//!
//! The inbox is what keeps a record read twice from being applied twice. Its
//! retention (7 days by default) is the broker's: a record that could still be read
//! again (a rewind, `--reset-offsets earliest`) is still remembered.
//!
//! Replicas sharing a database prune one at a time: the holder of the `pruning`
//! lease, renewed at every batch. When it stops, another replica prunes at its next
//! pass; when it dies, once the lease has expired (twice the interval).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::{Database, now_micros};
use crate::error::EventsError;
use crate::lease::{Lease, replica_id};

/// Retention flags every service shares.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// How long inbox rows and sent outbox rows are kept (match the broker's
    /// retention: a record read again within it is still recognised).
    #[arg(long, env = "WEFT_RETENTION", default_value = "7d", value_parser = retention)]
    pub retention: Duration,
    /// How often old rows are pruned.
    #[arg(long, env = "WEFT_PRUNE_INTERVAL", default_value = "10m", value_parser = weft_kit::config::positive_duration)]
    pub prune_interval: Duration,
}

/// The shortest `--retention`: an inbox pruned sooner would not recognise a record
/// delivered again after a restart or a rebalance, and apply it twice.
const MIN_RETENTION: Duration = Duration::from_secs(60);

fn retention(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < MIN_RETENTION {
        return Err(format!(
            "must be at least {}: inbox rows pruned sooner could not recognise a record delivered again, which would be applied twice",
            humantime::format_duration(MIN_RETENTION)
        ));
    }
    Ok(d)
}

impl Default for RetentionArgs {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
        }
    }
}

/// One kind of row to prune: a `DELETE` that takes the cutoff (µs since the epoch)
/// as `$1` and the batch size as `$2`, and deletes at most that many rows.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What the rows are, for logs and the `rows_pruned_total` metric.
    pub name: &'static str,
    /// The statement.
    pub delete: String,
    /// How long these rows are kept, when not `--retention` (rows that are not
    /// the backbone's own, e.g. a service's time series).
    pub keep: Option<Duration>,
}

impl Rule {
    /// Inbox rows of every consumer group processed before the cutoff.
    pub fn inbox() -> Self {
        Self {
            name: "inbox",
            delete: "DELETE FROM weft_inbox WHERE (consumer_group, event_id) IN \
                     (SELECT consumer_group, event_id FROM weft_inbox \
                      WHERE processed_at < $1 LIMIT $2)"
                .to_owned(),
            keep: None,
        }
    }

    /// Outbox rows the broker acknowledged before the cutoff (unsent rows are never
    /// pruned).
    pub fn sent_outbox() -> Self {
        Self {
            name: "outbox",
            delete: "DELETE FROM weft_outbox WHERE seq IN \
                     (SELECT seq FROM weft_outbox \
                      WHERE sent_at IS NOT NULL AND sent_at < $1 LIMIT $2)"
                .to_owned(),
            keep: None,
        }
    }
}

/// Rows deleted per transaction.
pub const BATCH: i64 = 500;

/// The lease under which one replica of a service prunes its database.
pub const PRUNING_LEASE: &str = "pruning";

/// Prunes `rules` every `interval` until `shutdown`, on one replica at a time.
pub struct Pruner {
    db: Database,
    rules: Vec<Rule>,
    args: RetentionArgs,
    lease: tokio::sync::Mutex<Lease>,
}

impl Pruner {
    /// The backbone's own rules ([`Rule::inbox`], [`Rule::sent_outbox`]) and `more`,
    /// pruned by this replica ([`replica_id`]) while it holds the pruning lease.
    pub fn new(db: Database, args: RetentionArgs, more: Vec<Rule>) -> Self {
        Self::for_replica(db, args, more, &replica_id())
    }

    /// Like [`Self::new`], as the replica named `replica`.
    pub fn for_replica(db: Database, args: RetentionArgs, more: Vec<Rule>, replica: &str) -> Self {
        let mut rules = vec![Rule::inbox(), Rule::sent_outbox()];
        rules.extend(more);
        // Renewed at every pass and every batch: it lapses only when the holder has
        // missed a whole interval, after which another replica prunes instead.
        let ttl = args
            .prune_interval
            .saturating_mul(2)
            .max(Duration::from_secs(30));
        let lease = Lease::new(db.clone(), PRUNING_LEASE, replica, ttl);
        Self {
            db,
            rules,
            args,
            lease: tokio::sync::Mutex::new(lease),
        }
    }

    /// One pass, when this replica holds the pruning lease: every rule until it has
    /// nothing older than the cutoff; the rows deleted per rule. Empty when another
    /// replica prunes (or took the lease over during the pass: it finishes the job).
    pub async fn prune_once(&self) -> Result<Vec<(&'static str, u64)>, EventsError> {
        let mut lease = self.lease.lock().await;
        let mut done = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let keep = rule.keep.unwrap_or(self.args.retention);
            let cutoff =
                now_micros().saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
            let mut total = 0u64;
            loop {
                // Deleting rows past the retention twice is harmless; the lease saves
                // the work, so no fencing token goes with the statement.
                if lease.ensure().await?.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.db.begin().await?;
                let deleted = sqlx::query(&rule.delete)
                    .bind(cutoff)
                    .bind(BATCH)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                total += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
                // Let the writers that queued meanwhile go first.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            metrics::counter!("rows_pruned_total", "table" => rule.name).increment(total);
            if total > 0 {
                tracing::info!(
                    rows = total,
                    table = rule.name,
                    "pruned rows past the retention"
                );
            }
            done.push((rule.name, total));
        }
        Ok(done)
    }

    /// Prunes now and then every interval until `shutdown`; a failed pass is logged and tried at
    /// the next interval.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.prune_once().await {
                tracing::warn!(error = %e, "pruning failed; trying again at the next interval");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.args.prune_interval) => {}
            }
        }
        self.release().await;
    }

    /// Gives the pruning lease back (a clean stop), so another replica prunes at its
    /// next pass.
    pub async fn release(&self) {
        self.lease.lock().await.release().await;
    }
}
