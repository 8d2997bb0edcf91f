//! The requests this broker serves, the versions of each it accepts, and their
//! decoders (see [`crate::wire`] for why they are written here).
//!
//! The version ranges are what librdkafka 2.x (and so confluent-kafka, rdkafka and
//! kcat builds of it) negotiates against a Kafka 2.x/3.x broker, capped below the first
//! flexible version wherever nothing is gained by going further. Fields follow
//! Apache Kafka's message schemas (`clients/src/main/resources/common/message`).

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::wire::{Reader, WireError};

/// One supported API: its key, the versions accepted, and the first flexible one.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    /// The API key.
    pub key: ApiKey,
    /// Oldest version accepted.
    pub min: i16,
    /// Newest version accepted.
    pub max: i16,
    /// First version in the flexible encoding.
    pub flexible_from: i16,
}

/// Every API the broker answers.
pub const APIS: &[Api] = &[
    api(ApiKey::Produce, 3, 8, 9),
    api(ApiKey::Fetch, 4, 11, 12),
    api(ApiKey::ListOffsets, 1, 5, 6),
    api(ApiKey::Metadata, 0, 8, 9),
    api(ApiKey::OffsetCommit, 2, 7, 8),
    api(ApiKey::OffsetFetch, 1, 5, 6),
    api(ApiKey::FindCoordinator, 0, 2, 3),
    api(ApiKey::JoinGroup, 0, 5, 6),
    api(ApiKey::Heartbeat, 0, 3, 4),
    api(ApiKey::LeaveGroup, 0, 3, 4),
    api(ApiKey::SyncGroup, 0, 3, 4),
    api(ApiKey::DescribeGroups, 0, 4, 5),
    api(ApiKey::ListGroups, 0, 2, 3),
    api(ApiKey::ApiVersions, 0, 3, 3),
    api(ApiKey::CreateTopics, 2, 4, 5),
    api(ApiKey::DeleteTopics, 1, 3, 4),
    api(ApiKey::CreatePartitions, 0, 1, 2),
    api(ApiKey::InitProducerId, 0, 4, 2),
];

const fn api(key: ApiKey, min: i16, max: i16, flexible_from: i16) -> Api {
    Api {
        key,
        min,
        max,
        flexible_from,
    }
}

/// The supported API for `key`, if any.
pub fn find(key: i16) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key as i16 == key)
}

/// The request header (v1, or v2 with tagged fields for flexible requests).
#[derive(Debug, Clone)]
pub struct Header {
    /// Which API.
    pub api_key: i16,
    /// Which version of it.
    pub api_version: i16,
    /// Echoed in the response.
    pub correlation_id: i32,
    /// The client's name, for logs and group members.
    pub client_id: String,
}

/// Reads the fixed start of a frame: key, version and correlation id, enough to
/// answer even a request that cannot be served.
pub fn peek_header(frame: &Bytes) -> Result<(i16, i16, i32), WireError> {
    let mut r = Reader::new(frame.slice(..frame.len().min(8)), false);
    Ok((r.i16()?, r.i16()?, r.i32()?))
}

/// Splits a frame into its header and a reader positioned on the body.
pub fn read_header(frame: Bytes, api: &Api) -> Result<(Header, Reader), WireError> {
    let mut r = Reader::new(frame, false);
    let api_key = r.i16()?;
    let api_version = r.i16()?;
    let correlation_id = r.i32()?;
    // The client id stays a classic string even in header v2.
    let client_id = r.nullable_string()?.unwrap_or_default();
    let flexible = api_version >= api.flexible_from;
    let mut body = Reader::new(r.rest(), flexible);
    body.tagged_fields()?;
    Ok((
        Header {
            api_key,
            api_version,
            correlation_id,
            client_id,
        },
        body,
    ))
}

