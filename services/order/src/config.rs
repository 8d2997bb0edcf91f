//! Who the order service is ([`IDENTITY`]) and its settings: flags or environment
//! variables, with defaults that run it in the embedded mesh.

use std::path::PathBuf;

use clap::Parser;

/// Who the order service is: its names, health service and event version.
pub const IDENTITY: weft_kit::host::Identity = weft_kit::host::Identity {
    name: "order",
    service: "weft.order.v1.OrderService",
    version: env!("CARGO_PKG_VERSION"),
    ports: weft_kit::host::Ports::new(5052, 9102),
};

/// The order service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-order",
    version,
    about = "weft order service: orders, payments, shipping"
)]
pub struct Config {
    /// Data, server limits, Kafka, pruning and telemetry.
    #[command(flatten)]
    pub common: weft_events::ServiceArgs,
    /// Token keys.
    #[command(flatten)]
    pub jwks: weft_auth::JwksArgs,
    /// JSON file of products added to the catalogue at start-up when it lacks them
    /// (`[{"product_id": "mug", "name": "Mug", "currency": "USD", "price": "29.99"}]`);
    /// by default the built-in catalogue of the demo.
    #[arg(long, env = "WEFT_CATALOG_SEED")]
    pub catalog_seed: Option<PathBuf>,
    /// Consumer group for the welcome-order reaction.
    #[arg(long, env = "WEFT_CONSUMER_GROUP", default_value = "weft-order")]
    pub consumer_group: String,
    /// Consumer behaviour shared by every consuming service.
    #[command(flatten)]
    pub consumer: weft_events::consumer::offsets::ConsumerArgs,
}
