//! The consumer runtime: at-least-once delivery from Kafka, effect-once handling.
//!
//! For every record: parse the CloudEvents envelope, dispatch on `ce_type` (never by
//! trying to parse the payload as one type after another), and run the handler inside
//! a database transaction that also inserts an inbox row keyed by (consumer group,
//! event id). A duplicate finds its inbox row and is skipped. Only after that
//! transaction commits is the record's offset stored for commit, and records are
//! processed in order, so the committed offset never passes an unprocessed record.
//!
//! Records that can never succeed (malformed envelope, unknown type, undecodable or
//! invalid payload, a handler's permanent error) go to the dead-letter topic before
//! the offset moves. Transient failures (database or broker down) are retried in place
//! with jittered exponential backoff; the consumer stops fetching meanwhile, so
//! nothing is skipped and nothing spins.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng as _;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{ClientContext, Message as _, Statistics};
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::EventsError;
use crate::catalog::{self, DomainEvent};
use crate::db::{Database, now_micros};
use crate::dlq::DeadLetters;
use crate::envelope::{Envelope, EventContext};
use crate::kafka::KafkaArgs;

/// Why a handler did not apply an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied (invalid content): it goes to the dead-letter
    /// topic.
    #[error("permanent: {0}")]
    Permanent(String),
    /// Something the event needs is unavailable now: retried with backoff.
    #[error("transient: {0}")]
    Transient(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Transient(format!("database: {e}"))
    }
}

impl From<EventsError> for HandlerError {
    fn from(e: EventsError) -> Self {
        Self::Transient(e.to_string())
    }
}

/// One record as a handler sees it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The CloudEvents attributes.
    pub envelope: Envelope,
    /// Topic it came from.
    pub topic: String,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record key.
    pub key: Option<String>,
    /// The protobuf payload.
    pub payload: Vec<u8>,
}

impl Received {
    /// Decodes the payload as `E`, which must be the type the envelope names, and
    /// checks its metadata agrees with the envelope. Any mismatch is permanent.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, HandlerError> {
        if self.envelope.event_type != E::TYPE {
            return Err(HandlerError::Permanent(format!(
                "handler for {} got {}",
                E::TYPE,
                self.envelope.event_type
            )));
        }
        let event = E::decode(self.payload.as_slice())
            .map_err(|e| HandlerError::Permanent(format!("undecodable {}: {e}", E::TYPE)))?;
        let meta = event
            .metadata()
            .ok_or_else(|| HandlerError::Permanent("payload has no metadata".into()))?;
        if meta.event_id != self.envelope.id {
            return Err(HandlerError::Permanent(format!(
                "payload event id {:?} differs from ce_id {:?}",
                meta.event_id, self.envelope.id
            )));
        }
        Ok(event)
    }

    /// The context of events this record causes: same correlation, caused by it.
    pub fn context(&self) -> EventContext {
        EventContext {
            correlation_id: if self.envelope.correlation_id.is_empty() {
                self.envelope.id.clone()
            } else {
                self.envelope.correlation_id.clone()
            },
            causation_id: self.envelope.id.clone(),
        }
    }
}

/// Applies one event type inside the runtime's transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `tx`, the transaction that also records it in the inbox.
    /// Writing outbox rows through `tx` makes reactions atomic with the effect.
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError>;
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's effect committed.
    Applied,
    /// The inbox already had it.
    Duplicate,
    /// A known event type this consumer does not handle.
    Ignored,
    /// Sent to the dead-letter topic.
    DeadLettered,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

type AfterCommit = Arc<dyn Fn(&Received, Outcome) + Send + Sync>;

/// A consumer group's runtime: subscriptions, handlers and the processing loop.
pub struct Consumer {
    group: String,
    kafka: KafkaArgs,
    db: Database,
    topics: BTreeSet<String>,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    fallback: Option<Arc<dyn Handler>>,
    after: Option<AfterCommit>,
}

impl Consumer {
    /// A consumer in `group` recording its inbox in `db`.
    pub fn new(group: &str, kafka: KafkaArgs, db: Database) -> Self {
        Self {
            group: group.to_owned(),
            kafka,
            db,
            topics: BTreeSet::new(),
            handlers: HashMap::new(),
            fallback: None,
            after: None,
        }
    }

    /// Handles events of type `E` with `handler`, subscribing to `E`'s topic.
    pub fn on<E: DomainEvent>(mut self, handler: impl Handler) -> Self {
        self.topics.insert(E::TOPIC.to_owned());
        self.handlers.insert(E::TYPE, Arc::new(handler));
        self
    }

    /// Also subscribes to `topic` (for consumers that use [`Self::on_any`]).
    pub fn subscribe(mut self, topic: &str) -> Self {
        self.topics.insert(topic.to_owned());
        self
    }

