//! weft-order: orders, payments and shipping.
//!
//! `CreateOrder` validates lines and computes the total exactly (integer minor units),
//! honouring an idempotency key; `PayOrder` charges through a [`payment::PaymentProvider`];
//! `ShipOrder`, `DeliverOrder` and `CancelOrder` follow the state machine of
//! [`domain::transition`]; every change commits with its event in the outbox. The
//! service consumes `UserSignedUp` and creates one welcome order per user. Callers are
//! known from their access token: a user sees only their own orders.

pub mod access;
pub mod app;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod money;
pub mod payment;
pub mod products;
pub mod requests;
pub mod service;
pub mod store;
pub mod views;
pub mod welcome;

pub use app::App;
pub use config::{Config, IDENTITY};

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    weft_kit::host::run::<App>(config).await
}
