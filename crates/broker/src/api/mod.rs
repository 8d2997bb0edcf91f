//! The request handlers: each turns a decoded request into the response
//! `kafka-protocol` encodes, at the version the client asked for.
//!
//! - [`mod@produce`]: appends, with the batch and producer checks.
//! - [`mod@fetch`]: reads, held until data arrives or the wait is over.
//! - [`mod@group`]: the coordinator's requests and committed offsets.
//! - here: ApiVersions, Metadata, topic creation, growth (CreatePartitions) and
//!   deletion, ListOffsets, FindCoordinator and InitProducerId.

pub mod fetch;
pub mod group;
pub mod produce;

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreatePartitionsResponse, CreateTopicsResponse,
    DeleteTopicsResponse, FindCoordinatorResponse, InitProducerIdResponse, ListOffsetsResponse,
    MetadataResponse, ProducerId, TopicName,
    api_versions_response::ApiVersion,
    create_partitions_response::CreatePartitionsTopicResult,
    create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult,
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::request::{APIS, NewTopic, Request};
use crate::shared::Shared;
use crate::store::{CreateError, GrowError, lock};

/// Kafka error codes the handlers answer with.
pub mod code {
    /// No error.
    pub const NONE: i16 = 0;
    /// Something unexpected.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    /// The offset is outside the log.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// A batch failed its checks.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// No such topic or partition.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// A batch larger than the broker takes.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// Not a coordinator of that kind.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// A record timestamp out of the range the broker takes.
    pub const INVALID_TIMESTAMP: i16 = 32;
    /// An illegal topic name.
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    /// `acks` other than 0, 1 or -1.
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    /// Unsupported version of a request.
    pub const UNSUPPORTED_VERSION: i16 = 35;
    /// The topic exists.
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    /// A partition count out of range.
    pub const INVALID_PARTITIONS: i16 = 37;
    /// A replication factor other than 1 (this broker is one node).
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    /// Manual replica assignments (this broker is one node).
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    /// A topic config this broker cannot honour.
    pub const INVALID_CONFIG: i16 = 40;
    /// A request this broker does not serve (transactions).
    pub const INVALID_REQUEST: i16 = 42;
    /// Not message format v2.
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    /// Writing the log failed.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// An unknown compression codec.
    pub const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    /// Records that do not parse.
    pub const INVALID_RECORD: i16 = 87;
}

/// The node id of this broker.
pub const NODE_ID: i32 = 0;

/// An encoded response body, or the reason it could not be encoded (a bug: the
/// connection is closed).
pub type Body = Result<BytesMut, String>;

/// Encodes `body` at `version`.
pub fn encode<R: Encodable>(body: &R, version: i16) -> Body {
    let mut buf = BytesMut::with_capacity(body.compute_size(version).unwrap_or(256));
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding v{version}: {e}"))?;
    Ok(buf)
}

/// A string for a response.
pub fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// A topic name for a response.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// Serves one decoded request; `None` for a Produce with `acks=0`, which has no
/// response.
pub async fn handle(
    shared: &Shared,
    request: Request,
    version: i16,
    client_id: &str,
    peer: &str,
) -> Option<Body> {
    Some(match request {
        Request::ApiVersions => api_versions(code::NONE, version),
        Request::Metadata { topics } => metadata(shared, topics, version),
        Request::Produce(p) => return produce::produce(shared, p, version),
        Request::Fetch(f) => fetch::fetch(shared, f, version).await,
        Request::ListOffsets(topics) => list_offsets(shared, topics, version),
        Request::InitProducerId { transactional_id } => {
            init_producer_id(shared, transactional_id, version)
        }
        Request::CreateTopics {
            topics,
            validate_only,
        } => create_topics(shared, topics, validate_only, version),
        Request::DeleteTopics(names) => delete_topics(shared, names, version),
        Request::CreatePartitions {
            topics,
            validate_only,
        } => create_partitions(shared, topics, validate_only, version),
        Request::FindCoordinator { key_type, .. } => find_coordinator(shared, key_type, version),
        Request::JoinGroup(j) => group::join(shared, j, version, client_id, peer).await,
        Request::SyncGroup(s) => group::sync(shared, s, version).await,
        Request::Heartbeat(m) => group::heartbeat(shared, &m, version),
        Request::LeaveGroup { group_id, members } => {
            group::leave(shared, &group_id, &members, version)
        }
        Request::OffsetCommit(c) => group::commit(shared, c, version),
        Request::OffsetFetch { group_id, topics } => {
            group::offset_fetch(shared, &group_id, topics, version)
        }
        Request::DescribeGroups(groups) => group::describe(shared, &groups, version),
        Request::ListGroups => group::list(shared, version),
    })
}

