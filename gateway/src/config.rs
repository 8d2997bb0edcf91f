//! Settings of the gateway: flags or environment variables, with defaults that run it
//! in the embedded mesh.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use weft_kit::config::TelemetryArgs;

use crate::policy::Rate;

/// The weft gateway.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-gateway",
    version,
    about = "weft gateway: REST/JSON to gRPC from the google.api.http rules, the OpenAPI document and the live dashboard"
)]
pub struct Config {
    /// HTTP listen address.
    #[arg(long, env = "WEFT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Admin (/metrics) listen address.
    #[arg(long, env = "WEFT_ADMIN_ADDR", default_value = "0.0.0.0:9100")]
    pub admin_addr: SocketAddr,
    /// The user service (also where token keys come from).
    #[command(flatten)]
    pub jwks: weft_auth::JwksArgs,
    /// The order service: `http://host:port`, or its replicas' addresses separated by
    /// commas (calls are balanced over them).
    #[arg(
        long,
        env = "WEFT_ORDER_SERVICE_URL",
        default_value = "http://127.0.0.1:5052"
    )]
    pub order_service_url: String,
    /// The notification service: `http://host:port`, or its replicas' addresses separated by
    /// commas (calls are balanced over them).
    #[arg(
        long,
        env = "WEFT_NOTIFICATION_SERVICE_URL",
        default_value = "http://127.0.0.1:5053"
    )]
    pub notification_service_url: String,
    /// The analytics service: `http://host:port`, or its replicas' addresses separated by
    /// commas (calls are balanced over them).
    #[arg(
        long,
        env = "WEFT_ANALYTICS_SERVICE_URL",
        default_value = "http://127.0.0.1:5054"
    )]
    pub analytics_service_url: String,
    /// More upstreams, `full.service.Name=http://host:port` (repeatable), for
    /// services of a `--descriptor-set` beyond the four above.
    #[arg(long = "upstream", env = "WEFT_UPSTREAMS", value_delimiter = ',', value_parser = parse_upstream)]
    pub upstreams: Vec<(String, String)>,
    /// A descriptor set (`FileDescriptorSet`, binary) to route instead of the built-in
    /// weft contracts.
    #[arg(long, env = "WEFT_DESCRIPTOR_SET")]
    pub descriptor_set: Option<PathBuf>,
    /// Requests per client (refilled at this rate), e.g. `50/s`, `600/min`.
    #[arg(long, env = "WEFT_RATE_LIMIT", default_value = "50/s")]
    pub rate_limit: Rate,
    /// Requests per client that may come at once before the rate applies.
    #[arg(long, env = "WEFT_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,
    /// The stricter rate of sign-up and login per client.
    #[arg(long, env = "WEFT_AUTH_RATE_LIMIT", default_value = "10/min")]
    pub auth_rate_limit: Rate,
    /// Sign-up and login requests per client that may come at once.
    #[arg(long, env = "WEFT_AUTH_RATE_BURST", default_value_t = 10)]
    pub auth_rate_burst: u32,
    /// A header that names the client's address, set by a trusted proxy in front
    /// (Envoy: `x-envoy-external-address`). Without it, the peer address is the client.
    #[arg(long, env = "WEFT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, env = "WEFT_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Largest response message from a service, in bytes.
    #[arg(long, env = "WEFT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Longest a unary request may take; a shorter `grpc-timeout` header wins.
    #[arg(long, env = "WEFT_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Requests handled at once; more are refused with 503.
    #[arg(long, env = "WEFT_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Streams (Server-Sent Events, NDJSON) open at once; more are refused with 503.
    #[arg(long, env = "WEFT_MAX_STREAMS", default_value_t = 1000)]
    pub max_streams: usize,
    /// Streams one client (address) may hold open at once; more are refused with 429.
    #[arg(long, env = "WEFT_MAX_STREAMS_PER_CLIENT", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_client: u32,
    /// Longest a TCP connect to a service may take.
    #[arg(long, env = "WEFT_CONNECT_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Consecutive unreachable calls that open a service's circuit.
    #[arg(long, env = "WEFT_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before a trial call.
    #[arg(long, env = "WEFT_BREAKER_OPEN_FOR", default_value = "5s", value_parser = humantime::parse_duration)]
    pub breaker_open_for: Duration,
    /// Origins other than the gateway's own that may call it from a browser
    /// (comma-separated; `*` for any).
    #[arg(
        long = "cors-origin",
        env = "WEFT_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:8080,http://127.0.0.1:8080"
    )]
    pub cors_origins: Vec<String>,
    /// Connections per client and slow clients.
    #[command(flatten)]
    pub conn: weft_kit::conn::ConnArgs,
    /// How long in-flight requests may take to drain after SIGTERM.
    #[arg(long, env = "WEFT_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// Logs and traces.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

fn parse_upstream(s: &str) -> Result<(String, String), String> {
    let (service, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not SERVICE=URL"))?;
    if service.is_empty() || !url.starts_with("http") {
        return Err(format!("{s:?} is not SERVICE=http://host:port"));
    }
    Ok((service.to_owned(), url.to_owned()))
}

impl Config {
    /// Every upstream URL by full gRPC service name.
    pub fn upstream_urls(&self) -> HashMap<String, String> {
        let mut urls: HashMap<String, String> = [
            (weft_proto::SERVICES[0], &self.jwks.user_service_url),
            (weft_proto::SERVICES[1], &self.order_service_url),
            (weft_proto::SERVICES[2], &self.notification_service_url),
            (weft_proto::SERVICES[3], &self.analytics_service_url),
        ]
        .into_iter()
        .map(|(s, u)| (s.to_owned(), u.clone()))
        .collect();
        urls.extend(self.upstreams.iter().cloned());
        urls
    }
}
