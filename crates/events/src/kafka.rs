//! Kafka client settings shared by every weft producer and consumer.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};

/// Where the brokers are and how topics are laid out.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated (`host:port,...`).
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "localhost:9092"
    )]
    pub brokers: String,
    /// Partitions of each topic created at start-up.
    #[arg(long, env = "WEFT_TOPIC_PARTITIONS", default_value_t = 3)]
    pub topic_partitions: i32,
    /// Replication factor of each topic created at start-up.
    #[arg(long, env = "WEFT_TOPIC_REPLICATION", default_value_t = 1)]
    pub topic_replication: i32,
}

impl KafkaArgs {
    /// Settings for `brokers` with the defaults above.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_partitions: 3,
            topic_replication: 1,
        }
    }

    /// Base client settings.
    pub fn client(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("socket.keepalive.enable", "true")
            .set("log.connection.close", "false");
        c
    }

    /// The idempotent producer: `acks=all`, retries without duplicates or reordering
    /// within a partition.
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.client(client_id);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .set("compression.type", "none");
        c
    }

    /// A group consumer whose offsets move only when the runtime stores them, after
    /// the handler's transaction has committed.
    pub fn consumer(&self, client_id: &str, group: &str) -> ClientConfig {
        let mut c = self.client(client_id);
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000")
            .set("max.poll.interval.ms", "300000")
            .set("enable.partition.eof", "false")
            // Kafka and the embedded broker answer a held fetch the moment data
            // arrives, so the wait bounds only how often an idle consumer asks.
            .set("fetch.wait.max.ms", "500");
        c
    }
}

/// The future of one readiness probe run.
pub type ProbeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// A readiness probe for the brokers: asks for cluster metadata (off the async
/// threads, since librdkafka's call blocks) and fails when no answer comes in time.
pub fn broker_probe(
    kafka: &KafkaArgs,
) -> Result<impl Fn() -> ProbeFuture + Send + Sync + 'static, rdkafka::error::KafkaError> {
    let client: Arc<BaseProducer> = Arc::new(kafka.client("weft-readiness").create()?);
    Ok(move || {
        let client = client.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                client
                    .client()
                    .fetch_metadata(None, Duration::from_millis(1500))
                    .map(|_| ())
                    .map_err(|e| format!("broker: {e}"))
            })
            .await
            .map_err(|e| e.to_string())?
        }) as ProbeFuture
    })
}
