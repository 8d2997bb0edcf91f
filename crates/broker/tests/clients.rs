//! The broker through librdkafka (the rdkafka crate), the client every weft
//! service and confluent-kafka use: admin, idempotent produce, fetch, offsets,
//! consumer groups, and a restart on the same data directory.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("log.connection.close", "false");
    c
}

async fn create(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap).create().unwrap();
    let results = admin
        .create_topics(
            [&NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
}

fn producer(bootstrap: &str) -> FutureProducer {
    config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

/// Reads every partition of `topic` from the beginning until `n` records arrived.
fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    n: usize,
) -> Vec<(i32, i64, String, String)> {
    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records read",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("a record, not an error");
            let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
            let value = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
            out.push((m.partition(), m.offset(), key, value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_created_explicitly_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    let admin: AdminClient<DefaultClientContext> = config(&broker.bootstrap).create().unwrap();
    let opts = AdminOptions::new();
    let results = admin
        .create_topics(
            [
                &NewTopic::new("orders", 3, TopicReplication::Fixed(1)),
                &NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
                &NewTopic::new("replicated", 1, TopicReplication::Fixed(3)),
            ],
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(results[0], Ok("orders".to_owned()));
    assert!(
        matches!(results[1], Err((_, RDKafkaErrorCode::InvalidTopic))),
        "{results:?}"
    );
    assert!(
        matches!(
            results[2],
            Err((_, RDKafkaErrorCode::InvalidReplicationFactor))
        ),
        "{results:?}"
    );
    let again = admin
        .create_topics(
            [&NewTopic::new("orders", 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .unwrap();
    assert!(matches!(
        again[0],
        Err((_, RDKafkaErrorCode::TopicAlreadyExists))
    ));

    let client: BaseConsumer = config(&broker.bootstrap).create().unwrap();
    let md = tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| {
                m.topics()
                    .iter()
                    .map(|t| (t.name().to_owned(), t.partitions().len()))
                    .collect::<Vec<_>>()
            })
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(md, vec![("orders".to_owned(), 3)]);

    // Producing to a topic nobody created fails; nothing is auto-created.
    let p = config(&broker.bootstrap)
        .set("message.timeout.ms", "2000")
        .create::<FutureProducer>()
        .unwrap();
    let err = p
        .send(
            FutureRecord::<str, str>::to("nowhere").payload("x"),
            Duration::from_secs(5),
        )
        .await
        .expect_err("no such topic");
    assert!(
        matches!(
            err.0.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::MessageTimedOut)
        ),
        "{err:?}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_records_come_back_in_order_with_keys_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    create(&broker.bootstrap, "events", 3).await;
    let p = producer(&broker.bootstrap);
    let keys: Vec<String> = (0..300).map(|i| format!("key-{}", i % 7)).collect();
    let values: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let mut sends = Vec::new();
    for (key, value) in keys.iter().zip(&values) {
        let headers = OwnedHeaders::new().insert(Header {
            key: "ce_type",
            value: Some("weft.test.v1.Thing"),
        });
        sends.push(
            p.send(
                FutureRecord::to("events")
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(10),
            ),
        );
    }
    for s in sends {
        s.await.expect("acknowledged");
    }
    let records = read_all(&broker.bootstrap, "events", 3, 300);
    assert_eq!(records.len(), 300);
    // Per key, values come back in the order they were sent.
    let mut by_key: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (_, _, k, v) in &records {
        by_key
            .entry(k.clone())
            .or_default()
            .push(v.parse().unwrap());
    }
    for (k, vs) in by_key {
        let mut sorted = vs.clone();
        sorted.sort_unstable();
        assert_eq!(vs, sorted, "order of {k}");
    }
    // Offsets are dense per partition.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o, _, _) in &records {
        per_partition.entry(*p).or_default().push(*o);
    }
    for offsets in per_partition.values() {
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_offsets_and_producer_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    create(&broker.bootstrap, "t", 1).await;
    let p = producer(&broker.bootstrap);
    for i in 0..10 {
        p.send(
            FutureRecord::<str, str>::to("t").payload(&format!("before-{i}")),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    let consumer: BaseConsumer = config(&broker.bootstrap)
        .set("group.id", "keeper")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t", 0, Offset::Offset(7)).unwrap();
    tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();
    drop(p);
    broker.stop().await;

    let broker = support::start(dir.path()).await;
    let p = producer(&broker.bootstrap);
    p.send(
        FutureRecord::<str, str>::to("t").payload("after"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let records = read_all(&broker.bootstrap, "t", 1, 11);
    assert_eq!(records[0].3, "before-0");
    assert_eq!(records[10], (0, 10, String::new(), "after".to_owned()));
    let consumer: BaseConsumer = config(&broker.bootstrap)
        .set("group.id", "keeper")
        .create()
        .unwrap();
    let committed = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        consumer.committed_offsets(tpl, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        committed.find_partition("t", 0).unwrap().offset(),
        Offset::Offset(7)
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watermarks_and_offsets_for_times_answer_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    create(&broker.bootstrap, "w", 1).await;
    let p = producer(&broker.bootstrap);
    for (i, ts) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        p.send(
            FutureRecord::<str, str>::to("w")
                .payload(&format!("{i}"))
                .timestamp(ts),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    p.flush(Duration::from_secs(5)).unwrap();
    let consumer: BaseConsumer = config(&broker.bootstrap)
        .set("group.id", "w")
        .create()
        .unwrap();
    let (marks, by_time) = tokio::task::spawn_blocking(move || {
        let marks = consumer
            .fetch_watermarks("w", 0, Duration::from_secs(5))
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("w", 0, Offset::Offset(2_500))
            .unwrap();
        let by_time = consumer
            .offsets_for_times(tpl, Duration::from_secs(5))
            .unwrap();
        (marks, by_time.find_partition("w", 0).unwrap().offset())
    })
    .await
    .unwrap();
    assert_eq!(marks, (0, 3));
    assert_eq!(by_time, Offset::Offset(2));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_group_shares_partitions_and_rebalances_when_a_member_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    create(&broker.bootstrap, "shared", 4).await;
    let bootstrap = broker.bootstrap.clone();
    let member = move |name: &str| -> BaseConsumer {
        let c: BaseConsumer = config(&bootstrap)
            .set("group.id", "workers")
            .set("client.id", name)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("partition.assignment.strategy", "range")
            .create()
            .unwrap();
        c.subscribe(&["shared"]).unwrap();
        c
    };
    let assigned = |c: &BaseConsumer| -> BTreeSet<i32> {
        c.assignment()
            .unwrap()
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect()
    };
    let a = tokio::task::spawn_blocking(move || {
        let a = member("a");
        let b = member("b");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            a.poll(Duration::from_millis(50));
            b.poll(Duration::from_millis(50));
            let (pa, pb) = (assigned(&a), assigned(&b));
            if pa.len() == 2 && pb.len() == 2 {
                assert!(pa.is_disjoint(&pb));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no 2+2 assignment: {pa:?} {pb:?}"
            );
        }
        drop(b); // leaves the group
        loop {
            a.poll(Duration::from_millis(50));
            if assigned(&a).len() == 4 {
                break;
            }
            assert!(Instant::now() < deadline, "a never got all four partitions");
        }
        assigned(&a)
    })
    .await
    .unwrap();
    assert_eq!(a, (0..4).collect());
    broker.stop().await;
}
