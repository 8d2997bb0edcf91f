//! The broker through librdkafka (the rdkafka crate), the client every weft
//! service and confluent-kafka use: admin, idempotent produce, fetch, offsets,
//! consumer groups, topics that grow, bad requests, and a restart on the same data
//! directory.
//!
//! Each scenario is written once, as a function of the [`BrokerKind`], and runs on
//! weft-broker and on a namespace of the shared Apache Kafka cluster
//! (`WEFT_TEST_KAFKA`), asserting the same client-visible outcomes on both: offsets,
//! error codes, headers, timestamps, group states. Where the two differ on purpose,
//! the expectation is per broker and says why.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication, TopicResult,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers as _, OwnedHeaders, Timestamp};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use weft_testkit::{BrokerKind, TestBroker};

/// Two tests for a scenario: one on weft-broker, one on Apache Kafka.
macro_rules! on_both {
    ($scenario:ident: $on_weft:ident, $on_kafka:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $on_weft() {
            $scenario(BrokerKind::Embedded).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn $on_kafka() {
            $scenario(BrokerKind::Kafka).await;
        }
    };
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("log.connection.close", "false");
    c
}

/// Settings of a consumer in `group` that commits only when told to.
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = config(bootstrap);
    c.set("group.id", group).set("enable.auto.commit", "false");
    c
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    config(bootstrap).create().unwrap()
}

/// Creates `topics` with the default options; each one's result.
async fn create_topics<'a>(
    admin: &AdminClient<DefaultClientContext>,
    topics: impl IntoIterator<Item = &'a NewTopic<'a>>,
) -> Vec<TopicResult> {
    admin.create_topics(topics, &admin_options()).await.unwrap()
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates `topic` (its full name) with the broker's replication factor.
async fn create(broker: &TestBroker, topic: &str, partitions: i32) {
    let results = create_topics(
        &admin(&broker.bootstrap()),
        [&NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(broker.replication()),
        )],
    )
    .await;
    assert_eq!(results, vec![Ok(topic.to_owned())]);
}

fn producer(bootstrap: &str) -> FutureProducer {
    config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A record as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    partition: i32,
    offset: i64,
    key: String,
    value: String,
    timestamp: Timestamp,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads every partition of `topic` from the beginning until `n` records arrived.
fn read_all(broker: &TestBroker, topic: &str, partitions: i32, n: usize) -> Vec<Seen> {
    let consumer: BaseConsumer =
        consumer_config(&broker.bootstrap(), &format!("{}reader", broker.prefix()))
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
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Seen {
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                value: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
                timestamp: m.timestamp(),
                headers,
            });
        }
    }
    out
}

/// The topics of the broker in this test's namespace, with their partitions'
/// replica and in-sync replica counts, once `ready` holds for them (a new topic
/// reaches every node of a cluster a moment after it was created).
async fn topics_in_namespace(
    broker: &TestBroker,
    ready: impl Fn(&BTreeMap<String, Vec<(usize, usize)>>) -> bool + Send + Sync + 'static,
) -> BTreeMap<String, Vec<(usize, usize)>> {
    let ready = std::sync::Arc::new(ready);
    let bootstrap = broker.bootstrap();
    let prefix = broker.prefix().to_owned();
    weft_testkit::eventually("the topics in metadata", Duration::from_secs(30), || {
        let (bootstrap, prefix, ready) = (bootstrap.clone(), prefix.clone(), ready.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let client: BaseConsumer = config(&bootstrap).create().unwrap();
                let md = client.fetch_metadata(None, Duration::from_secs(5)).ok()?;
                let topics: BTreeMap<String, Vec<(usize, usize)>> = md
                    .topics()
                    .iter()
                    .filter(|t| t.name().starts_with(&prefix))
                    .map(|t| {
                        let partitions = t
                            .partitions()
                            .iter()
                            .map(|p| (p.replicas().len(), p.isr().len()))
                            .collect();
                        (t.name().to_owned(), partitions)
                    })
                    .collect();
                ready(&topics).then_some(topics)
            })
            .await
            .unwrap()
        }
    })
    .await
}

