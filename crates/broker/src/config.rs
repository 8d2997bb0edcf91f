//! The broker's flags (each also an environment variable), and the settings of its
//! logs and groups derived from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{groups, log};

/// The broker's flags (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Address to listen on (Kafka protocol).
    #[arg(long, env = "WEFT_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// `host:port` clients are told to connect to; by default the listen address
    /// (127.0.0.1 when it is 0.0.0.0).
    #[arg(long, env = "WEFT_BROKER_ADVERTISED")]
    pub advertised: Option<String>,
    /// Directory of the logs, topics and committed offsets.
    #[arg(long, env = "WEFT_BROKER_DATA_DIR", default_value = ".weft/broker")]
    pub data_dir: PathBuf,
    /// Size at which a partition's segment file is closed and a new one started.
    #[arg(long, env = "WEFT_BROKER_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// Closed segments older than this are deleted (`0s`: keep everything).
    #[arg(long, env = "WEFT_BROKER_RETENTION", value_parser = humantime::parse_duration, default_value = "7days")]
    pub retention: Duration,
    /// Closed segments are deleted, oldest first, while a partition is larger.
    #[arg(long, env = "WEFT_BROKER_RETENTION_BYTES")]
    pub retention_bytes: Option<u64>,
    /// How often written data is flushed to disk (`fsync`). Acknowledged records
    /// survive a crash of the broker at once, of the machine after this long.
    #[arg(long, env = "WEFT_BROKER_FLUSH_INTERVAL", value_parser = humantime::parse_duration, default_value = "1s")]
    pub flush_interval: Duration,
    /// Partitions of a topic created without a count.
    #[arg(long, env = "WEFT_BROKER_DEFAULT_PARTITIONS", default_value_t = 1)]
    pub default_partitions: i32,
    /// Largest record batch accepted (Kafka's `message.max.bytes`).
    #[arg(long, env = "WEFT_BROKER_MAX_BATCH_BYTES", default_value_t = 1_048_588)]
    pub max_batch_bytes: usize,
    /// How far ahead of the broker's clock a record's timestamp may be; a batch with a
    /// later one is refused with INVALID_TIMESTAMP (Kafka's
    /// `log.message.timestamp.after.max.ms`, 1 hour by default since Kafka 4.0).
    #[arg(long, env = "WEFT_BROKER_MESSAGE_TIMESTAMP_AFTER_MAX", value_parser = humantime::parse_duration, default_value = "1h")]
    pub message_timestamp_after_max: Duration,
    /// Largest request accepted; a larger frame closes the connection.
    #[arg(long, env = "WEFT_BROKER_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Connections served at once; more are refused.
    #[arg(long, env = "WEFT_BROKER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// How long the first rebalance of an empty group waits for more members.
    #[arg(long, env = "WEFT_BROKER_GROUP_INITIAL_REBALANCE_DELAY", value_parser = humantime::parse_duration, default_value = "100ms")]
    pub group_initial_rebalance_delay: Duration,
}

impl BrokerArgs {
    /// The defaults, listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            advertised: None,
            data_dir: data_dir.into(),
            segment_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: None,
            flush_interval: Duration::from_secs(1),
            default_partitions: 1,
            max_batch_bytes: 1_048_588,
            message_timestamp_after_max: Duration::from_secs(3600),
            max_request_bytes: 16 * 1024 * 1024,
            max_connections: 1024,
            group_initial_rebalance_delay: Duration::from_millis(100),
        }
    }

    pub(crate) fn log_config(&self) -> log::LogConfig {
        log::LogConfig {
            segment_bytes: self.segment_bytes.max(1024),
            retention: (!self.retention.is_zero()).then_some(self.retention),
            retention_bytes: self.retention_bytes,
        }
    }

    pub(crate) fn group_config(&self) -> groups::GroupConfig {
        groups::GroupConfig {
            initial_rebalance_delay: self.group_initial_rebalance_delay,
            ..groups::GroupConfig::default()
        }
    }
}
