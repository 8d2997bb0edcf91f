//! The broker on the wire, with requests encoded by `kafka-protocol` (an encoder
//! independent of the broker's own decoders): every version of every API it
//! advertises is answered and decodes, and hostile bytes close only their own
//! connection.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use bytes::{BufMut as _, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, SyncGroupRequest, TopicName,
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::CreatableTopic,
    fetch_request::{FetchPartition, FetchTopic},
    join_group_request::JoinGroupRequestProtocol,
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use support::Raw;
use weft_broker::request::APIS;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

fn batch(values: &[&str], producer: (i64, i16, i32)) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.2 + i as i32,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

fn fetch(topic: &str, offset: i64, wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

async fn create_topic(raw: &mut Raw, topic: &str) {
    let r = raw
        .call(
            &CreateTopicsRequest::default()
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(name(topic))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ])
                .with_timeout_ms(5000),
            4,
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
}

/// A broker on a fresh data directory (kept until the returned one is dropped) with
/// the one-partition topic `t`, and the raw connection that created it.
async fn broker_with_t() -> (tempfile::TempDir, support::Running, Raw) {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    let mut raw = Raw::connect(&broker.bootstrap).await;
    create_topic(&mut raw, "t").await;
    (dir, broker, raw)
}

fn range(key: kafka_protocol::messages::ApiKey) -> std::ops::RangeInclusive<i16> {
    let api = APIS.iter().find(|a| a.key == key).unwrap();
    api.min..=api.max
}

/// Calls every version of `R`'s API that the broker advertises, with `request(v)`,
/// and hands each answer to `check` with its version.
async fn every_version<R: Request>(
    raw: &mut Raw,
    request: impl Fn(i16) -> R,
    mut check: impl FnMut(i16, R::Response),
) {
    for v in range(ApiKey::try_from(R::KEY).unwrap()) {
        let response = raw.call(&request(v), v).await;
        check(v, response);
    }
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_owned()))
}

