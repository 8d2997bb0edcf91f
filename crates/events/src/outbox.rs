//! The transactional outbox. A service writes its state change and the event row in
//! one database transaction ([`Outbox::enqueue`]); the [`Relay`] reads unsent rows in
//! order, publishes them with the idempotent producer (`acks=all`) and marks a row
//! sent only once the broker has acknowledged it. A crash anywhere in between leaves
//! the row unsent, so it is published again after restart: never lost, at worst
//! delivered twice, which the consumers' inbox absorbs.
//!
//! Replicas that share a database share its outbox: exactly one relay publishes at a
//! time, the holder of the `outbox-relay` [`Lease`]; the others stand by and take over
//! within [`RelayConfig::lease_ttl`] when it dies (at once when it stops cleanly). A
//! row is marked sent only under the holder's fencing token, so a relay that lost the
//! lease mid-round (paused past its expiry) marks nothing; what it published meanwhile
//! is published again by the new holder, and the consumers' inbox skips the copies.
//! A key's rows after one that failed are not marked sent either: the next round
//! sends them again after it.
//!
//! The relay wakes when this process commits outbox rows ([`RelayWaker`]), and on
//! PostgreSQL also when any replica does: a trigger notifies `weft_outbox` at commit
//! and the relay listens. Otherwise it polls ([`RelayConfig::poll_interval`]); a
//! replica standing by only polls, to take the lease over.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use sqlx::{AnyConnection, Row as _};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::DomainEvent;
use crate::db::{Backend, Database, now_micros};
use crate::envelope::Envelope;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use crate::lease::{Lease, replica_id};
use crate::producer::Producer;

/// The lease of a database's outbox relay.
pub const RELAY_LEASE: &str = "outbox-relay";

/// Writes events into the outbox inside a caller's transaction.
pub struct Outbox;

impl Outbox {
    /// Adds `event` to the outbox within the transaction `conn` belongs to. The event
    /// must carry metadata (see [`crate::EventContext::metadata`]).
    pub async fn enqueue<E: DomainEvent>(
        conn: &mut AnyConnection,
        event: &E,
    ) -> Result<(), EventsError> {
        let envelope = Envelope::of(event).map_err(|e| EventsError::CorruptOutboxRow {
            seq: 0,
            reason: e.to_string(),
        })?;
        let headers = serde_json::to_string(&envelope.headers()).map_err(|e| {
            EventsError::CorruptOutboxRow {
                seq: 0,
                reason: e.to_string(),
            }
        })?;
        sqlx::query(
            "INSERT INTO weft_outbox (event_id, topic, event_key, event_type, headers, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(envelope.id)
        .bind(E::TOPIC)
        .bind(event.key().to_owned())
        .bind(E::TYPE)
        .bind(headers)
        .bind(event.encode_to_vec())
        .bind(now_micros())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Unsent rows, and when the oldest of them was written (microseconds since the
    /// epoch).
    pub async fn waiting(db: &Database) -> Result<(i64, Option<i64>), EventsError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM weft_outbox WHERE sent_at IS NULL",
        )
        .fetch_one(db.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// Unsent rows: the relay's backlog.
    pub async fn backlog(db: &Database) -> Result<i64, EventsError> {
        Ok(Self::waiting(db).await?.0)
    }
}

/// Wakes the relay right after a transaction with outbox rows commits, so events go
/// out without waiting for the next poll.
#[derive(Clone, Default, Debug)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Tells the relay there is work.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Commits `tx`, which wrote outbox rows, and wakes the relay for them: what a
    /// command does last.
    pub async fn commit(&self, tx: crate::db::WriteTx) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }
}

/// The channel on which PostgreSQL announces committed outbox rows (see the
/// `outbox_notify` migration).
const OUTBOX_CHANNEL: &str = "weft_outbox";

/// Wakes the relay whenever a transaction with outbox rows commits on the PostgreSQL
/// server at `url`, in any replica, until `shutdown`. A lost connection is opened
/// again; notifications sent meanwhile are lost, and the relay's poll finds their
/// rows.
async fn wake_on_notifications(url: String, waker: RelayWaker, shutdown: CancellationToken) {
    let mut failures = 0u32;
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    loop {
        let next = async {
            let l = match listener.as_mut() {
                Some(l) => l,
                None => {
                    let mut l = sqlx::postgres::PgListener::connect(&url).await?;
                    l.listen(OUTBOX_CHANNEL).await?;
                    listener.insert(l)
                }
            };
            l.recv().await
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = next => match received {
                Ok(_) => {
                    failures = 0;
                    waker.wake();
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "listening for outbox rows of other replicas failed; the relay polls meanwhile");
                    listener = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(crate::consumer::backoff(failures)) => {}
                    }
                }
            }
        }
    }
}