/// ApiVersions, also the answer (with `UNSUPPORTED_VERSION`, at v0) to a client that
/// asks for a newer ApiVersions than this broker speaks.
pub fn api_versions(error: i16, version: i16) -> Body {
    let keys = APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect();
    encode(
        &ApiVersionsResponse::default()
            .with_error_code(error)
            .with_api_keys(keys),
        version,
    )
}

fn metadata(shared: &Shared, topics: Option<Vec<String>>, version: i16) -> Body {
    let store = &shared.store;
    let wanted: Vec<Result<std::sync::Arc<crate::store::Topic>, String>> = match topics {
        None => store.topics().into_iter().map(Ok).collect(),
        Some(names) => names
            .into_iter()
            .map(|n| store.topic(&n).ok_or(n))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|t| match t {
            Err(name) => MetadataResponseTopic::default()
                .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                .with_name(Some(topic_name(&name))),
            Ok(t) => MetadataResponseTopic::default()
                .with_name(Some(topic_name(&t.name)))
                .with_topic_id(t.id)
                .with_partitions(
                    (0..t.partitions.len() as i32)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(NODE_ID))
                                .with_leader_epoch(0)
                                .with_replica_nodes(vec![BrokerId(NODE_ID)])
                                .with_isr_nodes(vec![BrokerId(NODE_ID)])
                        })
                        .collect(),
                ),
        })
        .collect();
    encode(
        &MetadataResponse::default()
            .with_brokers(vec![
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(NODE_ID))
                    .with_host(s(shared.node.host.clone()))
                    .with_port(shared.node.port),
            ])
            .with_cluster_id(Some(s(shared.store.cluster_id())))
            .with_controller_id(BrokerId(NODE_ID))
            .with_topics(topics),
        version,
    )
}

fn list_offsets(shared: &Shared, topics: Vec<(String, Vec<(i32, i64)>)>, version: i16) -> Body {
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let topic = shared.store.topic(&name);
            let partitions = partitions
                .into_iter()
                .map(|(index, timestamp)| {
                    let out = ListOffsetsPartitionResponse::default().with_partition_index(index);
                    let Some(p) = topic.as_ref().and_then(|t| t.partition(index)) else {
                        return out
                            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                            .with_timestamp(-1)
                            .with_offset(-1);
                    };
                    let log = lock(&p.log);
                    let (ts, offset) = match timestamp {
                        -1 => (-1, log.next_offset()),
                        -2 => (-1, log.log_start()),
                        t if t >= 0 => log
                            .offset_for_timestamp(t)
                            .map_or((-1, -1), |(o, ts)| (ts, o)),
                        _ => (-1, -1),
                    };
                    out.with_timestamp(ts)
                        .with_offset(offset)
                        .with_leader_epoch(if version >= 4 { 0 } else { -1 })
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(&name))
                .with_partitions(partitions)
        })
        .collect();
    encode(&ListOffsetsResponse::default().with_topics(topics), version)
}

fn init_producer_id(shared: &Shared, transactional_id: Option<String>, version: i16) -> Body {
    let response = if transactional_id.is_some_and(|t| !t.is_empty()) {
        tracing::warn!("a transactional producer was refused: this broker has no transactions");
        InitProducerIdResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    } else {
        match shared.store.next_producer_id() {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "allocating a producer id failed");
                InitProducerIdResponse::default()
                    .with_error_code(code::UNKNOWN_SERVER_ERROR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        }
    };
    encode(&response, version)
}