async fn topics_are_created_explicitly_and_bad_requests_are_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let admin = admin(&broker.bootstrap());
    let (orders, bad, replicated) = (
        broker.topic("orders"),
        broker.topic("bad name!"),
        broker.topic("replicated"),
    );
    // One replica more than the broker has nodes: 2 on weft-broker, 4 on the cluster.
    let too_many = broker.replication() + 1;
    let results = create_topics(
        &admin,
        [
            &NewTopic::new(&orders, 3, TopicReplication::Fixed(broker.replication())),
            &NewTopic::new(&bad, 1, TopicReplication::Fixed(broker.replication())),
            &NewTopic::new(&replicated, 1, TopicReplication::Fixed(too_many)),
        ],
    )
    .await;
    assert_eq!(
        results,
        vec![
            Ok(orders.clone()),
            Err((bad.clone(), RDKafkaErrorCode::InvalidTopic)),
            Err((
                replicated.clone(),
                RDKafkaErrorCode::InvalidReplicationFactor
            )),
        ]
    );
    let again = create_topics(
        &admin,
        [&NewTopic::new(
            &orders,
            3,
            TopicReplication::Fixed(broker.replication()),
        )],
    )
    .await;
    assert_eq!(
        again,
        vec![Err((orders.clone(), RDKafkaErrorCode::TopicAlreadyExists))]
    );

    // Only the topic that was created exists, each partition on every node.
    let rf = broker.replication() as usize;
    let want = orders.clone();
    let topics = topics_in_namespace(&broker, move |t| {
        t.get(&want)
            .is_some_and(|p| p.len() == 3 && p.iter().all(|&r| r == (rf, rf)))
    })
    .await;
    assert_eq!(
        topics,
        BTreeMap::from([(orders.clone(), vec![(rf, rf); 3])])
    );
}

on_both!(topics_are_created_explicitly_and_bad_requests_are_refused:
    topics_are_created_explicitly_and_bad_requests_are_refused_on_weft_broker,
    topics_are_created_explicitly_and_bad_requests_are_refused_on_kafka);

async fn idempotent_records_come_back_in_order_with_keys_and_headers(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let events = broker.topic("events");
    create(&broker, &events, 3).await;
    let p = producer(&broker.bootstrap());
    let keys: Vec<String> = (0..300).map(|i| format!("key-{}", i % 7)).collect();
    let values: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    let before = now_ms();
    let mut sends = Vec::new();
    for (i, (key, value)) in keys.iter().zip(&values).enumerate() {
        // A repeated key, an empty and a null value, and bytes that are not UTF-8.
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_type",
                value: Some("weft.test.v1.Thing"),
            })
            .insert(Header {
                key: "ce_type",
                value: Some(""),
            })
            .insert(Header::<&[u8]> {
                key: "bin",
                value: Some(&[0xff, 0, i as u8]),
            })
            .insert(Header::<&[u8]> {
                key: "null",
                value: None,
            });
        sends.push(
            p.send(
                FutureRecord::to(&events)
                    .key(key)
                    .payload(value)
                    .headers(headers),
                Duration::from_secs(10),
            ),
        );
    }
    let mut acked = BTreeMap::new();
    for (i, s) in sends.into_iter().enumerate() {
        let delivery = s.await.expect("acknowledged");
        acked.insert(values[i].clone(), (delivery.partition, delivery.offset));
    }
    let after = now_ms();
    let records = read_all(&broker, &events, 3, 300);
    assert_eq!(records.len(), 300);
    // Each record is where its acknowledgement said, with the producer's timestamp
    // (CreateTime) and its headers as they were sent, in order.
    for r in &records {
        assert_eq!(acked[&r.value], (r.partition, r.offset), "{r:?}");
        let i: usize = r.value.parse().unwrap();
        assert_eq!(r.key, keys[i]);
        match r.timestamp {
            Timestamp::CreateTime(t) => assert!((before..=after).contains(&t), "{r:?}"),
            other => panic!("timestamp {other:?}, not CreateTime"),
        }
        assert_eq!(
            r.headers,
            vec![
                ("ce_type".to_owned(), Some(b"weft.test.v1.Thing".to_vec())),
                ("ce_type".to_owned(), Some(Vec::new())),
                ("bin".to_owned(), Some(vec![0xff, 0, i as u8])),
                ("null".to_owned(), None),
            ]
        );
    }
    // Per key, one partition, and values come back in the order they were sent.
    let mut by_key: BTreeMap<String, Vec<(i32, u32)>> = BTreeMap::new();
    for r in &records {
        by_key
            .entry(r.key.clone())
            .or_default()
            .push((r.partition, r.value.parse().unwrap()));
    }
    for (k, vs) in by_key {
        let partitions: BTreeSet<i32> = vs.iter().map(|v| v.0).collect();
        assert_eq!(partitions.len(), 1, "partitions of {k}");
        let mut sorted = vs.clone();
        sorted.sort_unstable();
        assert_eq!(vs, sorted, "order of {k}");
    }
    // Offsets are dense per partition.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &records {
        per_partition.entry(r.partition).or_default().push(r.offset);
    }
    for offsets in per_partition.values() {
        assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
    }
}

