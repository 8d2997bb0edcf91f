//! weft-user: accounts and access tokens.
//!
//! `SignUp` validates, stores an argon2id hash (never the password) and writes
//! `UserSignedUp` to the outbox in the same transaction; `Login` issues an Ed25519
//! JWT; `GetJwks` publishes the public key; `GetUser`/`UpdateUser` serve the caller
//! (or an admin) and `UpdateUser` emits `UserUpdated` with the changed fields.

pub mod app;
pub mod config;
pub mod domain;
pub mod password;
pub mod service;
pub mod store;

pub use app::App;
pub use config::Config;

/// Runs the service with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = weft_kit::telemetry::init("weft-user", &config.telemetry)?;
    let app = App::build(config).await?;
    tracing::info!(grpc = %app.grpc_addr(), admin = %app.admin_addr(), "user service ready to serve");
    app.run_until_stopped(weft_kit::shutdown::on_signal()).await
}
