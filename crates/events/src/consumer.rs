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
//!
//! Offsets live in Kafka (a consumer group) by default. A consumer that owns a
//! projection can keep them in its own database instead
//! ([`Consumer::offsets_in_database`]): it reads every partition of its topics, the
//! offset of each record commits in the same transaction as its effect, and a
//! [`Rewinder`] can drop the projection and replay the topics from the beginning.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use async_trait::async_trait;
use rand::Rng as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::{ClientContext, Message as _, Offset, Statistics, TopicPartitionList};
use sqlx::{AnyConnection, Row as _};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::EventsError;
use crate::catalog::{self, DomainEvent};
use crate::db::{Database, now_micros};
use crate::dlq::{DeadLetters, DeadRecord};
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
    /// The record headers as they arrived.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether this record is replayed by a rewind (see [`Rewinder`]) rather than
    /// read live.
    pub replaying: bool,
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

    /// The record as a dead letter copies it.
    pub fn dead_record(&self) -> DeadRecord<'_> {
        DeadRecord {
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref().map(str::as_bytes),
            payload: Some(&self.payload),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                .collect(),
        }
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

/// Drops a projection, inside the transaction that also forgets the consumer's inbox
/// and offsets, before a rewind replays the topics.
#[async_trait]
pub trait Reset: Send + Sync + 'static {
    /// Deletes everything the handlers derived from events, using `tx`.
    async fn reset(&self, tx: &mut AnyConnection) -> Result<(), sqlx::Error>;
}

/// The [`Reset`] of a consumer whose effects must never be replayed (messages sent,
/// orders created): a rewind is refused and nothing changes.
pub struct NeverReplay;

#[async_trait]
impl Reset for NeverReplay {
    async fn reset(&self, _tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        Err(sqlx::Error::Protocol(
            "this consumer's effects are never replayed".into(),
        ))
    }
}

type RewindReply = oneshot::Sender<Result<u64, String>>;

/// Asks a consumer with offsets in its database to start over: drop the projection
/// (its [`Reset`]), replay every topic from the beginning and report how many events
/// it applied once it has caught up with the end of the topics as they were when
/// the rewind began.
#[derive(Clone)]
pub struct Rewinder(mpsc::Sender<RewindReply>);

impl Rewinder {
    /// Rewinds and waits for the replay; `Err` when the consumer is not running or
    /// the reset failed.
    pub async fn rewind(&self) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(tx)
            .await
            .map_err(|_| "the consumer is not running".to_owned())?;
        rx.await
            .map_err(|_| "the consumer stopped during the replay".to_owned())?
    }
}

/// Where a consumer keeps its offsets.
enum Offsets {
    /// Committed to the consumer group in Kafka.
    Kafka,
    /// Committed with the effects, in the service database.
    Database {
        reset: Arc<dyn Reset>,
        rewinds: mpsc::Receiver<RewindReply>,
        rewinder: Rewinder,
    },
}

/// A replay in progress: where each partition must get to, where it is, and who
/// waits for the count.
struct Replay {
    targets: HashMap<(String, i32), i64>,
    positions: HashMap<(String, i32), i64>,
    replayed: u64,
    started: Instant,
    reply: RewindReply,
}

impl Replay {
    fn caught_up(&self) -> bool {
        self.targets
            .iter()
            .all(|(tp, high)| self.positions.get(tp).copied().unwrap_or(0) >= *high)
    }
}

