//! weft-order: orders, payments and shipping.
//!
//! `CreateOrder` validates lines and computes the total exactly (integer minor units),
//! honouring an idempotency key; `PayOrder` charges through a [`payment::PaymentProvider`];
//! `ShipOrder`, `DeliverOrder` and `CancelOrder` follow the state machine of
//! [`domain::transition`]; every change commits with its event in the outbox. The
//! service consumes `UserSignedUp` and creates one welcome order per user. Callers are
//! known from their access token: a user sees only their own orders.

/// Version stamped on emitted events.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod access;
pub mod app;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod money;
pub mod payment;
pub mod service;
pub mod store;
pub mod views;
pub mod welcome;

pub use app::App;
pub use config::Config;

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = weft_kit::telemetry::init("weft-order", &config.telemetry)?;
    weft_kit::faults::follow(&config.data_dir);
    let app = App::build(config).await?;
    tracing::info!(grpc = %app.grpc_addr(), admin = %app.admin_addr(), "order service ready to serve");
    app.run_until_stopped(weft_kit::shutdown::on_signal()).await
}