fn create_topics(
    shared: &Shared,
    topics: Vec<NewTopic>,
    validate_only: bool,
    version: i16,
) -> Body {
    let results = topics
        .into_iter()
        .map(|t| {
            let partitions = if t.partitions == -1 {
                shared.default_partitions
            } else {
                t.partitions
            };
            let config = t
                .configs
                .iter()
                .try_for_each(|(k, v)| topic_config(k, v.as_deref()));
            let (error, message) = if !matches!(t.replication, -1 | 1) {
                (
                    code::INVALID_REPLICATION_FACTOR,
                    format!(
                        "replication factor {} asked for; this broker is a single node (1)",
                        t.replication
                    ),
                )
            } else if t.assignments > 0 {
                (
                    code::INVALID_REPLICA_ASSIGNMENT,
                    "replica assignments are not supported by a single-node broker".to_owned(),
                )
            } else if let Err(why) = config {
                (code::INVALID_CONFIG, why)
            } else {
                match shared
                    .store
                    .create_topic(&t.name, partitions, validate_only)
                {
                    Ok(()) => {
                        if !validate_only {
                            tracing::info!(topic = %t.name, partitions, "topic created");
                        }
                        (code::NONE, String::new())
                    }
                    Err(CreateError::Exists) => (
                        code::TOPIC_ALREADY_EXISTS,
                        format!("topic {} already exists", t.name),
                    ),
                    Err(CreateError::InvalidName(why)) => (code::INVALID_TOPIC_EXCEPTION, why),
                    Err(CreateError::InvalidPartitions(n)) => (
                        code::INVALID_PARTITIONS,
                        format!(
                            "{n} partitions asked for; 1 to {} are allowed",
                            crate::store::MAX_PARTITIONS
                        ),
                    ),
                    Err(CreateError::Storage(e)) => {
                        tracing::error!(topic = %t.name, error = %e, "creating a topic failed");
                        (
                            code::UNKNOWN_SERVER_ERROR,
                            "the broker could not write the topic".to_owned(),
                        )
                    }
                }
            };
            CreatableTopicResult::default()
                .with_name(topic_name(&t.name))
                .with_error_code(error)
                .with_error_message((version >= 1 && error != code::NONE).then(|| s(message)))
        })
        .collect();
    encode(
        &CreateTopicsResponse::default().with_topics(results),
        version,
    )
}

/// The value types of Kafka's topic configs (`LogConfig.configNames()` of Kafka 4.1).
const TOPIC_CONFIGS: &[(&str, ConfigType)] = {
    use ConfigType::{Bool, Double, Int, List, Long, Str};
    &[
        ("cleanup.policy", List),
        ("compression.gzip.level", Int),
        ("compression.lz4.level", Int),
        ("compression.type", Str),
        ("compression.zstd.level", Int),
        ("delete.retention.ms", Long),
        ("file.delete.delay.ms", Long),
        ("flush.messages", Long),
        ("flush.ms", Long),
        ("follower.replication.throttled.replicas", List),
        ("index.interval.bytes", Int),
        ("internal.segment.bytes", Int),
        ("leader.replication.throttled.replicas", List),
        ("local.retention.bytes", Long),
        ("local.retention.ms", Long),
        ("max.compaction.lag.ms", Long),
        ("max.message.bytes", Int),
        ("message.timestamp.after.max.ms", Long),
        ("message.timestamp.before.max.ms", Long),
        ("message.timestamp.type", Str),
        ("min.cleanable.dirty.ratio", Double),
        ("min.compaction.lag.ms", Long),
        ("min.insync.replicas", Int),
        ("preallocate", Bool),
        ("remote.log.copy.disable", Bool),
        ("remote.log.delete.on.disable", Bool),
        ("remote.storage.enable", Bool),
        ("retention.bytes", Long),
        ("retention.ms", Long),
        ("segment.bytes", Int),
        ("segment.index.bytes", Int),
        ("segment.jitter.ms", Long),
        ("segment.ms", Long),
        ("unclean.leader.election.enable", Bool),
    ]
};

/// How Kafka parses a topic config's value.
#[derive(Debug, Clone, Copy)]
enum ConfigType {
    Bool,
    Double,
    Int,
    List,
    Long,
    Str,
}

