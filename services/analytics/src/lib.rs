//! weft-analytics: exact projections over every weft event.
//!
//! One consumer reads every partition of `user-events`, `order-events` and
//! `notification-events` and applies the events to the [`projection`] tables
//! ([`tally`] sums a batch's changes and writes them once) in the transaction that
//! also records them in the inbox and stores their offsets, so a
//! redelivery or a restart neither loses nor double-counts; a rebuild drops the
//! tables and replays the topics from the beginning. The [`service`] serves the
//! metrics over gRPC (including a coalesced stream); the gateway serves them over
//! HTTP with Server-Sent Events to the live dashboard page.

pub mod app;
pub mod config;
pub mod latency;
pub mod projection;
pub mod service;
pub mod tally;

pub use app::App;
pub use config::Config;

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = weft_kit::telemetry::init("weft-analytics", &config.telemetry)?;
    weft_kit::faults::follow(&config.data_dir);
    let app = App::build(config).await?;
    tracing::info!(grpc = %app.grpc_addr(), admin = %app.admin_addr(), "analytics service ready to serve");
    app.run_until_stopped(weft_kit::shutdown::on_signal()).await
}
