//! Who the analytics service is ([`IDENTITY`]) and its settings: flags or environment
//! variables, with defaults that run it in the embedded mesh.

use clap::Parser;

/// Who the analytics service is: its names, health service and event version.
pub const IDENTITY: weft_kit::host::Identity = weft_kit::host::Identity {
    name: "analytics",
    service: "weft.analytics.v1.AnalyticsService",
    version: env!("CARGO_PKG_VERSION"),
    ports: weft_kit::host::Ports::new(5054, 9104),
};

/// The analytics service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-analytics",
    version,
    about = "weft analytics service: exact projections of every event, and a metric stream"
)]
pub struct Config {
    /// Data, server limits, Kafka, pruning and telemetry.
    #[command(flatten)]
    pub common: weft_events::ServiceArgs,
    /// Token keys.
    #[command(flatten)]
    pub jwks: weft_auth::JwksArgs,
    /// Name under which the inbox and offsets are kept.
    #[arg(long, env = "WEFT_CONSUMER_GROUP", default_value = "weft-analytics")]
    pub consumer_group: String,
    /// Consumer behaviour shared by every consuming service.
    #[command(flatten)]
    pub consumer: weft_events::consumer::offsets::ConsumerArgs,
    /// `StreamMetrics` streams one client may hold open at once (a signed-in user, or
    /// an address for anonymous callers); more are refused with `RESOURCE_EXHAUSTED`.
    #[arg(long, env = "WEFT_MAX_STREAMS_PER_CLIENT", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_client: u32,
    /// A metadata key naming the client's address, set by what sits in front (the
    /// gateway sends `x-weft-client-ip`; Envoy can set it from the peer). Only set it
    /// where clients cannot reach the service without passing that proxy. Without
    /// it, the peer address is the client.
    #[arg(long, env = "WEFT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
}
