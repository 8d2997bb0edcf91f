//! The relay: rounds that publish the unsent rows, one replica at a time (the holder
//! of the relay lease), between which it waits to be woken or for its poll.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backlog::report_backlog;
use super::waker::{RelayWaker, wake_on_notifications};
use super::{pending, publish};
use crate::db::{Backend, Database, now_micros};
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use crate::lease::{Lease, replica_id};
use crate::producer::Producer;

/// The lease of a database's outbox relay.
pub const RELAY_LEASE: &str = "outbox-relay";

/// Tuning of the relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows published per round.
    pub batch: i64,
    /// Longest wait between rounds when nobody wakes the relay.
    pub poll_interval: Duration,
    /// Fault injection for crash tests: after reading a batch, hang before
    /// publishing it (a test then kills the process).
    pub hang_before_publish: bool,
    /// How long the relay lease lasts without renewal: the longest a dead holder's
    /// replicas wait before one of them publishes instead.
    pub lease_ttl: Duration,
    /// This replica's name in the lease (default: [`replica_id`]).
    pub replica: String,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            poll_interval: Duration::from_millis(500),
            hang_before_publish: false,
            lease_ttl: Duration::from_secs(10),
            replica: replica_id(),
        }
    }
}

/// Publishes outbox rows to Kafka.
pub struct Relay {
    db: Database,
    producer: Producer,
    waker: RelayWaker,
    config: RelayConfig,
    lease: tokio::sync::Mutex<Lease>,
}

impl Relay {
    /// A relay for `db` publishing to `kafka` as `client_id`.
    pub fn new(
        db: Database,
        kafka: &KafkaArgs,
        client_id: &str,
        config: RelayConfig,
    ) -> Result<Self, EventsError> {
        let producer = Producer::new(kafka, client_id)?;
        let lease = Lease::new(db.clone(), RELAY_LEASE, &config.replica, config.lease_ttl);
        Ok(Self {
            db,
            producer,
            waker: RelayWaker::default(),
            config,
            lease: tokio::sync::Mutex::new(lease),
        })
    }

    /// The handle that wakes this relay.
    pub fn waker(&self) -> RelayWaker {
        self.waker.clone()
    }

    /// Publishes until `shutdown`, then finishes the round in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        // On PostgreSQL, rows other replicas write wake this relay too.
        let listener = (self.db.backend() == Backend::Postgres).then(|| {
            tokio::spawn(wake_on_notifications(
                self.db.url().to_owned(),
                self.waker.clone(),
                shutdown.clone(),
            ))
        });
        let reporter = tokio::spawn(report_backlog(self.db.clone(), shutdown.clone()));
        let mut failures: u32 = 0;
        loop {
            let published = match self.publish_pending().await {
                Ok(n) => {
                    failures = 0;
                    n
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "outbox relay round failed");
                    0
                }
            };
            if published as i64 >= self.config.batch {
                continue; // more rows are waiting
            }
            let wait = if failures > 0 {
                crate::consumer::backoff(failures)
            } else {
                self.config.poll_interval
            };
            // Standing by (another replica holds the lease), a wake would only cost a
            // write to the lease table: only the poll tries to take over.
            let holding = self.lease.lock().await.token().is_some();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.notified(), if holding => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Another replica takes over at its next round, not after the lease expires.
        self.lease.lock().await.release().await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        let _ = reporter.await;
        tracing::info!("outbox relay stopped");
    }

    /// One round: publishes up to a batch of unsent rows, in order, and marks those the
    /// broker acknowledged. Returns how many were published: none when another replica
    /// holds the relay lease.
    pub async fn publish_pending(&self) -> Result<usize, EventsError> {
        let mut lease = self.lease.lock().await;
        let Some(token) = lease.ensure().await? else {
            return Ok(0);
        };
        let pending = pending::fetch(&self.db, self.config.batch).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        if self.config.hang_before_publish {
            tracing::warn!(
                rows = pending.len(),
                "fault injection: hanging before publish"
            );
            std::future::pending::<()>().await;
        }
        let (deliveries, spans) = publish::send(&self.producer, &pending);
        let (acked, first_error) = publish::acknowledged(&pending, deliveries, spans).await;
        if !acked.is_empty() && !self.mark_sent(&lease, token, &acked).await? {
            return Ok(0);
        }
        if let Some(error) = first_error {
            let failed: Vec<i64> = pending
                .iter()
                .map(|p| p.seq)
                .filter(|s| !acked.contains(s))
                .collect();
            tracing::warn!(%error, failed = failed.len(), "some outbox rows were not acknowledged");
            pending::note_failure(
                &self.db,
                failed.first().copied().unwrap_or_default(),
                &error,
            )
            .await;
            return Err(EventsError::Delivery(error));
        }
        Ok(acked.len())
    }

    /// Marks the rows `acked` sent, fenced by the relay lease's `token`: `false`, and
    /// nothing marked, when another replica took the lease over during the round.
    async fn mark_sent(
        &self,
        lease: &Lease,
        token: i64,
        acked: &[i64],
    ) -> Result<bool, EventsError> {
        let now = now_micros();
        // Through a write transaction: it takes its turn with the service's other
        // writers instead of retrying on SQLite's busy handler.
        let mut tx = self.db.begin().await?;
        if !lease.still_held(&mut tx, token).await? {
            tx.rollback().await?;
            tracing::warn!(
                published = acked.len(),
                "the relay lease was taken over during this round; its rows stay unsent for the new holder, whose copies the consumers skip"
            );
            return Ok(false);
        }
        pending::mark_sent(&mut tx, now, acked).await?;
        tx.commit().await?;
        metrics::counter!("outbox_published_total").increment(acked.len() as u64);
        Ok(true)
    }
}
