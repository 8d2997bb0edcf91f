//! weft-broker: the embedded Kafka-compatible broker `weft up` runs.
//!
//! One node that speaks the Kafka protocol to any librdkafka-based client
//! (rdkafka, confluent-kafka, kcat): topics created explicitly, produce with
//! `acks=all` and idempotence, fetch, list offsets, consumer groups with committed
//! offsets. What makes it a good neighbour on a laptop:
//!
//! - a fetch with nothing to read is held and answered the moment a record arrives
//!   (an idle consumer costs a wake-up per `fetch.wait.max.ms`, not a storage poll);
//! - batches are stored as they arrive, in Kafka's own format, one `write` each, and
//!   served back as bytes, never re-encoded;
//! - records survive the broker's crash as soon as they are acknowledged (and the
//!   machine's within `--flush-interval`); a torn write is cut off on restart;
//! - a group member that dies is removed after its session timeout by a timer.
//!
//! It is not Kafka: no replication, no transactions (weft never builds correctness
//! on them), no compaction, no ACLs or SASL, one listener.
//!
//! - [`batch`]: record batch checks; [`log`]: the partition log;
//!   [`producers`]: idempotent sequence checks; [`store`]: the data directory;
//!   [`offsets`]: committed offsets; [`groups`]: the group coordinator;
//!   [`wire`] and [`request`]: safe request decoding; [`api`]: the handlers;
//!   [`server`]: connections and background work.

pub mod api;
pub mod batch;
pub mod config;
pub mod error;
pub mod groups;
pub mod log;
pub mod offsets;
pub mod producers;
pub mod request;
pub mod server;
pub mod shared;
pub mod store;
pub mod wire;

pub use config::BrokerArgs;
pub use error::BrokerError;
pub use server::Broker;
