//! The requests this broker serves, the versions of each it accepts, and their
//! decoders (see [`crate::wire`] for why they are written here).
//!
//! The version ranges are what librdkafka 2.x (and so confluent-kafka, rdkafka and
//! kcat builds of it) negotiates against a Kafka 2.x/3.x broker, capped below the first
//! flexible version wherever nothing is gained by going further. Fields follow
//! Apache Kafka's message schemas (`clients/src/main/resources/common/message`).
//!
//! Here: the table of APIs, the request header, and the dispatch of a body to its
//! decoder, one module per family (`admin`: cluster and topic requests; `records`:
//! produce, fetch and offsets; `group`: consumer groups). The decoded requests are
//! defined in `messages` and re-exported here.

mod admin;
mod group;
mod messages;
mod records;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

pub use messages::{
    CommitTopic, Fetch, FetchPartition, JoinGroup, MemberRef, NewTopic, OffsetCommit, Produce,
    ProduceTopic, Request, SyncGroup,
};

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

/// Decodes the body of a request of `api` at `version`; the whole body must be read.
pub fn decode(api: &Api, version: i16, mut body: Reader) -> Result<Request, WireError> {
    let (r, v) = (&mut body, version);
    let request = match api.key {
        ApiKey::ApiVersions => admin::api_versions(r, v)?,
        ApiKey::Metadata => admin::metadata(r, v)?,
        ApiKey::CreateTopics => admin::create_topics(r)?,
        ApiKey::DeleteTopics => admin::delete_topics(r)?,
        ApiKey::CreatePartitions => admin::create_partitions(r)?,
        ApiKey::Produce => records::produce(r)?,
        ApiKey::Fetch => records::fetch(r, v)?,
        ApiKey::ListOffsets => records::list_offsets(r, v)?,
        ApiKey::InitProducerId => records::init_producer_id(r, v)?,
        ApiKey::FindCoordinator => group::find_coordinator(r, v)?,
        ApiKey::JoinGroup => group::join_group(r, v)?,
        ApiKey::SyncGroup => group::sync_group(r, v)?,
        ApiKey::Heartbeat => group::heartbeat(r, v)?,
        ApiKey::LeaveGroup => group::leave_group(r, v)?,
        ApiKey::OffsetCommit => group::offset_commit(r, v)?,
        ApiKey::OffsetFetch => group::offset_fetch(r, v)?,
        ApiKey::DescribeGroups => group::describe_groups(r, v)?,
        ApiKey::ListGroups => Request::ListGroups,
        other => return Err(WireError(format!("{other:?} is not served"))),
    };
    body.finish()?;
    Ok(request)
}
