//! Kafka client settings shared by every weft producer and consumer, and the names
//! weft gives its topics and groups on the brokers.

pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};

use crate::error::EventsError;

/// How long a consumer group member of the classic protocol may go without a
/// heartbeat before the coordinator removes it (`session.timeout.ms`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// `min.insync.replicas` of each topic created at start-up (the broker's default
    /// when unset). With `acks=all`, a write then needs this many replicas.
    #[arg(long, env = "WEFT_TOPIC_MIN_INSYNC_REPLICAS")]
    pub topic_min_insync_replicas: Option<i32>,
    /// How long the brokers may be unreachable before the service reports not ready
    /// (the outbox holds events meanwhile; `0s` reports at once).
    #[arg(long, env = "WEFT_BROKER_GRACE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub broker_grace: Duration,
    /// How weft's clients reach and name things on the cluster.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What every Kafka client of weft shares beyond the brokers' addresses: extra
/// librdkafka settings and the prefix of weft's names on the cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// A prefix of every topic and consumer group weft uses, so that several meshes
    /// share one cluster (`team-a.` makes `team-a.user-events`). Letters, digits, `.`,
    /// `_` and `-`.
    #[arg(long = "kafka-prefix", env = "WEFT_KAFKA_PREFIX", default_value = "", value_parser = parse_prefix)]
    pub prefix: String,
    /// A librdkafka setting for every Kafka client, `KEY=VALUE` (repeatable), e.g.
    /// `security.protocol=SASL_SSL`. Wins over `--kafka-config-file`. Settings weft's
    /// guarantees rest on (acks, idempotence, offset storage, group ids) are refused.
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = settings::parse_setting)]
    pub config: Vec<settings::Setting>,
    /// A properties file of librdkafka settings (`key=value` lines, `#` comments) for
    /// every Kafka client: where secrets such as `sasl.password` belong.
    #[arg(long = "kafka-config-file", env = "WEFT_KAFKA_CONFIG_FILE", value_name = "FILE", value_parser = settings::parse_file)]
    pub config_file: Option<settings::SettingsFile>,
    /// Whether each consumer replica is a static member of its group (KIP-345,
    /// `group.instance.id` = deployment and replica id, on the classic protocol). A
    /// replica that restarts, or a group whose coordinator moves, then keeps its
    /// partitions without a rebalance; but a replica that stops for good holds its
    /// partitions until its session times out (10 s), since static members do not
    /// leave. `false` makes every replica a dynamic member.
    #[arg(
        long = "kafka-static-membership",
        env = "WEFT_KAFKA_STATIC_MEMBERSHIP",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub static_membership: bool,
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            config: Vec::new(),
            config_file: None,
            static_membership: true,
        }
    }
}

impl ClientArgs {
    /// The operator's settings in the order they apply: the file, then the flags.
    pub fn settings(&self) -> impl Iterator<Item = &settings::Setting> {
        self.config_file
            .iter()
            .flat_map(|f| f.settings.iter())
            .chain(self.config.iter())
    }

    /// The flags that give a child process the same settings (`weft up` passes them
    /// on to each service).
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if !self.prefix.is_empty() {
            flags.push(format!("--kafka-prefix={}", self.prefix));
        }
        if let Some(file) = &self.config_file {
            flags.push(format!("--kafka-config-file={}", file.path.display()));
        }
        for s in &self.config {
            flags.push(format!("--kafka-config={}={}", s.key, s.value));
        }
        if !self.static_membership {
            flags.push("--kafka-static-membership=false".to_owned());
        }
        flags
    }
}

