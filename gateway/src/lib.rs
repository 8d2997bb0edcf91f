//! weft-gateway: REST/JSON to gRPC at the edge.
//!
//! The [`routes`] come from the `google.api.http` rules of the descriptor set (path
//! [`template`]s, bodies, `response_body`, `additional_bindings`), so an RPC with an
//! HTTP rule needs no gateway code. A request passes the [`edge`] stack (routed once,
//! traced and counted, then the [`policy`] checks: per-client rate limits, JWT, body
//! limit), is [`transcode`]d into the RPC's request message, sent [`upstream`] with
//! the allowed metadata (behind a [`breaker`]), and answered as proto3 JSON, or as
//! Server-Sent Events / NDJSON for a server [`stream`]. Every failure is an [`error`]
//! rendered as a JSON `google.rpc.Status`. What requests share is the [`state`]. The
//! gateway also serves its [`openapi`] document and the live dashboard page.

pub mod app;
pub mod breaker;
pub mod config;
pub mod edge;
pub mod error;
pub mod openapi;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod state;
pub mod stream;
pub mod template;
pub mod transcode;
pub mod upstream;

pub use app::App;
pub use config::Config;

/// Runs the gateway with `config` until SIGTERM/SIGINT: the whole life of a process.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = weft_kit::telemetry::init("weft-gateway", &config.telemetry)?;
    let app = App::build(config).await?;
    tracing::info!(http = %app.http_addr(), admin = %app.admin_addr(), "gateway ready to serve");
    app.run_until_stopped(weft_kit::shutdown::on_signal()).await
}