    /// Handles every catalogued event type that has no specific handler.
    pub fn on_any(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Called after each record is settled (e.g. to wake the outbox relay or notify
    /// subscribers).
    pub fn after_commit(mut self, f: impl Fn(&Received, Outcome) + Send + Sync + 'static) -> Self {
        self.after = Some(Arc::new(f));
        self
    }

    /// Consumes until `shutdown`, then commits the stored offsets and leaves the group.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let client_id = format!("{}-{}", self.group, std::process::id());
        let mut config = self.kafka.consumer(&client_id, &self.group);
        config.set("statistics.interval.ms", "10000");
        let consumer: StreamConsumer<LagReporter> = config.create_with_context(LagReporter {
            group: self.group.clone(),
        })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dlq = DeadLetters::new(&self.kafka, &self.group)?;
        tracing::info!(group = %self.group, ?topics, "consumer started");

        let mut failures = 0u32;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = consumer.recv() => msg,
            };
            let msg = match msg {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "consumer fetch failed");
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            let Some((received, outcome)) = self.process(&msg, &dlq, &shutdown).await else {
                break; // shutdown during a retry: the record is redelivered later
            };
            if let Err(e) = consumer.store_offset_from_message(&msg) {
                tracing::warn!(error = %e, "storing the offset failed; the record may be redelivered");
            }
            metrics::counter!("consumer_records_total", "group" => self.group.clone(), "outcome" => outcome.as_str())
                .increment(1);
            if let (Some(after), Some(received)) = (&self.after, received.as_ref()) {
                after(received, outcome);
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
        }
        consumer.unsubscribe();
        tracing::info!(group = %self.group, "consumer stopped");
        Ok(())
    }

    /// Settles one record. `None` means shutdown interrupted it before it settled.
    async fn process(
        &self,
        msg: &BorrowedMessage<'_>,
        dlq: &DeadLetters,
        shutdown: &CancellationToken,
    ) -> Option<(Option<Received>, Outcome)> {
        let headers: Vec<(&str, Option<&[u8]>)> = msg
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        let envelope = match Envelope::from_headers(headers) {
            Ok(e) => e,
            Err(e) => {
                return self
                    .dead_letter(msg, dlq, "malformed-envelope", &e.to_string(), shutdown)
                    .await
                    .map(|o| (None, o));
            }
        };
        let handler = match self.handlers.get(envelope.event_type.as_str()) {
            Some(h) => h.clone(),
            None if catalog::topic_of(&envelope.event_type).is_none() => {
                let error = format!("unknown event type {:?}", envelope.event_type);
                return self
                    .dead_letter(msg, dlq, "unknown-type", &error, shutdown)
                    .await
                    .map(|o| (None, o));
            }
            None => match &self.fallback {
                Some(f) => f.clone(),
                None => return Some((None, Outcome::Ignored)),
            },
        };
        let received = Received {
            envelope,
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let span = tracing::info_span!(
            "consume",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.destination.name = %received.topic,
            messaging.consumer.group.name = %self.group,
            event.r#type = %received.envelope.event_type,
            event.id = %received.envelope.id,
        );
        let carrier =
            weft_kit::telemetry::MapCarrier(received.envelope.trace.clone().into_iter().collect());
        weft_kit::telemetry::set_parent_from(&span, &carrier);

        let mut attempt = 0u32;
        loop {
            match self
                .apply(handler.as_ref(), &received)
                .instrument(span.clone())
                .await
            {
                Ok(true) => return Some((Some(received), Outcome::Applied)),
                Ok(false) => return Some((Some(received), Outcome::Duplicate)),
                Err(HandlerError::Permanent(e)) => {
                    let _enter = span.enter();
                    tracing::warn!(error = %e, "event rejected; dead-lettering");
                    drop(_enter);
                    let reason = if e.starts_with("undecodable") {
                        "undecodable"
                    } else {
                        "invalid"
                    };
                    return self
                        .dead_letter(msg, dlq, reason, &e, shutdown)
                        .await
                        .map(|o| (Some(received), o));
                }
                Err(HandlerError::Transient(e)) => {
                    attempt = attempt.saturating_add(1);
                    let wait = backoff(attempt);
                    tracing::warn!(parent: &span, error = %e, attempt, ?wait, "transient failure; retrying");
                    metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                        .increment(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Runs the handler and the inbox insert in one transaction. `Ok(false)` for a
    /// duplicate.
    async fn apply(
        &self,
        handler: &dyn Handler,
        received: &Received,
    ) -> Result<bool, HandlerError> {
        let mut tx = self.db.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO weft_inbox \
             (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (consumer_group, event_id) DO NOTHING",
        )
        .bind(self.group.clone())
        .bind(received.envelope.id.clone())
        .bind(received.envelope.event_type.clone())
        .bind(received.topic.clone())
        .bind(received.partition)
        .bind(received.offset)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        handler.handle(&mut tx, received).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn dead_letter(
        &self,
        msg: &BorrowedMessage<'_>,
        dlq: &DeadLetters,
        reason: &str,
        error: &str,
        shutdown: &CancellationToken,
    ) -> Option<Outcome> {
        tracing::warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            reason,
            error,
            "dead-lettering record"
        );
        let mut attempt = 0u32;
        loop {
            match dlq.send(msg, reason, error).await {
                Ok(()) => return Some(Outcome::DeadLettered),
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "dead-letter publish failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
    }
}

/// Exponential backoff with jitter: about 100 ms × 2^(attempt-1), capped at 30 s, each
/// wait drawn between half and all of that.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let ceiling = (100u64 << exp).min(30_000);
    let millis = rand::rng().random_range(ceiling / 2..=ceiling);
    Duration::from_millis(millis)
}

/// Publishes consumer lag from librdkafka's statistics as `consumer_lag`.
struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        "consumer_lag",
                        "group" => self.group.clone(),
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(30), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{attempt}: {d:?}");
        }
        assert!(
            backoff(10) >= Duration::from_secs(15),
            "the cap is reached by attempt 10"
        );
    }
}