#[tokio::test]
async fn every_advertised_version_of_every_api_is_answered() {
    let (_dir, broker, mut raw) = broker_with_t().await;

    let versions = |v| {
        let req = ApiVersionsRequest::default();
        if v < 3 {
            return req;
        }
        req.with_client_software_name(StrBytes::from_static_str("test"))
            .with_client_software_version(StrBytes::from_static_str("1"))
    };
    every_version(&mut raw, versions, |v, r| {
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
        assert_eq!(r.api_keys.len(), APIS.len());
    })
    .await;
    let topics = || vec![MetadataRequestTopic::default().with_name(Some(name("t")))];
    every_version(
        &mut raw,
        |_| MetadataRequest::default().with_topics(Some(topics())),
        |v, r| {
            assert_eq!(r.topics.len(), 1, "Metadata v{v}");
            assert_eq!(r.topics[0].partitions.len(), 1);
            assert_eq!(r.brokers.len(), 1);
        },
    )
    .await;
    let mut next = 0;
    every_version(
        &mut raw,
        |_| produce("t", batch(&["a", "b"], (-1, -1, -1))),
        |v, r| {
            let p = &r.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, next), "Produce v{v}");
            next += 2;
        },
    )
    .await;
    every_version(
        &mut raw,
        |_| fetch("t", 0, 100),
        |v, r| {
            let p = &r.responses[0].partitions[0];
            assert_eq!(p.error_code, 0, "Fetch v{v}");
            assert_eq!(p.high_watermark, next);
            assert!(p.records.as_ref().is_some_and(|r| !r.is_empty()));
        },
    )
    .await;
    let latest = || {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
            ])
    };
    every_version(
        &mut raw,
        |_| latest(),
        |v, r| assert_eq!(r.topics[0].partitions[0].offset, next, "ListOffsets v{v}"),
    )
    .await;
    every_version(
        &mut raw,
        |_| InitProducerIdRequest::default().with_transaction_timeout_ms(1000),
        |v, r| {
            assert_eq!(r.error_code, 0, "InitProducerId v{v}");
            assert!(r.producer_id.0 >= 0);
        },
    )
    .await;
    let made = |v| {
        CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(&format!("made-v{v}")))
                    .with_num_partitions(2)
                    .with_replication_factor(-1),
            ])
            .with_timeout_ms(1000)
    };
    every_version(&mut raw, made, |v, r| {
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    })
    .await;
    let grown = |v| {
        CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name("made-v4"))
                    .with_count(3 + i32::from(v))
                    .with_assignments(None),
            ])
            .with_timeout_ms(1000)
    };
    every_version(&mut raw, grown, |v, r| {
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    })
    .await;
    let deleted = |v: i16| {
        DeleteTopicsRequest::default()
            .with_topic_names(vec![name(&format!("made-v{}", v + 1))])
            .with_timeout_ms(1000)
    };
    every_version(&mut raw, deleted, |v, r| {
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    })
    .await;
    every_version(
        &mut raw,
        |_| FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        |v, r| {
            assert_eq!(
                (r.error_code, r.port),
                (0, support_port(&broker.bootstrap)),
                "FindCoordinator v{v}"
            );
        },
    )
    .await;
    let commit = |v| {
        OffsetCommitRequest::default()
            .with_group_id(group_id("simple"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_committed_offset(i64::from(v))
                            .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                    ]),
            ])
    };
    every_version(&mut raw, commit, |v, r| {
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    })
    .await;
    let committed = || {
        OffsetFetchRequest::default()
            .with_group_id(group_id("simple"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]),
            ]))
    };
    every_version(
        &mut raw,
        |_| committed(),
        |v, r| {
            assert_eq!(
                r.topics[0].partitions[0].committed_offset, 7,
                "OffsetFetch v{v}"
            );
        },
    )
    .await;
    for v in range(ApiKey::JoinGroup) {
        let group = format!("g{v}");
        // The other calls of the group's life, at the same version or their newest.
        let at = |key| v.min(*range(key).end());
        let req = |member: StrBytes| {
            JoinGroupRequest::default()
                .with_group_id(group_id(&group))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(member)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"sub")),
                ])
        };
        let mut r = raw.call(&req(StrBytes::default()), v).await;
        if v >= 4 {
            assert_eq!(
                r.error_code, 79,
                "JoinGroup v{v} asks for a member id first"
            );
            r = raw.call(&req(r.member_id.clone()), v).await;
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert_eq!(r.leader, r.member_id);
        let member = r.member_id.clone();
        let sync_v = at(ApiKey::SyncGroup);
        let sync = SyncGroupRequest::default()
            .with_group_id(group_id(&group))
            .with_generation_id(r.generation_id)
            .with_member_id(member.clone());
        let s = raw.call(&sync, sync_v).await;
        assert_eq!(s.error_code, 0, "SyncGroup v{sync_v}");
        let hb_v = at(ApiKey::Heartbeat);
        let heartbeat = HeartbeatRequest::default()
            .with_group_id(group_id(&group))
            .with_generation_id(r.generation_id)
            .with_member_id(member.clone());
        let h = raw.call(&heartbeat, hb_v).await;
        assert_eq!(h.error_code, 0, "Heartbeat v{hb_v}");
        let leave_v = at(ApiKey::LeaveGroup);
        let mut leave = LeaveGroupRequest::default().with_group_id(group_id(&group));
        if leave_v >= 3 {
            leave = leave.with_members(vec![
                kafka_protocol::messages::leave_group_request::MemberIdentity::default()
                    .with_member_id(member),
            ]);
        } else {
            leave = leave.with_member_id(member);
        }
        let l = raw.call(&leave, leave_v).await;
        assert_eq!(l.error_code, 0, "LeaveGroup v{leave_v}");
    }
    every_version(
        &mut raw,
        |_| DescribeGroupsRequest::default().with_groups(vec![group_id("simple")]),
        |v, r| {
            assert_eq!(
                r.groups[0].group_state.as_str(),
                "Empty",
                "DescribeGroups v{v}"
            );
        },
    )
    .await;
    every_version(
        &mut raw,
        |_| ListGroupsRequest::default(),
        |v, r| {
            assert!(
                r.groups.iter().any(|g| g.group_id.0.as_str() == "simple"),
                "ListGroups v{v}"
            );
        },
    )
    .await;
    broker.stop().await;
}

fn support_port(bootstrap: &str) -> i32 {
    bootstrap.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[tokio::test]
async fn a_damaged_batch_is_refused_and_leaves_nothing_in_the_log() {
    let (_dir, broker, mut raw) = broker_with_t().await;
    let good = batch(&["hello"], (-1, -1, -1));

    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let mut truncated = good.to_vec();
    truncated.truncate(good.len() - 1);
    let mut magic = good.to_vec();
    magic[16] = 1;
    let cases: Vec<(&str, Bytes, i16)> = vec![
        ("crc", flipped.into(), 2),
        ("truncated", truncated.into(), 2),
        ("magic", magic.into(), 43),
        ("empty", Bytes::new(), 2),
        ("garbage", Bytes::from_static(&[0xab; 100]), 43),
    ];
    for (what, records, code) in cases {
        let r = raw.call(&produce("t", records), 8).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, code, "{what}");
        assert!(p.error_message.is_some(), "{what} says why");
    }
    let r = raw
        .call(
            &produce("t", batch(&["x"], (-1, -1, -1))).with_transactional_id(Some(
                kafka_protocol::messages::TransactionalId(StrBytes::from_static_str("tx")),
            )),
            8,
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 42);
    let r = raw.call(&produce("nope", good.clone()), 8).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);

    // Nothing of the refused batches is there; the next good one gets offset 0.
    let r = raw.call(&produce("t", good), 8).await;
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 0);
    let f = raw.call(&fetch("t", 5, 0), 11).await;
    assert_eq!(
        f.responses[0].partitions[0].error_code, 1,
        "offset out of range"
    );
    broker.stop().await;
}