/// Checks a `--kafka-prefix`: Kafka's topic alphabet, and short enough to leave room
/// for the topic names (249 characters at most in all).
pub fn parse_prefix(text: &str) -> Result<String, String> {
    if text.len() > 100 {
        return Err("the prefix is longer than 100 characters".into());
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{c:?} cannot be part of a Kafka topic name; use letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(text.to_owned())
}

impl KafkaArgs {
    /// Settings for `brokers` with the defaults above.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_partitions: 3,
            topic_replication: 1,
            topic_min_insync_replicas: None,
            broker_grace: Duration::from_secs(15),
            client: ClientArgs::default(),
        }
    }

    /// The name of weft's topic `topic` on the cluster (with the prefix).
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.client.prefix)
    }

    /// weft's name of the cluster's topic `topic` (without the prefix).
    pub fn unprefixed<'a>(&self, topic: &'a str) -> &'a str {
        topic
            .strip_prefix(self.client.prefix.as_str())
            .unwrap_or(topic)
    }

    /// The name of consumer group `group` on the cluster (with the prefix).
    pub fn group(&self, group: &str) -> String {
        format!("{}{group}", self.client.prefix)
    }

    /// Base client settings: weft's, then the operator's (`--kafka-config-file`,
    /// `--kafka-config`).
    pub fn client(&self, client_id: &str) -> ClientConfig {
        self.operators(self.base(client_id))
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("socket.keepalive.enable", "true")
            // A broker back from a crash is reconnected to within a second, not after
            // librdkafka's default back-off of up to 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log.connection.close", "false");
        c
    }

    /// The operator's settings over weft's defaults (never over the settings
    /// [`settings`] refuses).
    fn operators(&self, mut c: ClientConfig) -> ClientConfig {
        for s in self.client.settings() {
            c.set(&s.key, &s.value);
        }
        c
    }

    /// The idempotent producer: `acks=all`, retries without duplicates or reordering
    /// within a partition.
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .set("compression.type", "none");
        self.operators(c)
    }

    /// A member of consumer group `group`; its offsets are kept in the service
    /// database by the runtime, never committed to Kafka. `instance` names the
    /// member across its restarts (its deployment and replica), which makes it a
    /// static member (see [`ClientArgs::static_membership`]).
    pub fn consumer(&self, client_id: &str, group: &str, instance: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("group.id", self.group(group))
            // Offsets live in the service database, committed with the effects.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // New partitions of a topic are noticed (and assigned) within this.
            .set("topic.metadata.refresh.interval.ms", "10000")
            .set("auto.offset.reset", "earliest")
            .set("max.poll.interval.ms", "300000")
            .set("enable.partition.eof", "false")
            // librdkafka's statistics carry each partition's high watermark, from
            // which `consumer_lag` is published (against the stored offsets).
            .set("statistics.interval.ms", "5000")
            // Kafka and the embedded broker answer a held fetch the moment data
            // arrives, so the wait bounds only how often an idle consumer asks.
            .set("fetch.wait.max.ms", "500");
        // Kafka's next protocol (`group.protocol=consumer`, KIP-848) assigns on the
        // broker and keeps the session and heartbeat settings there
        // (`group.consumer.session.timeout.ms`): librdkafka refuses them from a client.
        if !self.next_group_protocol() {
            c.set(
                "session.timeout.ms",
                SESSION_TIMEOUT.as_millis().to_string(),
            )
            .set("heartbeat.interval.ms", "2000")
            // Members keep what they hold across a rebalance; only what moves is
            // revoked.
            .set("partition.assignment.strategy", "cooperative-sticky");
            if self.client.static_membership {
                c.set("group.instance.id", instance_id(instance));
            }
        }
        self.operators(c)
    }

    /// Whether the operator chose Kafka's next consumer group protocol
    /// (`group.protocol=consumer`, KIP-848).
    pub fn next_group_protocol(&self) -> bool {
        self.client
            .settings()
            .any(|s| s.key == "group.protocol" && s.value == "consumer")
    }
}

