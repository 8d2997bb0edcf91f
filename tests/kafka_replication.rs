//! Apache Kafka's replication, as weft relies on it (the check of Kafka's own
//! replication system test): an idempotent producer with `acks=all` — weft's producer
//! settings — writes numbered records to a topic of replication factor 3 and
//! `min.insync.replicas` 2 while a consumer reads them; the partition's leader is
//! SIGKILLed and restarted three times. Every acknowledged record is consumed, none
//! twice. With two of the three nodes down a write fails instead of being
//! acknowledged, and after they return nothing acknowledged is missing.
//!
//! The test runs a 3-node cluster of its own (`scripts/kafka` on free ports), since it
//! kills nodes. So does the check of `weft up --broker kafka`, which starts a local
//! cluster with the mesh and stops it with the mesh.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::cluster::{Cluster, free_base, script};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weft_events::kafka::KafkaArgs;

const TOPIC: &str = "replicated";

/// The leader of partition 0 and its in-sync replicas, once the partition has one.
fn leader(admin: &AdminClient<DefaultClientContext>) -> (i32, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(md) = admin
            .inner()
            .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
            && let Some(p) = md.topics().first().and_then(|t| t.partitions().first())
            && p.leader() >= 1
        {
            return (p.leader(), p.isr().len());
        }
        assert!(Instant::now() < deadline, "partition 0 has no leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Numbers acknowledged by the broker.
type Acked = Arc<Mutex<Vec<u64>>>;

/// Sends numbered records one at a time (each after the last's acknowledgement or
/// failure) until `stop`; records each acknowledged number.
async fn produce(
    producer: FutureProducer,
    acked: Acked,
    next: Arc<Mutex<u64>>,
    stop: tokio_util::sync::CancellationToken,
) {
    while !stop.is_cancelled() {
        let n = {
            let mut next = next.lock().unwrap();
            *next += 1;
            *next
        };
        let payload = n.to_string();
        let sent = producer
            .send(
                FutureRecord::to(TOPIC).key("k").payload(&payload),
                Duration::from_secs(5),
            )
            .await;
        if sent.is_ok() {
            acked.lock().unwrap().push(n);
        }
    }
}

fn wait_for_more(acked: &Acked, than: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked.lock().unwrap().len() < than {
        assert!(Instant::now() < deadline, "no progress: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record of the topic, from the beginning to its end now, counted by number.
fn read_all(bootstrap: &str) -> BTreeMap<u64, usize> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, 0, Duration::from_secs(30))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = BTreeMap::new();
    let mut position = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while position < high {
        assert!(Instant::now() < deadline, "read {position} of {high}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            position = m.offset() + 1;
            let n: u64 = std::str::from_utf8(m.payload().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            *seen.entry(n).or_default() += 1;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_and_doubles_no_acknowledged_record() {
    let cluster = Cluster::start();
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &cluster.bootstrap)
        .create()
        .unwrap();
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created = admin
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // weft's own producer settings: idempotent, acks=all.
    let mut producer_config =
        KafkaArgs::new(cluster.bootstrap.clone()).producer("replication-test");
    producer_config.set("message.timeout.ms", "60000");
    let producer: FutureProducer = producer_config.create().unwrap();
    let acked: Acked = Arc::default();
    let next = Arc::new(Mutex::new(0u64));
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(produce(producer, acked.clone(), next, stop.clone()));

    // A reader follows the writes the whole time, as a service's consumer would.
    let bootstrap = cluster.bootstrap.clone();
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still = reading.clone();
    let follower = std::thread::spawn(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "replication-follower")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        let mut read = 0usize;
        while still.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                read += 1;
            }
        }
        read
    });

    let (cluster, others) = tokio::task::spawn_blocking({
        let acked = acked.clone();
        move || {
            let admin = admin_of(&cluster.bootstrap);
            wait_for_more(&acked, 50, "before the first kill");
            for round in 1..=3 {
                let (old, _) = leader(&admin);
                let before = acked.lock().unwrap().len();
                cluster.kill(old);
                wait_for_more(
                    &acked,
                    before + 50,
                    &format!("round {round}: under a new leader"),
                );
                let (new, _) = leader(&admin);
                assert_ne!(new, old, "round {round}: a new leader was elected");
                cluster.restart(old);
                // Back in sync before the next round: three replicas again.
                let deadline = Instant::now() + Duration::from_secs(90);
                while leader(&admin).1 < 3 {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: node {old} never caught up"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            // Two of three down (the leader stays).
            let (lead, _) = leader(&admin);
            let others: Vec<i32> = (1..=3).filter(|n| *n != lead).collect();
            for n in &others {
                cluster.kill(*n);
            }
            (cluster, others)
        }
    })
    .await
    .unwrap();
    stop.cancel();
    writer.await.unwrap();

    // A write now is refused or times out: never acknowledged.
    let mut short = KafkaArgs::new(cluster.bootstrap.clone()).producer("replication-outage");
    short.set("message.timeout.ms", "8000");
    let outage: FutureProducer = short.create().unwrap();
    let refused = outage
        .send(
            FutureRecord::to(TOPIC).key("k").payload("0"),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        refused.is_err(),
        "a write with two of three nodes down was acknowledged"
    );
    let cluster = tokio::task::spawn_blocking(move || {
        for n in &others {
            cluster.restart(*n);
        }
        cluster
    })
    .await
    .unwrap();

    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let followed = follower.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    let bootstrap = cluster.bootstrap.clone();
    let seen = tokio::task::spawn_blocking(move || read_all(&bootstrap))
        .await
        .unwrap();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|n| !seen.contains_key(n))
        .collect();
    let doubled: Vec<u64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    println!(
        "acknowledged {}, in the log {}, read while the leaders changed {followed}, lost {}, doubled {}",
        acked.len(),
        seen.len(),
        lost.len(),
        doubled.len()
    );
    assert!(
        acked.len() > 200,
        "three rounds of writes were acknowledged"
    );
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    assert!(doubled.is_empty(), "records written twice: {doubled:?}");
    assert!(followed > 0, "the follower read while the leaders changed");
    drop(cluster);
}

fn admin_of(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap()
}

/// `weft up --broker kafka --check`: the launcher starts a one-node Apache Kafka with
/// `scripts/kafka` under its data dir, provisions the topics there, brings the mesh up
/// healthy, and on the way out stops the cluster: no JVM is left behind. A node count
/// Kafka's quorum cannot use, or a first port whose listeners would pass 65535, is
/// refused as a usage error.
#[test]
fn up_with_a_local_kafka_starts_it_and_leaves_no_jvm_behind() {
    let dir = tempfile::tempdir().unwrap();
    let ports = support::Ports::free();
    let base = free_base();
    let up = |extra: &[&str]| {
        let mut c = support::up_command(dir.path(), &ports);
        c.args(["--broker", "kafka", "--kafka-port", &base.to_string()])
            .args(extra)
            .env("WEFT_KAFKA_SCRIPT", script())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };

    let refused = up(&["--kafka-nodes", "4", "--check"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--kafka-nodes"),
        "{refused:?}"
    );

    // Its nodes' listeners run up to the first port + 202.
    let mut bad_port = support::up_command(dir.path(), &ports);
    bad_port.args(["--broker", "kafka", "--kafka-port", "65500", "--check"]);
    let refused = bad_port.output().unwrap();
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--kafka-port"),
        "{refused:?}"
    );

    let mut child = up(&["--kafka-nodes", "1", "--check"]).spawn().unwrap();
    // The node's pid while it runs (its pid file goes when it stops).
    let pid_file = dir.path().join("kafka/node-1/pid");
    let deadline = Instant::now() + Duration::from_secs(180);
    let jvm: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "weft up ended before the Kafka node had a pid file: {:?}",
            child.wait_with_output()
        );
        assert!(Instant::now() < deadline, "no Kafka node pid file");
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("starting Apache Kafka (1 node, data in"),
        "{stdout}"
    );
    assert!(stdout.contains("provisioning"), "{stdout}");
    assert!(stdout.contains("stopped kafka"), "{stdout}");
    assert!(
        !std::path::Path::new(&format!("/proc/{jvm}")).exists(),
        "the Kafka node (pid {jvm}) outlived weft up --check"
    );
    assert!(!pid_file.exists(), "the node's pid file is left");
    // The cluster's data stays with the mesh's for the next start.
    assert!(dir.path().join("kafka/node-1").is_dir());
}
