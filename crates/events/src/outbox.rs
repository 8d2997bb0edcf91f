//! The transactional outbox. A service writes its state change and the event row in
//! one database transaction ([`Outbox::enqueue`]); the [`Relay`] reads unsent rows in
//! order, publishes them with the idempotent producer (`acks=all`) and marks a row
//! sent only once the broker has acknowledged it. A crash anywhere in between leaves
//! the row unsent, so it is published again after restart: never lost, at worst
//! delivered twice, which the consumers' inbox absorbs.
//!
//! Replicas that share a database share its outbox: exactly one relay publishes at a
//! time, the holder of the `outbox-relay` [`Lease`](crate::lease::Lease); the others
//! stand by and take over within [`RelayConfig::lease_ttl`] when it dies (at once when
//! it stops cleanly). A row is marked sent only under the holder's fencing token, so a
//! relay that lost the lease mid-round (paused past its expiry) marks nothing; what it
//! published meanwhile is published again by the new holder, and the consumers' inbox
//! skips the copies. A key's rows after one that failed are not marked sent either:
//! the next round sends them again after it.
//!
//! The relay wakes when this process commits outbox rows ([`RelayWaker`]), and on
//! PostgreSQL also when any replica does: a trigger notifies `weft_outbox` at commit
//! and the relay listens. Otherwise it polls ([`RelayConfig::poll_interval`]); a
//! replica standing by only polls, to take the lease over.
//!
//! - `table`: what services write and read of the outbox ([`Outbox`]);
//! - `waker`: what wakes the relay;
//! - `backlog`: the backlog's metrics and the warning while rows do not flow;
//! - `relay`: the relay's rounds under the lease;
//! - `pending`: the unsent rows a round reads, and what it writes back;
//! - `publish`: the rows as Kafka records, and which of them may be marked sent.

mod backlog;
mod pending;
mod publish;
mod relay;
mod table;
mod waker;

pub use relay::{RELAY_LEASE, Relay, RelayConfig};
pub use table::Outbox;
pub use waker::RelayWaker;
