//! weft-kit: the runtime every weft process shares.
//!
//! - [`config`]: env-first, typed settings shared by every server.
//! - [`telemetry`]: one entry point for logs, traces (OTLP when configured) and W3C
//!   trace-context propagation through gRPC metadata and Kafka headers.
//! - [`grpc`]: the gRPC server bootstrap: health with real readiness, reflection v1 and
//!   v1alpha, deadlines, load shedding, message limits, metrics and graceful drain.
//! - [`host`]: the host every service runs in: one bind, probes, background tasks,
//!   routes, and one drain.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`).
//! - [`conn`]: what every listener does with its connections (a cap per client,
//!   deadlines for slow clients, Nagle off, lingering close) and the HTTP/1 server loop.
//! - [`status`]: the one place domain errors become `tonic::Status`.
//! - [`text`]: the one rule for free text at every RPC boundary.
//! - [`rate`]: rates (`50/s`) and the quotas of weft's limiters.
//! - [`slots`]: how many open streams one client may hold.
//! - [`rolling`]: the last minute of a server's RPCs (calls, faults, p50/p99).
//! - [`shutdown`]: the process's cancellation tree, rooted at SIGTERM/SIGINT.
//! - [`cli`]: exit codes of every binary (64 for bad flags).

pub mod admin;
pub mod cli;
pub mod config;
pub mod conn;
pub mod faults;
pub mod flags;
pub mod grpc;
pub mod host;
pub mod layers;
pub mod paging;
pub mod rate;
pub mod readiness;
pub mod rolling;
pub mod shutdown;
pub mod slots;
pub mod status;
pub mod telemetry;
pub mod text;

/// Errors of the kit.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The gRPC server failed while serving.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The reflection service could not be built from the descriptor set.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The descriptor set of the served contracts does not decode.
    #[error("the contracts' descriptor set does not decode: {0}")]
    Contracts(prost::DecodeError),
    /// Telemetry could not be set up.
    #[error("cannot set up telemetry: {0}")]
    Telemetry(String),
}
