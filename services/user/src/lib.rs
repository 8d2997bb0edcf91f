//! weft-user: accounts and access tokens.
//!
//! `SignUp` validates, stores an argon2id hash (never the password, computed on the
//! bounded [`password`] pool) and writes `UserSignedUp` and the email's (and phone's)
//! [`contact`] verification to the outbox in the same transaction; `Login` counts the
//! attempt in the database, then issues an Ed25519 JWT with the user's roles;
//! `GetJwks` publishes the public key; `GetUser`/`UpdateUser` serve whom [`access`]
//! allows and `UpdateUser` emits `UserUpdated` with the changed fields; `VerifyEmail`,
//! `VerifyPhone` and `ResendVerification` prove contacts. Roles change only through
//! the operator's [`admin`] path.

pub mod access;
pub mod admin;
pub mod app;
pub mod config;
pub mod contact;
pub mod domain;
pub mod error;
pub mod events;
pub mod password;
pub mod requests;
pub mod service;
pub mod store;
pub mod verification;
pub mod views;

pub use app::App;
pub use config::{Config, IDENTITY};

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    weft_kit::host::run::<App>(config).await
}