#[tokio::test]
async fn a_producer_retry_is_answered_with_the_first_offset_and_a_gap_is_refused() {
    let (_dir, broker, mut raw) = broker_with_t().await;
    let id = raw
        .call(
            &InitProducerIdRequest::default().with_transaction_timeout_ms(1000),
            4,
        )
        .await
        .producer_id
        .0;
    let first = batch(&["a", "b"], (id, 0, 0));
    for _ in 0..2 {
        let r = raw.call(&produce("t", first.clone()), 8).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0));
    }
    let gap = raw.call(&produce("t", batch(&["c"], (id, 0, 5))), 8).await;
    assert_eq!(gap.responses[0].partition_responses[0].error_code, 45);
    let next = raw.call(&produce("t", batch(&["c"], (id, 0, 2))), 8).await;
    assert_eq!(next.responses[0].partition_responses[0].base_offset, 2);
    broker.stop().await;
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.put_i32(body.len() as i32);
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn hostile_frames_close_their_own_connection_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::start(dir.path()).await;
    // A client that announces a frame and never sends it holds only its connection.
    let mut slow = Raw::connect(&broker.bootstrap).await;
    slow.send_bytes(&(8 * 1024 * 1024i32).to_be_bytes()).await;

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        // Metadata v0 whose topic array claims 54 million entries (the 8-byte input
        // that aborts kafka-protocol's own decoder).
        (
            "huge array",
            frame(&[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 3, 0x3c, 0x0c, 0]),
        ),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("oversize frame", (1i32 << 30).to_be_bytes().to_vec()),
        ("short frame", frame(&[0, 18])),
        (
            "unknown api",
            frame(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff]),
        ),
        (
            "unsupported version",
            frame(&[0, 1, 0, 99, 0, 0, 0, 1, 0xff, 0xff]),
        ),
        (
            "truncated body",
            frame(&[0, 0, 0, 8, 0, 0, 0, 1, 0xff, 0xff, 0, 0]),
        ),
        (
            "bad utf-8 client id",
            frame(&[0, 18, 0, 0, 0, 0, 0, 1, 0, 2, 0xff, 0xfe]),
        ),
        (
            "trailing bytes",
            frame(&[0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 9, 9, 9]),
        ),
    ];
    for (what, bytes) in hostile {
        let mut raw = Raw::connect(&broker.bootstrap).await;
        raw.send_bytes(&bytes).await;
        assert!(raw.closed().await, "{what}: the connection is closed");
    }
    // Random frames, too: each one closes its connection or is answered.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let mut body = Vec::new();
        let len = 8 + (seed % 64) as usize;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.push(seed as u8);
        }
        body[0] = 0;
        body[1] = (seed % 20) as u8;
        body[2] = 0;
        body[3] = (seed % 12) as u8;
        let mut raw = Raw::connect(&broker.bootstrap).await;
        raw.send_bytes(&frame(&body)).await;
        let _ = raw.read_frame().await;
    }
    // A newer ApiVersions than the broker speaks gets the v0 answer to negotiate.
    let mut raw = Raw::connect(&broker.bootstrap).await;
    raw.send_bytes(&frame(&[0, 18, 0, 9, 0, 0, 0, 7, 0xff, 0xff]))
        .await;
    let answer = raw.read_frame().await.expect("an answer");
    assert_eq!(&answer[0..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&answer[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // And the broker still serves.
    let mut raw = Raw::connect(&broker.bootstrap).await;
    let r = raw.call(&ApiVersionsRequest::default(), 0).await;
    assert_eq!(r.error_code, 0);
    drop(slow);
    broker.stop().await;
}

#[tokio::test]
async fn a_held_fetch_is_answered_by_the_next_append() {
    let (_dir, broker, mut raw) = broker_with_t().await;
    // The consumer's connection is served before its fetch goes out, so the window
    // below starts with the fetch on its way, not with a connection still opening.
    let mut consumer = Raw::connect(&broker.bootstrap).await;
    let r = consumer.call(&ApiVersionsRequest::default(), 0).await;
    assert_eq!(r.error_code, 0);
    // Waits up to 30 s; it is the append, not the timer, that answers it.
    let held = tokio::spawn(async move { consumer.call(&fetch("t", 0, 30_000), 11).await });
    // A fixed window: a held fetch gives no sign of being held but its silence.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "an empty fetch is held");
    let r = raw
        .call(&produce("t", batch(&["wake"], (-1, -1, -1))), 8)
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = tokio::time::timeout(std::time::Duration::from_secs(20), held)
        .await
        .expect("answered well before its 30 s wait")
        .unwrap();
    assert!(f.responses[0].partitions[0].records.is_some());
    broker.stop().await;
}
