//! The two brokers a scenario runs on, chosen by [`BrokerKind`]: weft-broker of its
//! own (in the test process, on a free port), or a namespace of its own on the shared
//! Apache Kafka cluster that `scripts/test` starts (`scripts/kafka`) and names in
//! `WEFT_TEST_KAFKA`. The namespace is a topic and group prefix (`--kafka-prefix`),
//! so tests running at once on one cluster never see each other's records; its
//! topics are deleted when the [`TestBroker`] is dropped.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use crate::broker::Broker;

/// Which broker a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// weft-broker, the embedded broker.
    Embedded,
    /// Apache Kafka: the 3-node KRaft cluster named by `WEFT_TEST_KAFKA`.
    Kafka,
}

impl BrokerKind {
    /// The name used in test output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Embedded => "weft-broker",
            Self::Kafka => "Apache Kafka",
        }
    }
}

/// The shared Apache Kafka cluster's bootstrap servers (`WEFT_TEST_KAFKA`). Panics
/// when it is not set: Kafka tests never skip silently.
pub fn kafka_cluster() -> String {
    std::env::var("WEFT_TEST_KAFKA").unwrap_or_else(|_| {
        panic!(
            "WEFT_TEST_KAFKA is not set: Apache Kafka tests need the local cluster. \
             Run scripts/test, or `export WEFT_TEST_KAFKA=$(scripts/kafka start | sed -n 's/^KAFKA_BROKERS=//p')` first."
        )
    })
}

/// A broker for one test.
pub struct TestBroker {
    kind: BrokerKind,
    bootstrap: String,
    prefix: String,
    _embedded: Option<Broker>,
}

impl TestBroker {
    /// A broker of `kind` for this test.
    pub fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Embedded => {
                let broker = Broker::start();
                Self {
                    kind,
                    bootstrap: broker.bootstrap(),
                    prefix: String::new(),
                    _embedded: Some(broker),
                }
            }
            BrokerKind::Kafka => Self {
                kind,
                bootstrap: kafka_cluster(),
                prefix: format!("t{}.", &uuid::Uuid::new_v4().simple().to_string()[..12]),
                _embedded: None,
            },
        }
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// `host:port,...` for `bootstrap.servers` / `--kafka-brokers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The topic and group prefix of this test (`--kafka-prefix`); empty on
    /// weft-broker, which is the test's own.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cluster's name of weft's topic `topic`.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// Replication factor of the topics a test creates: 3 on the Kafka cluster.
    pub fn replication(&self) -> i32 {
        match self.kind {
            BrokerKind::Embedded => 1,
            BrokerKind::Kafka => 3,
        }
    }

    /// `min.insync.replicas` of the topics a test creates: 2 on the Kafka cluster.
    pub fn min_insync_replicas(&self) -> Option<i32> {
        match self.kind {
            BrokerKind::Embedded => None,
            BrokerKind::Kafka => Some(2),
        }
    }

    /// The flags that point a weft service or `weft up` at this broker.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec!["--kafka-brokers".to_owned(), self.bootstrap.clone()];
        if !self.prefix.is_empty() {
            flags.push(format!("--kafka-prefix={}", self.prefix));
        }
        flags
    }

    /// The environment that points `weft up` and its services at this broker.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("KAFKA_BROKERS", self.bootstrap.clone())];
        if !self.prefix.is_empty() {
            env.push(("WEFT_KAFKA_PREFIX", self.prefix.clone()));
        }
        if self.kind == BrokerKind::Kafka {
            env.push(("WEFT_TOPIC_REPLICATION", "3".to_owned()));
            env.push(("WEFT_TOPIC_MIN_INSYNC_REPLICAS", "2".to_owned()));
        }
        env
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if self.kind == BrokerKind::Kafka {
            // On a thread of its own: the test's runtime may be this thread's.
            let (bootstrap, prefix) = (self.bootstrap.clone(), self.prefix.clone());
            let _ = std::thread::spawn(move || delete_topics(&bootstrap, &prefix)).join();
        }
    }
}

/// Deletes every topic whose name starts with `prefix` (best effort: a test's
/// leftovers cost the shared cluster memory, not correctness).
fn delete_topics(bootstrap: &str, prefix: &str) {
    let Ok(admin) = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(10)) else {
        return;
    };
    let names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    if names.is_empty() {
        return;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let _ = runtime.block_on(admin.delete_topics(&refs, &options));
}
