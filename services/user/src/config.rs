//! Who the user service is ([`IDENTITY`]) and its settings: flags or environment
//! variables, with defaults that run it in the embedded mesh.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Who the user service is: its names, health service and event version.
pub const IDENTITY: weft_kit::host::Identity = weft_kit::host::Identity {
    name: "user",
    service: "weft.user.v1.UserService",
    version: env!("CARGO_PKG_VERSION"),
    ports: weft_kit::host::Ports::new(5051, 9101),
};

/// The user service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-user",
    version,
    about = "weft user service: accounts, login, tokens"
)]
pub struct Config {
    /// Data, server limits, Kafka, pruning and telemetry.
    #[command(flatten)]
    pub common: weft_events::ServiceArgs,
    /// PKCS#8 PEM Ed25519 key that signs tokens; created if missing.
    /// Default: `<data dir>/keys/user-token.pem`.
    #[arg(long, env = "WEFT_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Lifetime of access tokens.
    #[arg(long, env = "WEFT_TOKEN_TTL", default_value = "15m", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,
    /// Login attempts per account within `--login-lockout` (failed or not: a success
    /// clears the count); past them the account is locked for the rest of the window.
    /// Kept in the database: a restart does not reset them.
    #[arg(long, env = "WEFT_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: usize,
    /// Threads hashing passwords (each holds 19 MiB while the service runs).
    #[arg(long, env = "WEFT_HASH_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub hash_workers: u32,
    /// Password checks that may wait for a hashing thread; more are refused at once
    /// with `RESOURCE_EXHAUSTED`.
    #[arg(long, env = "WEFT_HASH_QUEUE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub hash_queue: u32,
    /// How long login attempts count and lock an account.
    #[arg(long, env = "WEFT_LOGIN_LOCKOUT", default_value = "15m", value_parser = humantime::parse_duration)]
    pub login_lockout: Duration,
}
