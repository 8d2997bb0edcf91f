//! weft-events: the event backbone every weft service stands on.
//!
//! - [`catalog`]: which proto message is which event, on which topic, keyed by what.
//! - [`envelope`]: the CloudEvents binary-mode envelope (Kafka headers) and the
//!   metadata every event carries.
//! - [`db`]: the service database (SQLite by default, PostgreSQL by URL) with the
//!   outbox and inbox tables.
//! - [`outbox`]: state change and event commit in one transaction; the [`outbox::Relay`]
//!   publishes with the idempotent producer and marks a row sent only on a delivery
//!   report.
//! - [`consumer`]: at-least-once delivery, effect-once handling: the handler's change
//!   and an inbox row commit together, duplicates are skipped, offsets move only after
//!   the commit, poison records go to the dead-letter topic.
//! - [`lease`]: work one replica at a time does on a shared database, fenced.
//! - [`dlq`]: dead letters with their original bytes and the reason.
//! - [`topics`]: explicit, idempotent topic provisioning.
//! - [`kafka`]: client settings shared by producers and consumers.
//! - [`service`]: the settings every stateful service shares (data, server, Kafka,
//!   pruning, telemetry).
//! - [`producer`]: the producer publishers send through, with delivery reports on
//!   channels.
//! - [`sql`]: placeholders for statements whose length follows their input, in few
//!   shapes.

pub mod batched;
pub mod catalog;
pub mod consumer;
pub mod db;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod group_commit;
pub mod kafka;
pub mod lease;
pub mod outbox;
pub mod producer;
pub mod retention;
pub mod service;
pub mod sql;
pub mod topics;

pub use catalog::DomainEvent;
pub use consumer::{Consumer, Handler, HandlerError, Received};
pub use db::Database;
pub use envelope::{Envelope, EventContext};
pub use error::EventsError;
pub use outbox::{Outbox, Relay};
pub use service::ServiceArgs;