on_both!(idempotent_records_come_back_in_order_with_keys_and_headers:
    idempotent_records_come_back_in_order_with_keys_and_headers_on_weft_broker,
    idempotent_records_come_back_in_order_with_keys_and_headers_on_kafka);

/// weft-broker only: it restarts the broker on its data directory, and the shared
/// Apache Kafka cluster cannot be restarted under the other tests that use it (the
/// cluster's own restarts are `scripts/kafka restart N`, not a test's business).
#[tokio::test(flavor = "multi_thread")]
async fn records_offsets_and_producer_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    let admin = admin(&broker.bootstrap);
    let created = create_topics(&admin, [&NewTopic::new("t", 1, TopicReplication::Fixed(1))]).await;
    assert_eq!(created, vec![Ok("t".to_owned())]);
    let p = producer(&broker.bootstrap);
    for i in 0..10 {
        send(&p, "t", None, format!("before-{i}").as_bytes(), None)
            .await
            .unwrap();
    }
    let consumer: BaseConsumer = consumer_config(&broker.bootstrap, "keeper")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("t", 0, Offset::Offset(7)).unwrap();
    tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
        .await
        .unwrap()
        .unwrap();
    drop(p);
    drop(admin);
    broker.stop().await;

    let broker = support::start(dir.path()).await;
    let p = producer(&broker.bootstrap);
    send(&p, "t", None, b"after", None).await.unwrap();
    let consumer: BaseConsumer = consumer_config(&broker.bootstrap, "keeper")
        .create()
        .unwrap();
    let (records, committed) = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut records = Vec::new();
        while records.len() < 11 {
            assert!(Instant::now() < deadline, "only {records:?} read");
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.expect("a record");
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                records.push((m.offset(), value));
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("t", 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap();
        (records, committed.find_partition("t", 0).unwrap().offset())
    })
    .await
    .unwrap();
    assert_eq!(records[0], (0, "before-0".to_owned()));
    assert_eq!(records[10], (10, "after".to_owned()));
    assert_eq!(committed, Offset::Offset(7));
    broker.stop().await;
}

