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
//! - [`offsets`]: offsets committed with the effects (never in Kafka), and where a
//!   partition resumes.
//!
//! Replicas of a service share its consumer group: Kafka's coordinator splits the
//! partitions between them (`cooperative-sticky`), and the service database fences
//! their writes:
//!
//! - [`group`]: rebalances reach the run loop as changes; lag as a metric;
//! - [`claims`]: a member claims what it is assigned, and a member that lost a
//!   partition commits nothing more for it; the deployment identity members share;
//! - [`run`]: the loop — start-up checks, assignments at the stored offsets,
//!   revocations between batches, batches;
//! - [`settle`]: one batch, in as few transactions as failures allow;
//! - [`replay`]: a [`Rewinder`] drops a projection and the whole group replays its
//!   topics from the beginning.

pub mod claims;
pub mod dispatch;
pub mod group;
pub mod inbox;
pub mod offsets;
pub mod replay;
pub mod retry;
pub mod run;
pub mod settle;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::AnyConnection;
use tokio::sync::mpsc;

pub use dispatch::{Apply, Received, Record};
pub use offsets::{ConsumerArgs, StaleOffsets, StartFrom};
pub use replay::{RewindError, Rewinder, rebuild_lease};
pub use retry::backoff;

use crate::catalog::DomainEvent;
use crate::db::Database;
use crate::error::EventsError;
use crate::kafka::KafkaArgs;
use dispatch::Dispatch;
use replay::RewindReply;

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
    /// The payload does not decode as the type its envelope names: a dead letter with
    /// `dlq_reason=undecodable`.
    #[error("permanent: {0}")]
    Undecodable(String),
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
    /// Left to the member that holds its partition now.
    Fenced,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::DeadLettered => "dead_lettered",
            Self::Fenced => "fenced",
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

    /// Whether applying the topics' history again is harmless (a projection that a
    /// reset can drop). A consumer whose effects are not (orders created, messages
    /// sent) refuses to begin from a history it has no offsets for unless told where
    /// to begin ([`StartFrom`]).
    fn replayable(&self) -> bool {
        true
    }
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

    fn replayable(&self) -> bool {
        false
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
    reset: Arc<dyn Reset>,
    rewinds: mpsc::Receiver<RewindReply>,
    rewinder: Rewinder,
    max_batch: usize,
    max_attempts: Option<u32>,
    stale_offsets: StaleOffsets,
    start_from: Option<StartFrom>,
    replica: String,
    membership: group::Membership,
}

impl Consumer {
    /// A member of `group` recording its inbox and offsets in `db`. Its effects are
    /// taken as never to be replayed ([`NeverReplay`]) unless [`Self::rewinds_with`]
    /// says how to drop them.
    pub fn new(group: &str, kafka: KafkaArgs, db: Database) -> Self {
        let (tx, rx) = mpsc::channel(4);
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
            reset: Arc::new(NeverReplay),
            rewinds: rx,
            rewinder: Rewinder(tx),
            max_batch: DEFAULT_MAX_BATCH,
            max_attempts: Some(DEFAULT_MAX_ATTEMPTS),
            stale_offsets: StaleOffsets::Stop,
            start_from: None,
            replica: crate::lease::replica_id(),
            membership: group::Membership::default(),
        }
    }

    /// A projection: `reset` drops it when a [`Rewinder`] asks for a replay, and a
    /// group without stored offsets begins at the topics' first records.
    pub fn rewinds_with(mut self, reset: impl Reset) -> Self {
        self.reset = Arc::new(reset);
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

    /// What to do with a stored offset past its partition's end: stop with an error
    /// (the default), or reset as the operator asked.
    pub fn on_stale_offsets(mut self, policy: StaleOffsets) -> Self {
        self.stale_offsets = policy;
        self
    }

    /// Where a group with no stored offsets begins when its topics have history
    /// (see [`Reset::replayable`]); `None` refuses such a start for a consumer whose
    /// effects are not replayable.
    pub fn start_from(mut self, from: Option<StartFrom>) -> Self {
        self.start_from = from;
        self
    }

    /// The operator's consumer flags: [`Self::on_stale_offsets`] and
    /// [`Self::start_from`].
    pub fn with_args(self, args: &ConsumerArgs) -> Self {
        self.on_stale_offsets(args.reset_offsets)
            .start_from(args.from)
    }

    /// This member's name in the group and in its partition claims (by default
    /// [`crate::lease::replica_id`]).
    pub fn replica(mut self, replica: &str) -> Self {
        self.replica = replica.to_owned();
        self
    }

    /// Whether this member has taken up its assignment (a readiness probe).
    pub fn membership(&self) -> group::Membership {
        self.membership.clone()
    }

    /// The handle that rewinds this consumer's group.
    pub fn rewinder(&self) -> Rewinder {
        self.rewinder.clone()
    }

    /// Handles events of type `E` with `handler`, subscribing to `E`'s topic.
    pub fn on<E: DomainEvent>(mut self, handler: impl Handler) -> Self {
        self.topics.insert(E::TOPIC.to_owned());
        self.dispatch
            .handlers
            .insert(E::TYPE, dispatch::Apply::Each(Arc::new(handler)));
        self
    }

    /// Applies events of type `E` with `projection`, a transaction's worth of them at
    /// a time.
    pub fn project<E: DomainEvent>(mut self, projection: impl Projection) -> Self {
        self.topics.insert(E::TOPIC.to_owned());
        self.dispatch
            .handlers
            .insert(E::TYPE, dispatch::Apply::Scoped(Arc::new(projection)));
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
}

/// Runs `consumer` in `host`: ready once it holds its share of the partitions, begun
/// where it should (the probe "consumer group"), and the background task "consumer".
/// If the consumer stops with an error (stale offsets, a broker it can never reach),
/// the host stops the whole service and says why rather than serving on with a dead
/// consumer; the error carries whether the operator must act, for the exit code.
pub fn hosted(host: &mut weft_kit::host::Host, consumer: Consumer) -> &mut weft_kit::host::Host {
    host.probe("consumer group", consumer.membership().probe())
        .background("consumer", |stop| async move {
            consumer.run(stop).await.map_err(|e| {
                let unrecoverable = e.needs_the_operator();
                weft_kit::cli::failure(e, unrecoverable)
            })
        })
}
