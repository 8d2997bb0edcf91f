//! What every connection of the broker shares: the store, the group coordinator,
//! the committed offsets and the limits. The network side (`server`) owns it; the
//! API handlers (`api`) read and change it.

use std::sync::Mutex;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::groups::Coordinator;
use crate::offsets::Offsets;
use crate::store::Store;

/// Where clients are told the broker is.
#[derive(Debug, Clone)]
pub struct Node {
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

/// What every connection shares.
pub struct Shared {
    /// Topics and logs.
    pub store: Store,
    /// Consumer groups.
    pub groups: Coordinator,
    /// Committed offsets.
    pub offsets: Mutex<Offsets>,
    /// The advertised address.
    pub node: Node,
    /// Partitions of a topic created with `-1`.
    pub default_partitions: i32,
    /// Largest batch accepted.
    pub max_batch_bytes: usize,
    /// How far ahead of now a record timestamp may be.
    pub message_timestamp_after_max: Duration,
    /// Largest request frame accepted.
    pub max_request_bytes: usize,
    /// Cancelled when the broker stops; held fetches answer at once.
    pub shutdown: CancellationToken,
}