async fn watermarks_and_offsets_for_times_answer_from_the_log(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let w = broker.topic("w");
    create(&broker, &w, 1).await;
    let p = producer(&broker.bootstrap());
    for (i, ts) in [1_000i64, 2_000, 3_000].into_iter().enumerate() {
        let delivery = p
            .send(
                FutureRecord::<str, str>::to(&w)
                    .payload(&format!("{i}"))
                    .timestamp(ts),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!((delivery.partition, delivery.offset), (0, i as i64));
    }
    p.flush(Duration::from_secs(5)).unwrap();
    let records = read_all(&broker, &w, 1, 3);
    let timestamps: Vec<Timestamp> = records.iter().map(|r| r.timestamp).collect();
    assert_eq!(
        timestamps,
        vec![
            Timestamp::CreateTime(1_000),
            Timestamp::CreateTime(2_000),
            Timestamp::CreateTime(3_000)
        ]
    );
    let consumer: BaseConsumer = config(&broker.bootstrap())
        .set("group.id", format!("{}w", broker.prefix()))
        .create()
        .unwrap();
    let topic = w.clone();
    let (marks, by_time) = tokio::task::spawn_blocking(move || {
        let marks = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(5))
            .unwrap();
        // Before the first record, between two, exactly on one, after the last.
        let by_time = [0, 1_000, 2_500, 3_000, 3_001].map(|t| {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Offset(t))
                .unwrap();
            let found = consumer
                .offsets_for_times(tpl, Duration::from_secs(5))
                .unwrap();
            let e = found.find_partition(&topic, 0).unwrap();
            (e.offset(), e.error().err())
        });
        (marks, by_time)
    })
    .await
    .unwrap();
    assert_eq!(marks, (0, 3));
    assert_eq!(
        by_time,
        [
            (Offset::Offset(0), None),
            (Offset::Offset(0), None),
            (Offset::Offset(2), None),
            (Offset::Offset(2), None),
            // No record that late: the end.
            (Offset::End, None),
        ]
    );
}

on_both!(watermarks_and_offsets_for_times_answer_from_the_log:
    watermarks_and_offsets_for_times_answer_from_the_log_on_weft_broker,
    watermarks_and_offsets_for_times_answer_from_the_log_on_kafka);

/// The state, protocol and member count of `group`, as ListGroups and
/// DescribeGroups tell them.
fn group_state(c: &BaseConsumer, group: &str) -> (String, String, String, usize) {
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .unwrap();
    let g = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .expect("the group is listed");
    (
        g.state().to_owned(),
        g.protocol_type().to_owned(),
        g.protocol().to_owned(),
        g.members().len(),
    )
}

async fn a_consumer_group_shares_partitions_and_rebalances_when_a_member_leaves(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let shared = broker.topic("shared");
    create(&broker, &shared, 4).await;
    let bootstrap = broker.bootstrap();
    let group = format!("{}workers", broker.prefix());
    let (topic, group_id, observer_bootstrap) = (shared.clone(), group.clone(), bootstrap.clone());
    let member = move |name: &str| -> BaseConsumer {
        let c: BaseConsumer = consumer_config(&bootstrap, &group_id)
            .set("client.id", name)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("partition.assignment.strategy", "range")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
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
    let stable = |members: usize| {
        (
            "Stable".to_owned(),
            "consumer".to_owned(),
            "range".to_owned(),
            members,
        )
    };
    let topic = shared.clone();
    let (a, states, committed) = tokio::task::spawn_blocking(move || {
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
        // Both members have their partitions: the group is stable (a member may
        // still be on its way back from SyncGroup for a moment).
        let mut states = vec![loop {
            a.poll(Duration::from_millis(50));
            b.poll(Duration::from_millis(50));
            let state = group_state(&a, &group);
            if state == stable(2) {
                break state;
            }
            assert!(Instant::now() < deadline, "group never stable: {state:?}");
        }];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(5))
            .unwrap();
        a.commit(&tpl, CommitMode::Sync).unwrap();
        drop(b); // leaves the group
        loop {
            a.poll(Duration::from_millis(50));
            if assigned(&a).len() == 4 {
                break;
            }
            assert!(Instant::now() < deadline, "a never got all four partitions");
        }
        states.push(loop {
            a.poll(Duration::from_millis(50));
            let state = group_state(&a, &group);
            if state == stable(1) {
                break state;
            }
            assert!(Instant::now() < deadline, "group never stable: {state:?}");
        });
        let all = assigned(&a);
        drop(a); // the last member leaves
        let observer: BaseConsumer = config(&observer_bootstrap)
            .set("group.id", &group)
            .create()
            .unwrap();
        states.push(group_state(&observer, &group));
        let simple: BaseConsumer = config(&observer_bootstrap)
            .set("group.id", format!("{group}-simple"))
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 1, Offset::Offset(2))
            .unwrap();
        simple.commit(&tpl, CommitMode::Sync).unwrap();
        states.push(group_state(&simple, &format!("{group}-simple")));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, 0);
        let committed = observer
            .committed_offsets(tpl, Duration::from_secs(5))
            .unwrap();
        (
            all,
            states,
            committed.find_partition(&topic, 0).unwrap().offset(),
        )
    })
    .await
    .unwrap();
    assert_eq!(a, (0..4).collect());
    // An empty group keeps its committed offsets and its protocol type; it has no
    // protocol until a member joins again. A group that only ever committed (no
    // member joined) is Empty with no protocol type.
    assert_eq!(
        states,
        vec![
            stable(2),
            stable(1),
            ("Empty".to_owned(), "consumer".to_owned(), String::new(), 0),
            ("Empty".to_owned(), String::new(), String::new(), 0),
        ]
    );
    assert_eq!(committed, Offset::Offset(5));
}

