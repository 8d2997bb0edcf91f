//! Shared harness of the event backbone's integration tests, and the scenarios that
//! `backbone_*.rs` run on each backend (one module a family).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod backend;
pub mod batching;
pub mod group;
pub mod handover;
pub mod poison;
pub mod pruning;
pub mod scenario;
pub mod stale;

pub use backend::TestBackend;
pub(crate) use backend::backbone_tests;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Row as _;
use weft_events::catalog::DomainEvent;
use weft_events::envelope::Envelope;
use weft_events::kafka::KafkaArgs;
use weft_events::{Database, EventContext, Outbox};
use weft_proto::user::{SignupSource, UserSignedUp};
use weft_testkit::{BrokerKind, TestBroker};

/// weft's client settings for `broker`: its address and prefix, and the topic layout
/// of the cluster (replication 3 and `min.insync.replicas` 2 on Apache Kafka).
pub fn kafka_args(broker: &TestBroker) -> KafkaArgs {
    let mut kafka = KafkaArgs::new(broker.bootstrap());
    kafka.client.prefix = broker.prefix().to_owned();
    kafka.topic_replication = broker.replication();
    kafka.topic_min_insync_replicas = broker.min_insync_replicas();
    kafka
}

/// A broker of `kind` with every weft topic created, and weft's settings for it.
pub async fn provisioned(kind: BrokerKind) -> (TestBroker, KafkaArgs) {
    let broker = TestBroker::start(kind);
    let kafka = kafka_args(&broker);
    let topics = weft_events::topics::all_topics();
    weft_events::topics::provision(&kafka, &topics)
        .await
        .unwrap();
    // On Kafka a new topic's partitions have leaders a moment after it exists; the
    // scenarios read watermarks from the start.
    weft_testkit::eventually(
        "every partition with a leader",
        std::time::Duration::from_secs(30),
        || {
            let (kafka, topics) = (kafka.clone(), topics.clone());
            async move {
                weft_events::consumer::offsets::watermarks(&kafka, &topics)
                    .await
                    .ok()
                    .map(drop)
            }
        },
    )
    .await;
    (broker, kafka)
}

pub const PROBE: &str = env!("CARGO_BIN_EXE_weft-events-probe");

/// A probe process whose stdout lines arrive on a channel; killed on drop.
pub struct Probe {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Probe {
    /// Runs the probe with `args` against `broker` (its prefix through the
    /// environment, as a service would take it).
    pub fn spawn(broker: &TestBroker, args: &[&str]) -> Self {
        let mut child = Command::new(PROBE)
            .args(args)
            .env("WEFT_LOG", "info")
            .env("WEFT_KAFKA_PREFIX", broker.prefix())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn probe");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines: rx }
    }

    /// Waits for a line satisfying `pred`; panics after `timeout`.
    pub fn wait_line(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }

    /// Collects JSON outcome lines until `n` match `outcome`.
    pub fn wait_outcomes(
        &self,
        outcome: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let mut seen = Vec::new();
        while seen.len() < n {
            let line = self.wait_line(
                &format!("{n} x {outcome} (have {})", seen.len()),
                timeout,
                |l| l.starts_with('{'),
            );
            let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
            if v["outcome"] == outcome {
                seen.push(v);
            }
        }
        seen
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signup(user_id: &str) -> UserSignedUp {
    UserSignedUp {
        metadata: Some(EventContext::root().metadata("user", "test")),
        user_id: user_id.into(),
        email: format!("{user_id}@example.com"),
        name: user_id.into(),
        source: SignupSource::Web as i32,
        ..Default::default()
    }
}

/// Commits `events` to the outbox of `db` in one transaction.
pub async fn enqueue(db: &Database, events: &[UserSignedUp]) {
    let mut tx = db.begin().await.unwrap();
    for e in events {
        Outbox::enqueue(&mut tx, e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

pub async fn unsent(db: &Database) -> i64 {
    Outbox::backlog(db).await.unwrap()
}

pub async fn effects(db: &Database) -> (i64, i64) {
    let row = sqlx::query("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM probe_effects")
        .fetch_one(db.pool())
        .await
        .unwrap();
    (row.get::<i64, _>("n"), row.get::<i64, _>("d"))
}

/// A producer for raw records. Make one per test: librdkafka's idempotent producer
/// waits half a second for its producer id before its first record.
pub struct RawProducer(FutureProducer, KafkaArgs);

impl RawProducer {
    pub fn new(kafka: &KafkaArgs) -> Self {
        Self(
            kafka.producer("raw-test-producer").create().unwrap(),
            kafka.clone(),
        )
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8], headers: &[(String, String)]) {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        self.0
            .send(
                FutureRecord::to(&self.1.topic(topic))
                    .key(key)
                    .payload(payload)
                    .headers(h),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Sends `event` as the relay would, under `key`: its bytes on its topic, with its
    /// envelope's headers.
    pub async fn send_event<E: DomainEvent>(&self, key: &str, event: &E) {
        self.send_as(key, &event.encode_to_vec(), event).await;
    }

    /// Sends `payload` under `key` as if it were `event`: on its topic, with its
    /// envelope's headers.
    pub async fn send_as<E: DomainEvent>(&self, key: &str, payload: &[u8], event: &E) {
        let headers = Envelope::of(event).unwrap().headers();
        self.send(E::TOPIC, key, payload, &headers).await;
    }
}

/// The records dead-lettered from `topic` (to `<topic>.dlq`), once there are `n` or
/// more.
pub fn dead_letters(broker: &TestBroker, topic: &str, n: usize) -> Vec<OwnedMessage> {
    read_topic_until(
        &broker.bootstrap(),
        &broker.topic(&format!("{topic}.dlq")),
        Duration::from_secs(60),
        |seen| seen.len() >= n,
    )
}

/// The `dlq_reason` header of each dead letter that has one.
pub fn reasons(dlq: &[OwnedMessage]) -> Vec<&str> {
    dlq.iter().filter_map(|m| header(m, "dlq_reason")).collect()
}

/// The `user_id` column of every row of `table`, in order.
pub async fn user_ids(db: &Database, table: &str) -> Vec<String> {
    sqlx::query(&format!("SELECT user_id FROM {table} ORDER BY user_id"))
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// How many rows `table` holds.
pub async fn count_rows(db: &Database, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(db.pool())
        .await
        .unwrap();
    n
}

pub use weft_testkit::{header, read_topic_until};