/// Checks one config of a topic to create as Kafka does (a known name, a value of its
/// type; Kafka's range checks are not repeated), and refuses what this broker cannot
/// honour: compaction and LogAppendTime. The other configs are accepted; the broker's
/// own settings (`--retention`, `--max-batch-bytes`, ...) apply to every topic.
fn topic_config(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(&(_, kind)) = TOPIC_CONFIGS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        return Err(format!(
            "null value not supported for topic configs: {name}"
        ));
    };
    let v = value.trim();
    let parses = match kind {
        ConfigType::Bool => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        ConfigType::Double => v.parse::<f64>().is_ok(),
        ConfigType::Int => v.parse::<i32>().is_ok(),
        ConfigType::Long => v.parse::<i64>().is_ok(),
        ConfigType::List | ConfigType::Str => true,
    };
    if !parses {
        return Err(format!(
            "invalid value {value} for configuration {name}: not a {kind:?}"
        ));
    }
    match name {
        "cleanup.policy" => {
            for policy in v.split(',').map(str::trim) {
                match policy {
                    "delete" => {}
                    "compact" => {
                        return Err(
                            "log compaction is not supported; topics use cleanup.policy=delete"
                                .to_owned(),
                        );
                    }
                    other => {
                        return Err(format!(
                            "invalid value {other} for configuration cleanup.policy: \
                             String must be one of: compact, delete"
                        ));
                    }
                }
            }
        }
        "compression.type"
            if !matches!(
                v,
                "uncompressed" | "zstd" | "lz4" | "snappy" | "gzip" | "producer"
            ) =>
        {
            return Err(format!(
                "invalid value {v} for configuration compression.type: String must be one of: \
                 uncompressed, zstd, lz4, snappy, gzip, producer"
            ));
        }
        "message.timestamp.type" => match v {
            "CreateTime" => {}
            "LogAppendTime" => {
                return Err(
                    "LogAppendTime is not supported; records keep the producer's timestamp (CreateTime)"
                        .to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "invalid value {other} for configuration message.timestamp.type: \
                     String must be one of: CreateTime, LogAppendTime"
                ));
            }
        },
        _ => {}
    }
    Ok(())
}

fn delete_topics(shared: &Shared, names: Vec<String>, version: i16) -> Body {
    let results = names
        .into_iter()
        .map(|name| {
            let error = match shared.store.delete_topic(&name) {
                Ok(true) => {
                    if let Err(e) = lock(&shared.offsets).forget_topic(&name) {
                        tracing::warn!(topic = %name, error = %e, "forgetting a deleted topic's offsets failed");
                    }
                    tracing::info!(topic = %name, "topic deleted");
                    code::NONE
                }
                Ok(false) => code::UNKNOWN_TOPIC_OR_PARTITION,
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "deleting a topic failed");
                    code::UNKNOWN_SERVER_ERROR
                }
            };
            DeletableTopicResult::default()
                .with_name(Some(topic_name(&name)))
                .with_error_code(error)
        })
        .collect();
    encode(
        &DeleteTopicsResponse::default().with_responses(results),
        version,
    )
}

fn create_partitions(
    shared: &Shared,
    topics: Vec<(String, i32, bool)>,
    validate_only: bool,
    version: i16,
) -> Body {
    let results = topics
        .into_iter()
        .map(|(name, count, assigned)| {
            let (error, message) = if assigned {
                (
                    code::INVALID_REPLICA_ASSIGNMENT,
                    "replica assignments are not supported by a single-node broker".to_owned(),
                )
            } else {
                match shared.store.add_partitions(&name, count, validate_only) {
                    Ok(before) => {
                        if !validate_only {
                            tracing::info!(topic = %name, before, partitions = count, "partitions added");
                        }
                        (code::NONE, String::new())
                    }
                    Err(GrowError::UnknownTopic) => (
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("there is no topic {name}"),
                    ),
                    Err(GrowError::InvalidPartitions { asked, now }) => (
                        code::INVALID_PARTITIONS,
                        format!(
                            "topic {name} has {now} partition(s); {asked} asked for, and a topic only grows, to at most {}",
                            crate::store::MAX_PARTITIONS
                        ),
                    ),
                    Err(GrowError::Storage(e)) => {
                        tracing::error!(topic = %name, error = %e, "adding partitions failed");
                        (
                            code::UNKNOWN_SERVER_ERROR,
                            "the broker could not write the new partitions".to_owned(),
                        )
                    }
                }
            };
            CreatePartitionsTopicResult::default()
                .with_name(topic_name(&name))
                .with_error_code(error)
                .with_error_message((error != code::NONE).then(|| s(message)))
        })
        .collect();
    encode(
        &CreatePartitionsResponse::default().with_results(results),
        version,
    )
}

fn find_coordinator(shared: &Shared, key_type: i8, version: i16) -> Body {
    let response = if key_type == 0 {
        FindCoordinatorResponse::default()
            .with_node_id(BrokerId(NODE_ID))
            .with_host(s(shared.node.host.clone()))
            .with_port(shared.node.port)
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(code::COORDINATOR_NOT_AVAILABLE)
            .with_error_message(
                (version >= 1).then(|| s("this broker has no transaction coordinator")),
            )
            .with_node_id(BrokerId(-1))
            .with_host(s(""))
            .with_port(-1)
    };
    encode(&response, version)
}

/// The key of `api`, for logs.
pub fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| format!("api {key}"), |k| format!("{k:?}"))
}