on_both!(a_consumer_group_shares_partitions_and_rebalances_when_a_member_leaves:
    a_consumer_group_shares_partitions_and_rebalances_when_a_member_leaves_on_weft_broker,
    a_consumer_group_shares_partitions_and_rebalances_when_a_member_leaves_on_kafka);

async fn bad_topic_requests_are_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let admin = admin(&broker.bootstrap());
    let rf = || TopicReplication::Fixed(broker.replication());
    let name = |n: &str| broker.topic(n);
    // 249 characters is the longest name, 250 one too many.
    let longest = broker.topic(&"l".repeat(249 - broker.prefix().len()));
    let too_long = broker.topic(&"x".repeat(250 - broker.prefix().len()));
    let (no_partitions, no_replicas, compacted, log_append_time) = (
        name("no-partitions"),
        name("no-replicas"),
        name("compacted"),
        name("log-append-time"),
    );
    let (unknown_config, bad_value, configured, validated) = (
        name("unknown-config"),
        name("bad-value"),
        name("configured"),
        name("validated"),
    );
    let results = create_topics(
        &admin,
        [
            &NewTopic::new(&no_partitions, 0, rf()),
            &NewTopic::new(&no_replicas, 1, TopicReplication::Fixed(0)),
            &NewTopic::new(&longest, 1, rf()),
            &NewTopic::new(&too_long, 1, rf()),
            &NewTopic::new(&compacted, 1, rf()).set("cleanup.policy", "compact"),
            &NewTopic::new(&log_append_time, 1, rf())
                .set("message.timestamp.type", "LogAppendTime"),
            &NewTopic::new(&unknown_config, 1, rf()).set("no.such.config", "1"),
            &NewTopic::new(&bad_value, 1, rf()).set("retention.ms", "soon"),
            &NewTopic::new(&configured, 1, rf())
                .set("retention.ms", "3600000")
                .set("cleanup.policy", "delete")
                .set("message.timestamp.type", "CreateTime"),
        ],
    )
    .await;
    assert_eq!(
        results,
        vec![
            Err((no_partitions, RDKafkaErrorCode::InvalidPartitions)),
            Err((no_replicas, RDKafkaErrorCode::InvalidReplicationFactor)),
            Ok(longest.clone()),
            Err((too_long, RDKafkaErrorCode::InvalidTopic)),
            // Not Kafka: weft-broker has no log compaction and no LogAppendTime; it
            // refuses a topic it could not honour rather than ignore the config.
            match kind {
                BrokerKind::Embedded => Err((compacted.clone(), RDKafkaErrorCode::InvalidConfig)),
                BrokerKind::Kafka => Ok(compacted.clone()),
            },
            match kind {
                BrokerKind::Embedded =>
                    Err((log_append_time.clone(), RDKafkaErrorCode::InvalidConfig,)),
                BrokerKind::Kafka => Ok(log_append_time.clone()),
            },
            Err((unknown_config, RDKafkaErrorCode::InvalidConfig)),
            Err((bad_value, RDKafkaErrorCode::InvalidConfig)),
            Ok(configured.clone()),
        ]
    );

    // Validating a good topic says yes and creates nothing.
    let validate = admin
        .create_topics(
            [&NewTopic::new(&validated, 2, rf())],
            &admin_options().validate_only(true),
        )
        .await
        .unwrap();
    assert_eq!(validate, vec![Ok(validated.clone())]);

    // Deleting a topic that does not exist.
    let missing = name("missing");
    let deleted = admin
        .delete_topics(&[&missing], &admin_options())
        .await
        .unwrap();
    assert_eq!(
        deleted,
        vec![Err((missing, RDKafkaErrorCode::UnknownTopicOrPartition))]
    );

    let mut want = vec![longest, configured];
    if kind == BrokerKind::Kafka {
        want.extend([compacted, log_append_time]);
    }
    let expected: BTreeSet<String> = want.into_iter().collect();
    let expect = expected.clone();
    let topics = topics_in_namespace(&broker, move |t| {
        t.keys().cloned().collect::<BTreeSet<_>>() == expect
    })
    .await;
    assert_eq!(topics.into_keys().collect::<BTreeSet<_>>(), expected);
}

