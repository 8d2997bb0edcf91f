//! Settings every weft server shares, read from flags or `WEFT_*` environment
//! variables. Services flatten these into their own clap `Parser`.

use std::fmt;
use std::time::Duration;

pub use crate::flags::positive_duration;

/// Limits and timings of a gRPC server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Largest request or response message, in bytes.
    #[arg(long, env = "WEFT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// RPCs served at once; more are shed with RESOURCE_EXHAUSTED.
    #[arg(long, env = "WEFT_MAX_CONCURRENT_RPCS", default_value_t = 256)]
    pub max_concurrent_rpcs: usize,
    /// Longest an RPC may run; a shorter client deadline (`grpc-timeout`) wins.
    #[arg(long, env = "WEFT_RPC_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub rpc_timeout: Duration,
    /// How long in-flight work may take to drain after SIGTERM.
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Connections per client and slow clients.
    #[command(flatten)]
    pub conn: crate::conn::ConnArgs,
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_rpcs: 256,
            rpc_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            conn: crate::conn::ConnArgs::default(),
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Logging and tracing settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log filter in `tracing` env-filter syntax, e.g. `info,weft_events=debug`.
    #[arg(long = "log", env = "WEFT_LOG", default_value = "info")]
    pub log_filter: String,
    /// Log format.
    #[arg(long, env = "WEFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// OTLP/gRPC endpoint of a trace collector, e.g. `http://localhost:4317`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryArgs {
    fn default() -> Self {
        Self {
            log_filter: "info".to_owned(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
        }
    }
}

/// A value that never shows in logs or `Debug` output (passwords, keys, URLs with
/// credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The wrapped value; call only where it is used, never to print it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret<String> {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s: Secret<String> = "hunter2".parse().unwrap_or_else(|e| match e {});
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