/// How often a relay reports the outbox's backlog.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);
/// How long rows may wait unsent before a relay warns that events do not flow.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Reports the backlog every [`BACKLOG_EVERY`] until `shutdown`, whatever the relay's
/// round is doing (a round waits on the broker while it is away): `outbox_backlog`
/// (unsent rows) and `outbox_oldest_unsent_seconds`, and a warning while rows have
/// waited longer than [`STALL_AFTER`] (again every 30 s while it lasts), an all-clear
/// once they flow.
async fn report_backlog(db: Database, shutdown: CancellationToken) {
    let mut warned: Option<std::time::Instant> = None;
    loop {
        match Outbox::waiting(&db).await {
            Ok((rows, oldest)) => {
                let age = oldest.map_or(0.0, |at| (now_micros() - at).max(0) as f64 / 1e6);
                metrics::gauge!("outbox_backlog").set(rows as f64);
                metrics::gauge!("outbox_oldest_unsent_seconds").set(age);
                if age >= STALL_AFTER.as_secs_f64() {
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(30)) {
                        tracing::warn!(
                            rows,
                            oldest_seconds = age.round(),
                            "outbox rows are waiting to be published: is the broker reachable?"
                        );
                        warned = Some(std::time::Instant::now());
                    }
                } else if warned.take().is_some() {
                    tracing::info!(rows, "outbox rows are being published again");
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the outbox backlog failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
}

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

struct Pending {
    seq: i64,
    topic: String,
    key: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
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
                _ = self.waker.0.notified(), if holding => {}
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
        let rows = sqlx::query(
            "SELECT seq, topic, event_key, headers, payload FROM weft_outbox \
             WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(self.config.batch)
        .fetch_all(self.db.pool())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            let headers: String = row.try_get("headers")?;
            let headers =
                serde_json::from_str(&headers).map_err(|e| EventsError::CorruptOutboxRow {
                    seq,
                    reason: e.to_string(),
                })?;
            pending.push(Pending {
                seq,
                topic: row.try_get("topic")?,
                key: row.try_get("event_key")?,
                headers,
                payload: row.try_get("payload")?,
            });
        }
        if self.config.hang_before_publish {
            tracing::warn!(
                rows = pending.len(),
                "fault injection: hanging before publish"
            );
            std::future::pending::<()>().await;
        }

        let mut deliveries = Vec::with_capacity(pending.len());
        // One producer span per record, open until the broker's answer, in the trace
        // of the command that wrote the row; the record carries it on as its parent.
        let mut spans = Vec::with_capacity(pending.len());
        for p in &pending {
            let span = publish_span(p);
            let mut headers = OwnedHeaders::new_with_capacity(p.headers.len());
            for (k, v) in &traced_headers(&p.headers, &span) {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            match self
                .producer
                .send(&p.topic, Some(p.key.as_bytes()), Some(&p.payload), headers)
            {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    spans.push(span);
                }
                Err(e) => {
                    // Local queue full or the producer is failing: publish what is
                    // queued and leave the rest for the next round.
                    tracing::warn!(error = %e, "producer refused a record");
                    break;
                }
            }
        }

        // Every report is awaited at once; a row is marked only when its own report
        // says the broker has it.
        let reports = futures::future::join_all(deliveries).await;
        let (acked, first_error) =
            acknowledged_in_key_order(pending.iter().zip(reports).zip(spans).map(
                |((p, report), span)| {
                    let outcome = match report {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("producer dropped the delivery".to_owned()),
                    };
                    if let Err(e) = &outcome {
                        span.record("otel.status_code", "ERROR");
                        span.record("otel.status_description", e.as_str());
                    }
                    (p.seq, (p.topic.as_str(), p.key.as_str()), outcome)
                },
            ));
        if !acked.is_empty() {
            // Placeholders are written out because sqlx's Any query builder emits `?`,
            // which PostgreSQL does not accept.
            let list: Vec<String> = (0..acked.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE weft_outbox SET sent_at = $1, attempts = attempts + 1 WHERE seq IN ({})",
                list.join(", ")
            );
            let mut update = sqlx::query(&sql).bind(now_micros());
            for seq in &acked {
                update = update.bind(*seq);
            }
            // Through a write transaction: it takes its turn with the service's other
            // writers instead of retrying on SQLite's busy handler.
            let mut tx = self.db.begin().await?;
            if !lease.still_held(&mut tx, token).await? {
                tx.rollback().await?;
                tracing::warn!(
                    published = acked.len(),
                    "the relay lease was taken over during this round; its rows stay unsent for the new holder, whose copies the consumers skip"
                );
                return Ok(0);
            }
            update.execute(&mut *tx).await?;
            tx.commit().await?;
            metrics::counter!("outbox_published_total").increment(acked.len() as u64);
        }
        if let Some(error) = first_error {
            let failed: Vec<i64> = pending
                .iter()
                .map(|p| p.seq)
                .filter(|s| !acked.contains(s))
                .collect();
            tracing::warn!(%error, failed = failed.len(), "some outbox rows were not acknowledged");
            let _ = sqlx::query(
                "UPDATE weft_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = $2",
            )
            .bind(error.clone())
            .bind(failed.first().copied().unwrap_or_default())
            .execute(self.db.pool())
            .await;
            return Err(EventsError::Delivery(error));
        }
        Ok(acked.len())
    }
}

/// The producer span of publishing `row`: a child of the trace context its command
/// stored with it.
fn publish_span(row: &Pending) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {}", row.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = %row.topic,
        outbox.seq = row.seq,
    );
    let stored: std::collections::HashMap<String, String> = row
        .headers
        .iter()
        .filter(|(k, _)| crate::envelope::header::TRACE.contains(&k.as_str()))
        .cloned()
        .collect();
    weft_kit::telemetry::set_parent_from(&span, &weft_kit::telemetry::MapCarrier(stored));
    span
}