/// A decoded request.
#[derive(Debug, Clone)]
pub enum Request {
    /// ApiVersions.
    ApiVersions,
    /// Metadata: `None` asks for every topic.
    Metadata {
        /// The topics asked for.
        topics: Option<Vec<String>>,
    },
    /// Produce.
    Produce(Produce),
    /// Fetch.
    Fetch(Fetch),
    /// ListOffsets: (topic, [(partition, timestamp)]).
    ListOffsets(Vec<(String, Vec<(i32, i64)>)>),
    /// InitProducerId.
    InitProducerId {
        /// Set by transactional producers, which this broker does not serve.
        transactional_id: Option<String>,
    },
    /// CreateTopics.
    CreateTopics {
        /// The topics to create.
        topics: Vec<NewTopic>,
        /// Check only.
        validate_only: bool,
    },
    /// DeleteTopics.
    DeleteTopics(Vec<String>),
    /// CreatePartitions: grow topics to new partition counts.
    CreatePartitions {
        /// (topic, new count, whether replica assignments were given).
        topics: Vec<(String, i32, bool)>,
        /// Check only.
        validate_only: bool,
    },
    /// FindCoordinator.
    FindCoordinator {
        /// Group id (or transactional id).
        key: String,
        /// 0 group, 1 transaction.
        key_type: i8,
    },
    /// JoinGroup.
    JoinGroup(JoinGroup),
    /// SyncGroup.
    SyncGroup(SyncGroup),
    /// Heartbeat.
    Heartbeat(MemberRef),
    /// LeaveGroup: the group and the leaving (member id, instance id)s.
    LeaveGroup {
        /// The group.
        group_id: String,
        /// Who leaves.
        members: Vec<(String, Option<String>)>,
    },
    /// OffsetCommit.
    OffsetCommit(OffsetCommit),
    /// OffsetFetch: `topics` `None` asks for every committed partition.
    OffsetFetch {
        /// The group.
        group_id: String,
        /// (topic, partitions).
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    /// DescribeGroups.
    DescribeGroups(Vec<String>),
    /// ListGroups.
    ListGroups,
}

/// A topic's partitions and their records, as Produce carries them.
pub type ProduceTopic = (String, Vec<(i32, Option<Bytes>)>);

/// A topic's partitions with (partition, offset, metadata), as OffsetCommit carries them.
pub type CommitTopic = (String, Vec<(i32, i64, Option<String>)>);

/// A Produce request.
#[derive(Debug, Clone)]
pub struct Produce {
    /// Set by transactional producers.
    pub transactional_id: Option<String>,
    /// 0: no response; 1 or -1: answer once written.
    pub acks: i16,
    /// (topic, [(partition, records)]).
    pub topics: Vec<ProduceTopic>,
}

/// A Fetch request.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Longest wait for `min_bytes`.
    pub max_wait_ms: i32,
    /// Bytes to wait for.
    pub min_bytes: i32,
    /// Cap of the whole response.
    pub max_bytes: i32,
    /// (topic, partitions).
    pub topics: Vec<(String, Vec<FetchPartition>)>,
}

/// One partition of a Fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchPartition {
    /// The partition.
    pub partition: i32,
    /// Where to read from.
    pub fetch_offset: i64,
    /// Cap for this partition.
    pub max_bytes: i32,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// Partitions (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the default, 1).
    pub replication: i16,
    /// Manual replica assignments given (unsupported when non-empty).
    pub assignments: usize,
    /// Configs given.
    pub configs: Vec<(String, Option<String>)>,
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    /// The group.
    pub group_id: String,
    /// Without a heartbeat for this long, the member is removed.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: i32,
    /// Empty on the first join.
    pub member_id: String,
    /// Static membership.
    pub group_instance_id: Option<String>,
    /// E.g. `consumer`.
    pub protocol_type: String,
    /// (assignor name, subscription metadata), in preference order.
    pub protocols: Vec<(String, Bytes)>,
}

/// A member's identity in a generation.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The group.
    pub group_id: String,
    /// The generation it believes in.
    pub generation_id: i32,
    /// Its member id.
    pub member_id: String,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    /// Who syncs.
    pub member: MemberRef,
    /// The leader's (member id, assignment)s; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Who commits (generation -1 and no member id: a commit outside the group).
    pub member: MemberRef,
    /// (topic, [(partition, offset, metadata)]).
    pub topics: Vec<CommitTopic>,
}