/// `name` as a Kafka `group.instance.id`: Kafka's alphabet (letters, digits, `.`,
/// `_`, `-`) and at most 249 characters. A name that had to change keeps a hash of
/// the original, so two names never meet in one id.
pub fn instance_id(name: &str) -> String {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.is_empty() && name.len() <= 249 && name.chars().all(legal) {
        return name.to_owned();
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let kept: String = name
        .chars()
        .map(|c| if legal(c) { c } else { '_' })
        .take(200)
        .collect();
    format!("{kept}-{hash:016x}")
}

/// A client context that remembers the last error retrying cannot mend — the brokers
/// refusing weft's credentials, or the TLS handshake failing — so that a caller can
/// stop at once and say so instead of timing out.
#[derive(Debug, Default)]
pub struct Refusals(std::sync::Mutex<Option<String>>);

impl Refusals {
    /// librdkafka's words for the last refusal, if there was one.
    pub fn last(&self) -> Option<String> {
        self.0.lock().ok().and_then(|r| r.clone())
    }
}

impl rdkafka::producer::ProducerContext for Refusals {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl rdkafka::ClientContext for Refusals {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        if matches!(
            error.rdkafka_error_code(),
            Some(Code::Authentication | Code::SSL | Code::SaslAuthenticationFailed)
        ) && let Ok(mut last) = self.0.lock()
        {
            *last = Some(reason.to_owned());
        }
        tracing::warn!(%error, reason, "kafka client error");
    }
}

/// The partitions of `topic` (its name on the cluster), as the brokers at `brokers`
/// say through `client`; [`EventsError::MissingTopic`] when it has none.
pub fn partitions_of(
    client: &impl rdkafka::consumer::Consumer,
    topic: &str,
    brokers: &str,
) -> Result<Vec<i32>, EventsError> {
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(EventsError::MissingTopic {
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
        });
    }
    Ok(partitions)
}

/// Asks the brokers for cluster metadata for up to 10 s. Credentials or TLS they
/// refuse are [`EventsError::Refused`] at once, with librdkafka's reason (the admin
/// API would only time out); anything else is the last error seen.
pub async fn reach(kafka: &KafkaArgs) -> Result<(), EventsError> {
    let client: BaseProducer<Refusals> = kafka
        .client("weft-reach")
        .create_with_context(Refusals::default())?;
    let brokers = kafka.brokers.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Serves librdkafka's error events, which fill in the refusals.
            client.poll(Duration::from_millis(100));
            if let Some(reason) = client.context().last() {
                return Err(EventsError::Refused { brokers, reason });
            }
            match client
                .client()
                .fetch_metadata(None, Duration::from_millis(500))
            {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => return Err(e.into()),
                Err(_) => {}
            }
        }
    })
    .await
    .map_err(|e| EventsError::Delivery(format!("the broker check failed: {e}")))?
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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{ClientArgs, instance_id};

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        client: ClientArgs,
    }

    #[test]
    fn static_membership_is_on_unless_turned_off_and_reaches_the_children() {
        let on = Flags::try_parse_from(["weft"]).unwrap().client;
        assert!(on.static_membership);
        assert!(on.to_flags().is_empty());
        let off = Flags::try_parse_from(["weft", "--kafka-static-membership=false"])
            .unwrap()
            .client;
        assert!(!off.static_membership);
        let again = Flags::try_parse_from(std::iter::once("weft".to_owned()).chain(off.to_flags()))
            .unwrap()
            .client;
        assert!(!again.static_membership);
        let err = Flags::try_parse_from(["weft", "--kafka-static-membership=maybe"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    #[test]
    fn instance_ids_keep_legal_names_and_never_merge_illegal_ones() {
        assert_eq!(
            instance_id("3f9a0c1d2e4b-replica-1"),
            "3f9a0c1d2e4b-replica-1"
        );
        let spaced = instance_id("dep-my host");
        let slashed = instance_id("dep-my/host");
        assert!(spaced.starts_with("dep-my_host-"), "{spaced}");
        assert_ne!(spaced, slashed);
        let long = instance_id(&"x".repeat(400));
        assert!(long.len() <= 249, "{}", long.len());
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        for id in [spaced, slashed, long, instance_id(""), instance_id("é")] {
            assert!(!id.is_empty() && id.chars().all(legal), "{id:?}");
        }
    }
}
