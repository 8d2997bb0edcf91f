//! The consumer runtime: at-least-once delivery from Kafka, effect-once handling, in
//! batches.
//!
//! The runtime takes what the client has fetched — up to [`Consumer::max_batch`]
//! records, never waiting for more than is there — and settles it in order:
//!
//! - [`dispatch`]: each record's CloudEvents envelope is parsed and its handler picked
//!   by `ce_type`; a record without a usable envelope or of an unknown type is a dead
//!   letter.
//! - dead letters go to `<topic>.dlq` (original bytes, key and headers, plus why)
//!   and are acknowledged there before their offset moves;
//! - [`inbox`]: everything else commits in one database transaction — inbox rows,
//!   effects, reactions' outbox rows and (with offsets in the database) the next
//!   offset of each partition. A duplicate finds its inbox row and changes nothing. A
//!   handler failing permanently makes its record a dead letter; failing transiently
//!   (database or broker down) makes the runtime commit the records before it and
//!   retry it alone with jittered backoff ([`retry`]), not fetching meanwhile — so
//!   nothing is skipped, nothing applied twice, nothing spins. A record that keeps
//!   failing transiently becomes a dead letter after [`Consumer::max_attempts`]
//!   (`retries-exhausted`): one record never stops a consumer. A database error is
//!   permanent when the same statement would fail again on the same data (a data
//!   exception such as a NUL byte or a value too long, a constraint or check
//!   violation; [`crate::db::deterministic`]), transient otherwise.
//! - [`offsets`]: offsets committed with the effects, and where a restart resumes.
//! - [`lag`]: consumer lag as a metric.
//!
//! Offsets live in Kafka (a consumer group) by default, stored for commit only once a
//! record's transaction has committed. A consumer that owns a projection keeps them in
//! its own database instead ([`Consumer::offsets_in_database`]): it reads every
//! partition of its topics, and a [`Rewinder`] can drop the projection and replay the
//! topics from the beginning.

pub mod dispatch;
pub mod inbox;
pub mod lag;
pub mod offsets;
pub mod retry;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::FutureExt as _;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use dispatch::{Apply, Received, Record};
pub use retry::backoff;

use crate::EventsError;
use crate::catalog::DomainEvent;
use crate::db::Database;
use crate::dlq::DeadLetters;
use crate::kafka::KafkaArgs;
use dispatch::{Decision, Dispatch};
use inbox::{Item, Pass};
use lag::LagReporter;

/// Records settled in one transaction at most.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// Tries of a record that fails transiently before it is dead-lettered (with the
/// backoff of [`retry`], about a minute in all).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

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
        if crate::db::deterministic(&e) {
            Self::Permanent(format!("database refused the event's data: {e}"))
        } else {
            Self::Transient(format!("database: {e}"))
        }
    }
}

impl From<EventsError> for HandlerError {
    fn from(e: EventsError) -> Self {
        Self::Transient(e.to_string())
    }
}

/// Applies one event type inside the runtime's transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies `event` using `tx`, the transaction that also records it in the inbox
    /// (and, in a batch, the records around it). Writing outbox rows through `tx`
    /// makes reactions atomic with the effect.
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError>;
}

/// A handler whose work over a run of events is done together — a projection that
/// counts, say, writes each counter once per transaction instead of once per event.
/// Every transaction gets a fresh [`Scope`]: it sees the events in order (refusing
/// those it cannot apply, as a [`Handler`] would) and writes what they changed at
/// the end. A transaction that fails drops its scope with everything in it.
pub trait Projection: Send + Sync + 'static {
    /// The scope of one transaction.
    fn scope(&self) -> Box<dyn Scope>;
}

/// The work of a [`Projection`] within one transaction.
#[async_trait]
pub trait Scope: Send {
    /// Takes `event` in (it may read through `tx`, the transaction that also records
    /// it in the inbox); an error is the event's, as from [`Handler::handle`].
    async fn handle(
        &mut self,
        tx: &mut AnyConnection,
        event: &Received,
    ) -> Result<(), HandlerError>;

    /// Writes what the events changed, just before the transaction commits.
    async fn finish(self: Box<Self>, tx: &mut AnyConnection) -> Result<(), sqlx::Error>;
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

    fn finish(self) {
        tracing::info!(replayed = self.replayed, elapsed = ?self.started.elapsed(), "replay caught up");
        let _ = self.reply.send(Ok(self.replayed));
    }
}

/// A consumer group's runtime: subscriptions, handlers and the processing loop.
pub struct Consumer {
    group: String,
    kafka: KafkaArgs,
    db: Database,
    topics: BTreeSet<String>,
    dispatch: Dispatch,
    after: Option<AfterCommit>,
    offsets: Offsets,
    max_batch: usize,
    max_attempts: Option<u32>,
    stale_offsets: offsets::StaleOffsets,
}

