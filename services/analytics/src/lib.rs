//! weft-analytics: exact projections over every weft event.
//!
//! One consumer reads every partition of `user-events`, `order-events` and
//! `notification-events` and applies the events to the [`projection`] tables
//! ([`tally`] sums a batch's changes and writes them once) in the transaction that
//! also records them in the inbox and stores their offsets, so a
//! redelivery or a restart neither loses nor double-counts; a rebuild drops the
//! tables and replays the topics from the beginning. Each event also counts in the
//! one-minute and one-hour [`windows`] of its event time, unless it comes too late. The [`service`] serves the
//! metrics over gRPC (including a coalesced stream); the gateway serves them over
//! HTTP with Server-Sent Events to the live dashboard page.

pub mod app;
pub mod config;
pub mod latency;
pub mod projection;
pub mod service;
pub mod tally;
pub mod windows;

pub use app::App;
pub use config::{Config, IDENTITY};

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    weft_kit::host::run::<App>(config).await
}