/// Decodes the body of a request of `api` at `version`.
pub fn decode(api: &Api, version: i16, mut r: Reader) -> Result<Request, WireError> {
    let v = version;
    let request = match api.key {
        ApiKey::ApiVersions => {
            if v >= 3 {
                r.string()?;
                r.string()?;
            }
            Request::ApiVersions
        }
        ApiKey::Metadata => {
            let item = |r: &mut Reader| {
                let name = r.string()?;
                r.tagged_fields()?;
                Ok(name)
            };
            let topics = if v == 0 {
                // v0 has no null: an empty list means every topic.
                Some(r.array(item)?).filter(|t| !t.is_empty())
            } else {
                r.nullable_array(item)?
            };
            if v >= 4 {
                r.bool()?;
            }
            if v >= 8 {
                r.bool()?;
                r.bool()?;
            }
            Request::Metadata { topics }
        }
        ApiKey::Produce => {
            let transactional_id = r.nullable_string()?;
            let acks = r.i16()?;
            r.i32()?;
            let topics = r.array(|r| {
                let name = r.string()?;
                let partitions = r.array(|r| Ok((r.i32()?, r.nullable_bytes()?)))?;
                Ok((name, partitions))
            })?;
            Request::Produce(Produce {
                transactional_id,
                acks,
                topics,
            })
        }
        ApiKey::Fetch => {
            r.i32()?; // replica id
            let max_wait_ms = r.i32()?;
            let min_bytes = r.i32()?;
            let max_bytes = r.i32()?;
            r.i8()?; // isolation level: without transactions, both levels read alike
            if v >= 7 {
                r.i32()?; // session id: sessionless fetches only
                r.i32()?;
            }
            let topics = r.array(|r| {
                let name = r.string()?;
                let partitions = r.array(|r| {
                    let partition = r.i32()?;
                    if v >= 9 {
                        r.i32()?;
                    }
                    let fetch_offset = r.i64()?;
                    if v >= 5 {
                        r.i64()?;
                    }
                    let max_bytes = r.i32()?;
                    Ok(FetchPartition {
                        partition,
                        fetch_offset,
                        max_bytes,
                    })
                })?;
                Ok((name, partitions))
            })?;
            if v >= 7 {
                r.array(|r| {
                    r.string()?;
                    r.array(|r| r.i32())
                })?;
            }
            if v >= 11 {
                r.string()?;
            }
            Request::Fetch(Fetch {
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics,
            })
        }
        ApiKey::ListOffsets => {
            r.i32()?;
            if v >= 2 {
                r.i8()?;
            }
            Request::ListOffsets(r.array(|r| {
                let name = r.string()?;
                let partitions = r.array(|r| {
                    let partition = r.i32()?;
                    if v >= 4 {
                        r.i32()?;
                    }
                    Ok((partition, r.i64()?))
                })?;
                Ok((name, partitions))
            })?)
        }
        ApiKey::InitProducerId => {
            let transactional_id = r.nullable_string()?;
            r.i32()?;
            if v >= 3 {
                r.i64()?;
                r.i16()?;
            }
            Request::InitProducerId { transactional_id }
        }
        ApiKey::CreateTopics => {
            let topics = r.array(|r| {
                let name = r.string()?;
                let partitions = r.i32()?;
                let replication = r.i16()?;
                let assignments = r
                    .array(|r| {
                        r.i32()?;
                        r.array(|r| r.i32())
                    })?
                    .len();
                let configs = r.array(|r| Ok((r.string()?, r.nullable_string()?)))?;
                Ok(NewTopic {
                    name,
                    partitions,
                    replication,
                    assignments,
                    configs,
                })
            })?;
            r.i32()?;
            let validate_only = r.bool()?;
            Request::CreateTopics {
                topics,
                validate_only,
            }
        }
        ApiKey::DeleteTopics => {
            let names = r.array(|r| r.string())?;
            r.i32()?;
            Request::DeleteTopics(names)
        }
        ApiKey::CreatePartitions => {
            let topics = r.array(|r| {
                let name = r.string()?;
                let count = r.i32()?;
                let assignments = r.nullable_array(|r| r.array(|r| r.i32()))?;
                Ok((name, count, assignments.is_some()))
            })?;
            r.i32()?;
            let validate_only = r.bool()?;
            Request::CreatePartitions {
                topics,
                validate_only,
            }
        }
        ApiKey::FindCoordinator => {
            let key = r.string()?;
            let key_type = if v >= 1 { r.i8()? } else { 0 };
            Request::FindCoordinator { key, key_type }
        }
        ApiKey::JoinGroup => {
            let group_id = r.string()?;
            let session_timeout_ms = r.i32()?;
            let rebalance_timeout_ms = if v >= 1 { r.i32()? } else { session_timeout_ms };
            let member_id = r.string()?;
            let group_instance_id = if v >= 5 { r.nullable_string()? } else { None };
            let protocol_type = r.string()?;
            let protocols = r.array(|r| Ok((r.string()?, r.bytes()?)))?;
            Request::JoinGroup(JoinGroup {
                group_id,
                session_timeout_ms,
                rebalance_timeout_ms,
                member_id,
                group_instance_id,
                protocol_type,
                protocols,
            })
        }
        ApiKey::SyncGroup => {
            let member = member_ref(&mut r, v >= 3)?;
            let assignments = r.array(|r| Ok((r.string()?, r.bytes()?)))?;
            Request::SyncGroup(SyncGroup {
                member,
                assignments,
            })
        }
        ApiKey::Heartbeat => Request::Heartbeat(member_ref(&mut r, v >= 3)?),
        ApiKey::LeaveGroup => {
            let group_id = r.string()?;
            let members = if v >= 3 {
                r.array(|r| Ok((r.string()?, r.nullable_string()?)))?
            } else {
                vec![(r.string()?, None)]
            };
            Request::LeaveGroup { group_id, members }
        }
        ApiKey::OffsetCommit => {
            let group_id = r.string()?;
            let generation_id = r.i32()?;
            let member_id = r.string()?;
            if v <= 4 {
                r.i64()?; // retention time: offsets are kept until the group is deleted
            }
            if v >= 7 {
                r.nullable_string()?;
            }
            let topics = r.array(|r| {
                let name = r.string()?;
                let partitions = r.array(|r| {
                    let partition = r.i32()?;
                    let offset = r.i64()?;
                    if v >= 6 {
                        r.i32()?;
                    }
                    Ok((partition, offset, r.nullable_string()?))
                })?;
                Ok((name, partitions))
            })?;
            Request::OffsetCommit(OffsetCommit {
                member: MemberRef {
                    group_id,
                    generation_id,
                    member_id,
                },
                topics,
            })
        }
        ApiKey::OffsetFetch => {
            let group_id = r.string()?;
            let item = |r: &mut Reader| Ok((r.string()?, r.array(|r| r.i32())?));
            let topics = if v >= 2 {
                r.nullable_array(item)?
            } else {
                Some(r.array(item)?)
            };
            Request::OffsetFetch { group_id, topics }
        }
        ApiKey::DescribeGroups => {
            let groups = r.array(|r| r.string())?;
            if v >= 3 {
                r.bool()?;
            }
            Request::DescribeGroups(groups)
        }
        ApiKey::ListGroups => Request::ListGroups,
        other => return Err(WireError(format!("{other:?} is not served"))),
    };
    r.finish()?;
    Ok(request)
}

fn member_ref(r: &mut Reader, has_instance: bool) -> Result<MemberRef, WireError> {
    let group_id = r.string()?;
    let generation_id = r.i32()?;
    let member_id = r.string()?;
    if has_instance {
        r.nullable_string()?;
    }
    Ok(MemberRef {
        group_id,
        generation_id,
        member_id,
    })
}