/// A consumer group's runtime: subscriptions, handlers and the processing loop.
pub struct Consumer {
    group: String,
    kafka: KafkaArgs,
    db: Database,
    topics: BTreeSet<String>,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    fallback: Option<Arc<dyn Handler>>,
    after: Option<AfterCommit>,
    offsets: Offsets,
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
            offsets: Offsets::Kafka,
        }
    }

    /// Keeps offsets in the service database, committed with each record's effect,
    /// and reads every partition of the subscribed topics itself (no group
    /// rebalancing: one instance owns the projection). `reset` drops the projection
    /// when a [`Rewinder`] asks for a replay.
    pub fn offsets_in_database(mut self, reset: impl Reset) -> Self {
        let (tx, rx) = mpsc::channel(4);
        self.offsets = Offsets::Database {
            reset: Arc::new(reset),
            rewinds: rx,
            rewinder: Rewinder(tx),
        };
        self
    }

    /// The handle that rewinds this consumer; `None` unless its offsets are in the
    /// database.
    pub fn rewinder(&self) -> Option<Rewinder> {
        match &self.offsets {
            Offsets::Kafka => None,
            Offsets::Database { rewinder, .. } => Some(rewinder.clone()),
        }
    }

    fn offsets_in_db(&self) -> bool {
        matches!(self.offsets, Offsets::Database { .. })
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
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let client_id = format!("{}-{}", self.group, std::process::id());
        let mut config = self.kafka.consumer(&client_id, &self.group);
        config.set("statistics.interval.ms", "10000");
        if self.offsets_in_db() {
            config.set("enable.auto.commit", "false");
        }
        let consumer: StreamConsumer<LagReporter> = config.create_with_context(LagReporter {
            group: self.group.clone(),
        })?;
        let topics: Vec<String> = self.topics.iter().cloned().collect();
        let mut rewinds = match std::mem::replace(&mut self.offsets, Offsets::Kafka) {
            Offsets::Kafka => {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&names)?;
                None
            }
            Offsets::Database {
                reset,
                rewinds,
                rewinder,
            } => {
                let Some(assignment) = self.stored_assignment(&topics, &shutdown).await else {
                    return Ok(());
                };
                consumer.assign(&assignment)?;
                self.offsets = Offsets::Database {
                    reset: reset.clone(),
                    rewinds: mpsc::channel(1).1,
                    rewinder,
                };
                Some((rewinds, reset))
            }
        };
        let dlq = DeadLetters::new(&self.kafka, &self.group)?;
        tracing::info!(group = %self.group, ?topics, offsets_in_db = rewinds.is_some(), "consumer started");

        let mut replay: Option<Replay> = None;
        let mut failures = 0u32;
        loop {
            let next_rewind = async {
                match rewinds.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(reply) = next_rewind => {
                    let reset = rewinds.as_ref().map(|(_, r)| r.clone());
                    if let Some(reset) = reset {
                        replay = self.start_replay(&consumer, &topics, reset.as_ref(), reply).await;
                        if replay.as_ref().is_some_and(Replay::caught_up) {
                            finish_replay(replay.take());
                        }
                    }
                    continue;
                }
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
            let replaying = replay.is_some();
            let Some((received, outcome)) = self.process(&msg, &dlq, replaying, &shutdown).await
            else {
                break; // shutdown during a retry: the record is redelivered later
            };
            if rewinds.is_some() {
                if !matches!(outcome, Outcome::Applied | Outcome::Duplicate)
                    && !self
                        .store_offset_in_db(msg.topic(), msg.partition(), msg.offset(), &shutdown)
                        .await
                {
                    break;
                }
            } else if let Err(e) = consumer.store_offset_from_message(&msg) {
                tracing::warn!(error = %e, "storing the offset failed; the record may be redelivered");
            }
            metrics::counter!("consumer_records_total", "group" => self.group.clone(), "outcome" => outcome.as_str())
                .increment(1);
            if let Some(r) = replay.as_mut() {
                r.positions
                    .insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
                if outcome == Outcome::Applied {
                    r.replayed += 1;
                }
                if r.caught_up() {
                    finish_replay(replay.take());
                }
            }
            if let (Some(after), Some(received)) = (&self.after, received.as_ref()) {
                after(received, outcome);
            }
        }
        if rewinds.is_none() {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(rdkafka::error::KafkaError::ConsumerCommit(
                    rdkafka::types::RDKafkaErrorCode::NoOffset,
                )) => {}
                Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
            }
            consumer.unsubscribe();
        }
        tracing::info!(group = %self.group, "consumer stopped");
        Ok(())
    }

    /// Every partition of `topics`, each at its offset stored in the database (the
    /// beginning when none is). Retries until the topics exist; `None` on shutdown.
    async fn stored_assignment(
        &self,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Option<TopicPartitionList> {
        let mut attempt = 0u32;
        loop {
            match self.try_stored_assignment(topics).await {
                Ok(tpl) => return Some(tpl),
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "cannot assign partitions yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
    }

    async fn try_stored_assignment(
        &self,
        topics: &[String],
    ) -> Result<TopicPartitionList, EventsError> {
        let marks = watermarks(&self.kafka, topics).await?;
        let rows = sqlx::query(
            "SELECT topic, kafka_partition, next_offset FROM weft_consumer_offsets \
             WHERE consumer_group = $1",
        )
        .bind(self.group.clone())
        .fetch_all(self.db.pool())
        .await?;
        let mut stored = HashMap::new();
        for row in rows {
            let topic: String = row.try_get(0)?;
            let partition: i64 = row.try_get(1)?;
            let next: i64 = row.try_get(2)?;
            stored.insert((topic, partition as i32), next);
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, _, _) in &marks {
            let offset = match stored.get(&(topic.clone(), *partition)) {
                Some(next) => Offset::Offset(*next),
                None => Offset::Beginning,
            };
            tpl.add_partition_offset(topic, *partition, offset)?;
        }
        Ok(tpl)
    }

    /// Forgets the projection, inbox and offsets in one transaction and starts reading
    /// every partition from the beginning. Answers `reply` at once when that fails.
    async fn start_replay(
        &self,
        consumer: &StreamConsumer<LagReporter>,
        topics: &[String],
        reset: &dyn Reset,
        reply: RewindReply,
    ) -> Option<Replay> {
        let marks = match watermarks(&self.kafka, topics).await {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(Err(format!("reading the topics' ends: {e}")));
                return None;
            }
        };
        let reset_result: Result<(), sqlx::Error> = async {
            let mut tx = self.db.begin().await?;
            reset.reset(&mut tx).await?;
            for table in ["weft_inbox", "weft_consumer_offsets"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE consumer_group = $1"))
                    .bind(self.group.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = reset_result {
            let _ = reply.send(Err(format!("resetting the projection: {e}")));
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        let mut targets = HashMap::new();
        let mut positions = HashMap::new();
        for (topic, partition, low, high) in marks {
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Beginning) {
                let _ = reply.send(Err(e.to_string()));
                return None;
            }
            targets.insert((topic.clone(), partition), high);
            positions.insert((topic, partition), low);
        }
        if let Err(e) = consumer.assign(&tpl) {
            let _ = reply.send(Err(format!("reassigning the partitions: {e}")));
            return None;
        }
        tracing::info!(group = %self.group, "projection reset; replaying from the beginning");
        Some(Replay {
            targets,
            positions,
            replayed: 0,
            started: Instant::now(),
            reply,
        })
    }

    /// Stores the offset of a record that changed nothing (ignored, dead-lettered).
    /// `false` on shutdown before it was stored.
    async fn store_offset_in_db(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut attempt = 0u32;
        loop {
            let stored: Result<(), sqlx::Error> = async {
                let mut tx = self.db.begin().await?;
                self.record_offset(&mut tx, topic, partition, offset)
                    .await?;
                tx.commit().await
            }
            .await;
            match stored {
                Ok(()) => return true,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "storing the offset failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                    }
                }
            }
        }
    }

    async fn record_offset(
        &self,
        conn: &mut AnyConnection,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO weft_consumer_offsets (consumer_group, topic, kafka_partition, next_offset) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (consumer_group, topic, kafka_partition) \
             DO UPDATE SET next_offset = excluded.next_offset",
        )
        .bind(self.group.clone())
        .bind(topic.to_owned())
        .bind(i64::from(partition))
        .bind(offset + 1)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Settles one record. `None` means shutdown interrupted it before it settled.
    async fn process(
        &self,
        msg: &BorrowedMessage<'_>,
        dlq: &DeadLetters,
        replaying: bool,
        shutdown: &CancellationToken,
    ) -> Option<(Option<Received>, Outcome)> {
        let headers: Vec<(&str, Option<&[u8]>)> = msg
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
            .unwrap_or_default();
        let envelope = match Envelope::from_headers(headers.iter().copied()) {
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
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect(),
            replaying,
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
        if inserted == 1 {
            handler.handle(&mut tx, received).await?;
        }
        if self.offsets_in_db() {
            self.record_offset(
                &mut tx,
                &received.topic,
                received.partition,
                received.offset,
            )
            .await?;
        } else if inserted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(inserted == 1)
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

/// Answers a finished replay.
fn finish_replay(replay: Option<Replay>) {
    if let Some(r) = replay {
        tracing::info!(replayed = r.replayed, elapsed = ?r.started.elapsed(), "replay caught up");
        let _ = r.reply.send(Ok(r.replayed));
    }
}

/// Every partition of `topics` with its low and high watermark, read off the async
/// threads (librdkafka's calls block).
async fn watermarks(
    kafka: &KafkaArgs,
    topics: &[String],
) -> Result<Vec<(String, i32, i64, i64)>, EventsError> {
    let config = kafka.client(&format!("weft-watermarks-{}", std::process::id()));
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = config.create()?;
        let timeout = Duration::from_secs(5);
        let mut out = Vec::new();
        for topic in &topics {
            let metadata = client.fetch_metadata(Some(topic), timeout)?;
            let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(EventsError::Delivery(format!("topic {topic} not found")));
            };
            if let Some(e) = t.error() {
                return Err(EventsError::Delivery(format!("topic {topic}: {e:?}")));
            }
            if t.partitions().is_empty() {
                return Err(EventsError::Delivery(format!(
                    "topic {topic} has no partitions"
                )));
            }
            for p in t.partitions() {
                let (low, high) = client.fetch_watermarks(topic, p.id(), timeout)?;
                out.push((topic.clone(), p.id(), low, high));
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| EventsError::Delivery(format!("watermark task failed: {e}")))?
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