/// The running parts of a consumer.
struct Running<'a> {
    dlq: &'a DeadLetters,
    shutdown: &'a CancellationToken,
    in_db: bool,
}

impl Consumer {
    /// A consumer in `group` recording its inbox in `db`.
    pub fn new(group: &str, kafka: KafkaArgs, db: Database) -> Self {
        Self {
            group: group.to_owned(),
            kafka,
            db,
            topics: BTreeSet::new(),
            dispatch: Dispatch {
                handlers: HashMap::new(),
                fallback: None,
            },
            after: None,
            offsets: Offsets::Kafka,
            max_batch: DEFAULT_MAX_BATCH,
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
            stale_offsets: offsets::StaleOffsets::Stop,
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

    /// Settles at most `n` records per transaction (1 settles each on its own).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// How many times a record whose handler fails transiently is tried before it
    /// goes to the dead-letter topic with `dlq_reason=retries-exhausted`
    /// ([`DEFAULT_MAX_ATTEMPTS`]); `None` retries for ever. A pass that fails as a
    /// whole (the database unreachable before any handler ran) blames no record and
    /// is retried without a limit.
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n.map(|n| n.max(1));
        self
    }

    /// What to do with a stored offset past its partition's end (offsets in the
    /// database only): stop with an error (the default), or reset as the operator
    /// asked.
    pub fn on_stale_offsets(mut self, policy: offsets::StaleOffsets) -> Self {
        self.stale_offsets = policy;
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

    /// Handles events of type `E` with `handler`, subscribing to `E`'s topic.
    pub fn on<E: DomainEvent>(mut self, handler: impl Handler) -> Self {
        self.topics.insert(E::TOPIC.to_owned());
        self.dispatch
            .handlers
            .insert(E::TYPE, dispatch::Apply::Each(Arc::new(handler)));
        self
    }

    /// Also subscribes to `topic` (for consumers that use [`Self::on_any`]).
    pub fn subscribe(mut self, topic: &str) -> Self {
        self.topics.insert(topic.to_owned());
        self
    }

    /// Handles every catalogued event type that has no specific handler.
    pub fn on_any(mut self, handler: impl Handler) -> Self {
        self.dispatch.fallback = Some(dispatch::Apply::Each(Arc::new(handler)));
        self
    }

    /// Applies every catalogued event type that has no specific handler with
    /// `projection`, a transaction's worth of events at a time.
    pub fn project_any(mut self, projection: impl Projection) -> Self {
        self.dispatch.fallback = Some(dispatch::Apply::Scoped(Arc::new(projection)));
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
        let in_db = matches!(self.offsets, Offsets::Database { .. });
        if in_db {
            config.set("enable.auto.commit", "false");
        }
        let consumer: StreamConsumer<LagReporter> = config.create_with_context(LagReporter {
            group: self.group.clone(),
        })?;
        let topics: Vec<String> = self.topics.iter().cloned().collect();
        let prefix = self.kafka.client.prefix.clone();
        let mut rewinds = match std::mem::replace(&mut self.offsets, Offsets::Kafka) {
            Offsets::Kafka => {
                let cluster: Vec<String> = topics.iter().map(|t| self.kafka.topic(t)).collect();
                let names: Vec<&str> = cluster.iter().map(String::as_str).collect();
                consumer.subscribe(&names)?;
                None
            }
            Offsets::Database { reset, rewinds, .. } => {
                let Some(assignment) = self.stored_assignment(&topics, &shutdown).await? else {
                    return Ok(());
                };
                consumer.assign(&assignment)?;
                Some((rewinds, reset))
            }
        };
        let dlq = DeadLetters::new(&self.kafka, &self.group)?;
        tracing::info!(group = %self.group, ?topics, offsets_in_db = in_db, max_batch = self.max_batch, "consumer started");
        let running = Running {
            dlq: &dlq,
            shutdown: &shutdown,
            in_db,
        };

        let mut replay: Option<Replay> = None;
        let mut failures = 0u32;
        loop {
            let next_rewind = async {
                match rewinds.as_mut() {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(reply) = next_rewind => {
                    if let Some(reset) = rewinds.as_ref().map(|(_, r)| r.clone()) {
                        replay = self.start_replay(&consumer, &topics, reset.as_ref(), reply).await;
                        if replay.as_ref().is_some_and(Replay::caught_up)
                            && let Some(r) = replay.take()
                        {
                            r.finish();
                        }
                    }
                    continue;
                }
                msg = consumer.recv() => msg,
            };
            let first = match first {
                Ok(m) => {
                    failures = 0;
                    Record::of(&m, &prefix)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "consumer fetch failed");
                    if !retry::pause(failures, &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            // Whatever else is fetched already joins the batch; nothing waits for more.
            let mut records = vec![first];
            while records.len() < self.max_batch {
                match consumer.recv().now_or_never() {
                    Some(Ok(m)) => records.push(Record::of(&m, &prefix)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer fetch failed");
                        break;
                    }
                    None => break,
                }
            }
            // Operators' fault flags: this consumer holds what it fetched while it is
            // paused, and waits before each record while it is slow.
            let mut stopping = false;
            while weft_kit::faults::get("consumer-pause").as_deref() == Some(self.group.as_str()) {
                tokio::select! {
                    _ = shutdown.cancelled() => { stopping = true; break; }
                    _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                }
            }
            if stopping {
                break;
            }
            if let Some(delay) = weft_kit::faults::millis("slow-consumer") {
                let all = delay.saturating_mul(u32::try_from(records.len()).unwrap_or(u32::MAX));
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(all) => {}
                }
            }
            let replaying = replay.is_some();
            let Some(settled) = self.settle(records, replaying, &running).await else {
                break; // shutdown during a retry: the records are redelivered later
            };
            metrics::histogram!("consumer_batch_size", "group" => self.group.clone())
                .record(settled.len() as f64);
            for (record, received, outcome) in &settled {
                metrics::counter!("consumer_records_total", "group" => self.group.clone(), "outcome" => outcome.as_str())
                    .increment(1);
                if !in_db
                    && let Err(e) = consumer.store_offset(
                        &self.kafka.topic(&record.topic),
                        record.partition,
                        record.offset,
                    )
                {
                    tracing::warn!(error = %e, "storing the offset failed; the record may be redelivered");
                }
                if let Some(r) = replay.as_mut() {
                    r.positions
                        .insert((record.topic.clone(), record.partition), record.offset + 1);
                    if *outcome == Outcome::Applied {
                        r.replayed += 1;
                    }
                }
                if let (Some(after), Some(received)) = (&self.after, received) {
                    after(received, *outcome);
                }
            }
            if replay.as_ref().is_some_and(Replay::caught_up)
                && let Some(r) = replay.take()
            {
                r.finish();
            }
        }
        if !in_db {
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

    /// Settles `records` in order (see the module docs); each with its parsed form
    /// (when it had one) and outcome. `None` when shutdown interrupted it: nothing
    /// after the last committed pass is settled, and it will be read again.
    async fn settle(
        &self,
        records: Vec<Record>,
        replaying: bool,
        running: &Running<'_>,
    ) -> Option<Vec<(Record, Option<Received>, Outcome)>> {
        let mut items: Vec<Item> = records
            .into_iter()
            .map(|record| Item {
                decision: self.dispatch.decide(&record, replaying),
                record,
            })
            .collect();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
        // Which dead letters are on their topic already.
        let mut published = vec![false; items.len()];
        let mut limit = items.len();
        // Failed passes in a row (the database unreachable), and how many times the
        // record failing transiently (its index) has been tried.
        let mut attempt = 0u32;
        let mut tries: Option<(usize, u32)> = None;
        while outcomes.len() < items.len() {
            let start = outcomes.len();
            for i in start..limit {
                if let Decision::DeadLetter { reason, error, .. } = &items[i].decision
                    && !published[i]
                {
                    if !self
                        .dead_letter(&items[i].record, reason, error, running)
                        .await
                    {
                        return None;
                    }
                    published[i] = true;
                }
            }
            match inbox::apply(&self.db, &self.group, running.in_db, &items[start..limit]).await {
                Ok(Pass::Committed(done)) => {
                    attempt = 0;
                    outcomes.extend(done);
                    limit = items.len();
                }
                Ok(Pass::Failed { at, error }) => {
                    attempt = 0;
                    let failing = start + at;
                    let tried = match tries {
                        Some((i, n)) if i == failing => n + 1,
                        _ => 1,
                    };
                    tries = Some((failing, tried));
                    if let HandlerError::Permanent(e) = &error {
                        dead_letter_instead(&mut items[failing], &self.group, |received, span| {
                            tracing::warn!(parent: span, error = %e, "event rejected; dead-lettering");
                            Decision::rejected(received, e.clone())
                        });
                    }
                    if let HandlerError::Transient(e) = &error
                        && self.max_attempts.is_some_and(|max| tried >= max)
                    {
                        dead_letter_instead(&mut items[failing], &self.group, |received, span| {
                            tracing::error!(parent: span, error = %e, tries = tried, "transient failures exhausted the retries; dead-lettering");
                            metrics::counter!("consumer_retries_exhausted_total", "group" => self.group.clone())
                                .increment(1);
                            Decision::DeadLetter {
                                reason: dispatch::RETRIES_EXHAUSTED,
                                error: format!("after {tried} attempts: {e}"),
                                received: Some(received),
                            }
                        });
                        limit = items.len();
                        continue;
                    }
                    if at > 0 {
                        // Commit what came before the failing record, once.
                        limit = failing;
                        continue;
                    }
                    if let HandlerError::Transient(e) = error {
                        tracing::warn!(group = %self.group, error = %e, tries = tried, "transient failure; retrying");
                        metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                            .increment(1);
                        if !retry::pause(tried, running.shutdown).await {
                            return None;
                        }
                        limit = items.len();
                    }
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(group = %self.group, error = %e, attempt, "applying a batch failed; retrying");
                    metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                        .increment(1);
                    if !retry::pause(attempt, running.shutdown).await {
                        return None;
                    }
                }
            }
        }
        Some(
            items
                .into_iter()
                .zip(outcomes)
                .map(|(item, outcome)| {
                    let received = match item.decision {
                        Decision::Apply(_, r) => Some(*r),
                        Decision::DeadLetter { received, .. } => received.map(|r| *r),
                        Decision::Ignore => None,
                    };
                    (item.record, received, outcome)
                })
                .collect(),
        )
    }

    /// Publishes a dead letter and waits for its acknowledgement, retrying until it
    /// is there; `false` on shutdown before that.
    async fn dead_letter(
        &self,
        record: &Record,
        reason: &str,
        error: &str,
        running: &Running<'_>,
    ) -> bool {
        tracing::warn!(
            group = %self.group,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            reason,
            error,
            "dead-lettering record"
        );
        let mut attempt = 0u32;
        loop {
            match running.dlq.send_record(&record.dead(), reason, error).await {
                Ok(()) => return true,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "dead-letter publish failed; retrying");
                    if !retry::pause(attempt, running.shutdown).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Every partition of `topics`, each at its offset stored in the database (see
    /// [`offsets::assignment`]). Retries until the topics exist; `None` on shutdown;
    /// an error when stored offsets cannot be right ([`EventsError::StaleOffsets`]).
    async fn stored_assignment(
        &self,
        topics: &[String],
        shutdown: &CancellationToken,
    ) -> Result<Option<TopicPartitionList>, EventsError> {
        let mut attempt = 0u32;
        loop {
            let tried = async {
                let marks = offsets::watermarks(&self.kafka, topics).await?;
                let stored = offsets::stored(&self.db, &self.group).await?;
                offsets::assignment(&self.group, &marks, &stored, self.stale_offsets)
            }
            .await;
            match tried {
                Ok(tpl) => return Ok(Some(tpl)),
                Err(e @ EventsError::StaleOffsets { .. }) => {
                    tracing::error!(error = %e, "stored offsets cannot be right; stopping");
                    return Err(e);
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "cannot assign partitions yet; retrying");
                    if !retry::pause(attempt, shutdown).await {
                        return Ok(None);
                    }
                }
            }
        }
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
        let marks = match offsets::watermarks(&self.kafka, topics).await {
            Ok(m) => m,
            Err(e) => {
                let _ = reply.send(Err(format!("reading the topics' ends: {e}")));
                return None;
            }
        };
        let reset_result: Result<(), sqlx::Error> = async {
            let mut tx = self.db.begin().await?;
            reset.reset(&mut tx).await?;
            offsets::forget(&mut tx, &self.group).await?;
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
        for m in marks {
            if let Err(e) =
                tpl.add_partition_offset(&m.cluster_topic, m.partition, Offset::Beginning)
            {
                let _ = reply.send(Err(e.to_string()));
                return None;
            }
            targets.insert((m.topic.clone(), m.partition), m.high);
            positions.insert((m.topic, m.partition), m.low);
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
}

/// Makes the record of `item`, when it was to be applied, a dead letter as `decide`
/// says (given the record and its span).
fn dead_letter_instead(
    item: &mut Item,
    group: &str,
    decide: impl FnOnce(Box<Received>, &tracing::Span) -> Decision,
) {
    item.decision = match std::mem::replace(&mut item.decision, Decision::Ignore) {
        Decision::Apply(_, received) => {
            let span = inbox::record_span(group, &received);
            decide(received, &span)
        }
        other => other,
    };
}

/// Runs `consumer` as a task; if it stops with an error (stale offsets, a broker it
/// can never reach), `shutdown` is cancelled so that the whole service stops and says
/// why rather than serving on with a dead consumer.
pub fn spawn_or_stop(
    consumer: Consumer,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), EventsError>> {
    tokio::spawn(async move {
        let result = consumer.run(shutdown.clone()).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the consumer stopped; stopping the service");
            shutdown.cancel();
        }
        result
    })
}
