//! The request handlers: each turns a decoded request into the response
//! `kafka-protocol` encodes, at the version the client asked for.
//!
//! - [`mod@produce`]: appends, with the batch and producer checks.
//! - [`mod@fetch`]: reads, held until data arrives or the wait is over.
//! - [`mod@group`]: the coordinator's requests and committed offsets.
//! - `topics`: topic creation (its configs checked in `topic_config`), growth
//!   (CreatePartitions) and deletion.
//! - [`code`] and `response`: the error codes and the encoding every handler shares
//!   (re-exported here).
//! - here: the dispatch, ApiVersions, Metadata, ListOffsets, FindCoordinator and
//!   InitProducerId.

pub mod code;
pub mod fetch;
pub mod group;
pub mod produce;
mod response;
mod topic_config;
mod topics;

use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FindCoordinatorResponse, InitProducerIdResponse,
    ListOffsetsResponse, MetadataResponse, ProducerId,
    api_versions_response::ApiVersion,
    list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse},
    metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic},
};

pub use response::{Body, NODE_ID, encode, s, topic_name};

use crate::request::{APIS, Request};
use crate::shared::Shared;
use crate::store::lock;

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
        } => topics::create_topics(shared, topics, validate_only, version),
        Request::DeleteTopics(names) => topics::delete_topics(shared, names, version),
        Request::CreatePartitions {
            topics,
            validate_only,
        } => topics::create_partitions(shared, topics, validate_only, version),
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
