//! Decoders of the cluster and topic requests: ApiVersions, Metadata, CreateTopics,
//! DeleteTopics and CreatePartitions. Each reads the body of its request at version
//! `v`, dropping what the broker does not use.

use super::messages::{NewTopic, Request};
use crate::wire::{Reader, WireError};

/// ApiVersions (v3 adds the client software's name and version).
pub(super) fn api_versions(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    if v >= 3 {
        r.string()?;
        r.string()?;
    }
    Ok(Request::ApiVersions)
}

/// Metadata.
pub(super) fn metadata(r: &mut Reader, v: i16) -> Result<Request, WireError> {
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
    Ok(Request::Metadata { topics })
}

/// CreateTopics.
pub(super) fn create_topics(r: &mut Reader) -> Result<Request, WireError> {
    let topics = r.array(new_topic)?;
    r.i32()?;
    let validate_only = r.bool()?;
    Ok(Request::CreateTopics {
        topics,
        validate_only,
    })
}

/// One topic of a CreateTopics.
fn new_topic(r: &mut Reader) -> Result<NewTopic, WireError> {
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
}

/// DeleteTopics.
pub(super) fn delete_topics(r: &mut Reader) -> Result<Request, WireError> {
    let names = r.array(|r| r.string())?;
    r.i32()?;
    Ok(Request::DeleteTopics(names))
}

/// CreatePartitions.
pub(super) fn create_partitions(r: &mut Reader) -> Result<Request, WireError> {
    let topics = r.array(|r| {
        let name = r.string()?;
        let count = r.i32()?;
        let assignments = r.nullable_array(|r| r.array(|r| r.i32()))?;
        Ok((name, count, assignments.is_some()))
    })?;
    r.i32()?;
    let validate_only = r.bool()?;
    Ok(Request::CreatePartitions {
        topics,
        validate_only,
    })
}