on_both!(bad_topic_requests_are_refused:
    bad_topic_requests_are_refused_on_weft_broker,
    bad_topic_requests_are_refused_on_kafka);

async fn topics_grow_and_bad_growth_is_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let admin = admin(&broker.bootstrap());
    let topic = broker.topic("growing");
    create(&broker, &topic, 2).await;
    let grow = |partitions: usize, validate: bool| {
        let (admin, topic) = (&admin, topic.clone());
        async move {
            admin
                .create_partitions(
                    [&NewPartitions::new(&topic, partitions)],
                    &admin_options().validate_only(validate),
                )
                .await
                .unwrap()
        }
    };
    let partitions_now = |want: usize| {
        topics_in_namespace(&broker, move |t| {
            t.values().next().is_some_and(|p| p.len() == want)
        })
    };

    // Validating says yes and adds nothing; then the topic grows to 4.
    assert_eq!(grow(4, true).await, vec![Ok(topic.clone())]);
    assert_eq!(grow(4, false).await, vec![Ok(topic.clone())]);
    partitions_now(4).await;

    // A new partition takes records from offset 0, beside the old ones.
    let producer = producer(&broker.bootstrap());
    for partition in [0, 3] {
        let delivered = producer
            .send(
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key("k")
                    .payload("v"),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!((delivered.partition, delivered.offset), (partition, 0));
    }

    // A topic never shrinks or stays the same size; an unknown one cannot grow.
    assert_eq!(
        grow(3, false).await,
        vec![Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions))]
    );
    assert_eq!(
        grow(4, false).await,
        vec![Err((topic.clone(), RDKafkaErrorCode::InvalidPartitions))]
    );
    // Not Kafka: one node has nowhere to place replicas by hand.
    if kind == BrokerKind::Embedded {
        let placed = admin
            .create_partitions(
                [&NewPartitions::new(&topic, 5).assign(&[&[0]])],
                &admin_options(),
            )
            .await
            .unwrap();
        assert_eq!(
            placed,
            vec![Err((
                topic.clone(),
                RDKafkaErrorCode::InvalidReplicaAssignment
            ))]
        );
    }
    let missing = broker.topic("missing");
    let refused = admin
        .create_partitions([&NewPartitions::new(&missing, 2)], &admin_options())
        .await
        .unwrap();
    assert_eq!(
        refused,
        vec![Err((missing, RDKafkaErrorCode::UnknownTopicOrPartition))]
    );
    partitions_now(4).await;
}

on_both!(topics_grow_and_bad_growth_is_refused:
    topics_grow_and_bad_growth_is_refused_on_weft_broker,
    topics_grow_and_bad_growth_is_refused_on_kafka);