/// `headers` with the trace context replaced by `span`'s, so that a consumer's span is
/// a child of the publish. A row stored without a trace context gets none.
fn traced_headers(headers: &[(String, String)], span: &tracing::Span) -> Vec<(String, String)> {
    let trace = crate::envelope::header::TRACE;
    if !headers.iter().any(|(k, _)| trace.contains(&k.as_str())) {
        return headers.to_vec();
    }
    let mut carrier = weft_kit::telemetry::MapCarrier::default();
    weft_kit::telemetry::inject_from(span, &mut carrier);
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !trace.contains(&k.as_str()) || !carrier.0.contains_key(k))
        .cloned()
        .collect();
    let mut injected: Vec<(String, String)> = carrier.0.into_iter().collect();
    injected.sort();
    out.extend(injected);
    out
}

/// The rows of a round that may be marked sent, and the first error: each row the
/// broker acknowledged, unless an earlier row of its (topic, key) failed, since that
/// key's rows must reach the topic in order (they are all sent again next round).
fn acknowledged_in_key_order<'a>(
    outcomes: impl Iterator<Item = (i64, (&'a str, &'a str), Result<(), String>)>,
) -> (Vec<i64>, Option<String>) {
    let mut acked = Vec::new();
    let mut first_error = None;
    let mut held_back: HashSet<(&str, &str)> = HashSet::new();
    for (seq, key, outcome) in outcomes {
        match outcome {
            Ok(()) if !held_back.contains(&key) => acked.push(seq),
            Ok(()) => {}
            Err(e) => {
                held_back.insert(key);
                first_error.get_or_insert(e);
            }
        }
    }
    (acked, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_row_holds_back_the_later_rows_of_its_key_only() {
        let t = "order-events";
        let rows = vec![
            (1, (t, "o-1"), Ok(())),
            (2, (t, "o-2"), Err("timed out".to_owned())),
            (3, (t, "o-1"), Ok(())),
            (4, (t, "o-2"), Ok(())),
            (5, ("user-events", "o-2"), Ok(())),
            (6, (t, "o-3"), Err("too large".to_owned())),
            (7, (t, "o-2"), Ok(())),
        ];
        let (acked, error) = acknowledged_in_key_order(rows.into_iter());
        assert_eq!(acked, vec![1, 3, 5]);
        assert_eq!(error.as_deref(), Some("timed out"));
    }

    #[test]
    fn a_published_record_carries_its_publish_span_in_the_stored_trace() {
        let _telemetry = weft_kit::telemetry::init("outbox-test", &Default::default()).unwrap();
        let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let row = Pending {
            seq: 7,
            topic: "user-events".into(),
            key: "u1".into(),
            headers: vec![
                ("ce_type".into(), "weft.user.v1.UserSignedUp".into()),
                ("traceparent".into(), stored.into()),
            ],
            payload: Vec::new(),
        };
        let span = publish_span(&row);
        let sent = traced_headers(&row.headers, &span);
        assert!(sent.contains(&("ce_type".to_owned(), "weft.user.v1.UserSignedUp".to_owned())));
        let parents: Vec<&str> = sent
            .iter()
            .filter(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(parents.len(), 1, "{sent:?}");
        // The same trace, under the publish span instead of the stored one.
        assert!(
            parents[0].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent:?}"
        );
        assert_ne!(parents[0], stored);

        // A row stored without a trace context goes out as it was stored.
        let bare = vec![("ce_type".to_owned(), "weft.user.v1.UserSignedUp".to_owned())];
        assert_eq!(traced_headers(&bare, &span), bare);
    }
}
