//! weft-notification: the messages weft sends to its users.
//!
//! The consumer ([`reactions`]) remembers contacts from user events and plans a
//! notification per (event, template, channel) in the same transaction as its inbox
//! row: a welcome email on `UserSignedUp`, an order confirmation on `OrderCreated`,
//! a shipping email and text message on `OrderShipped`. The [`delivery`] worker
//! renders [`templates`] and sends through a [`transport`] (lettre: a mailbox a day,
//! `.eml` files or SMTP; SMS files or a webhook), then records the result with `EmailSent` /
//! `SmsSent` in the outbox. Transient failures retry with backoff without holding up
//! anything else; permanent ones send the triggering record to the dead-letter topic.

pub mod app;
pub mod config;
pub mod delivery;
pub mod mailbox;
pub mod reactions;
pub mod service;
pub mod store;
pub mod templates;
pub mod transport;

pub use app::App;
pub use config::{Config, IDENTITY};

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    weft_kit::host::run::<App>(config).await
}