/// The error a consumer that reads `topic` from `offset` sees first, or its first
/// record's offset, with `auto.offset.reset` at `reset`.
fn first_from(
    bootstrap: &str,
    prefix: &str,
    topic: &str,
    offset: i64,
    reset: &str,
) -> Result<i64, KafkaError> {
    let consumer: BaseConsumer = consumer_config(bootstrap, &format!("{prefix}from-{reset}"))
        .set("auto.offset.reset", reset)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            return m.map(|m| m.offset());
        }
        assert!(
            Instant::now() < deadline,
            "nothing from {topic} at {offset}"
        );
    }
}

/// Sends one record; its partition and offset, or the error code.
async fn send(
    p: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    payload: &[u8],
    timestamp: Option<i64>,
) -> Result<(i32, i64), Option<RDKafkaErrorCode>> {
    let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    p.send(record, Duration::from_secs(10))
        .await
        .map(|d| (d.partition, d.offset))
        .map_err(|(e, _)| e.rdkafka_error_code())
}

async fn bad_produce_and_fetch_requests_are_refused(kind: BrokerKind) {
    let broker = TestBroker::start(kind);
    let t = broker.topic("t");
    create(&broker, &t, 1).await;
    let p: FutureProducer = config(&broker.bootstrap())
        .set("message.timeout.ms", "5000")
        // Large records reach the broker, which refuses them itself.
        .set("message.max.bytes", "4000000")
        .create()
        .unwrap();
    let results = [
        // A topic nobody created (auto-creation is off on both).
        send(&p, &broker.topic("nowhere"), None, b"x", None).await,
        // A partition the topic does not have.
        send(&p, &t, Some(5), b"x", None).await,
        // Larger than message.max.bytes (1 MiB).
        send(&p, &t, None, &vec![7; 2_000_000], None).await,
        // Two hours ahead of the broker's clock.
        send(&p, &t, None, b"x", Some(now_ms() + 7_200_000)).await,
        send(&p, &t, None, b"0", None).await,
        send(&p, &t, None, b"1", None).await,
    ];
    assert_eq!(
        results,
        [
            // librdkafka waits for the topic to appear (topic.metadata.propagation.max.ms)
            // and the record's time runs out first.
            Err(Some(RDKafkaErrorCode::MessageTimedOut)),
            // Refused by librdkafka itself: metadata says the topic has one partition.
            Err(Some(RDKafkaErrorCode::UnknownPartition)),
            Err(Some(RDKafkaErrorCode::MessageSizeTooLarge)),
            Err(Some(RDKafkaErrorCode::InvalidTimestamp)),
            Ok((0, 0)),
            Ok((0, 1)),
        ]
    );

    // Reading past the end: auto.offset.reset decides.
    let (b, topic) = (broker.bootstrap(), t.clone());
    let prefix = broker.prefix().to_owned();
    let reads = tokio::task::spawn_blocking(move || {
        [
            first_from(&b, &prefix, &topic, 100, "earliest"),
            first_from(&b, &prefix, &topic, 100, "error"),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        reads,
        [
            Ok(0),
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset
            )),
        ]
    );

    // Committing an offset of a topic that does not exist.
    let consumer: BaseConsumer = config(&broker.bootstrap())
        .set("group.id", format!("{}committer", broker.prefix()))
        .create()
        .unwrap();
    let missing = broker.topic("nowhere");
    let committed = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&missing, 0, Offset::Offset(1))
            .unwrap();
        consumer.commit(&tpl, CommitMode::Sync)
    })
    .await
    .unwrap();
    assert!(
        matches!(
            committed,
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::UnknownTopicOrPartition
            ))
        ),
        "{committed:?}"
    );
}

on_both!(bad_produce_and_fetch_requests_are_refused:
    bad_produce_and_fetch_requests_are_refused_on_weft_broker,
    bad_produce_and_fetch_requests_are_refused_on_kafka);
