//! Decoders of the consumer-group requests: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch and DescribeGroups. Each reads
//! the body of its request at version `v`, dropping what the broker does not use.

use super::messages::{JoinGroup, MemberRef, OffsetCommit, Request, SyncGroup};
use crate::wire::{Reader, WireError};

/// FindCoordinator (before v1, always of a group).
pub(super) fn find_coordinator(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let key = r.string()?;
    let key_type = if v >= 1 { r.i8()? } else { 0 };
    Ok(Request::FindCoordinator { key, key_type })
}

/// JoinGroup (before v1 the rebalance timeout is the session timeout).
pub(super) fn join_group(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let group_id = r.string()?;
    let session_timeout_ms = r.i32()?;
    let rebalance_timeout_ms = if v >= 1 { r.i32()? } else { session_timeout_ms };
    let member_id = r.string()?;
    let group_instance_id = if v >= 5 { r.nullable_string()? } else { None };
    let protocol_type = r.string()?;
    let protocols = r.array(|r| Ok((r.string()?, r.bytes()?)))?;
    Ok(Request::JoinGroup(JoinGroup {
        group_id,
        session_timeout_ms,
        rebalance_timeout_ms,
        member_id,
        group_instance_id,
        protocol_type,
        protocols,
    }))
}

/// SyncGroup.
pub(super) fn sync_group(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let member = member_ref(r, v >= 3)?;
    let assignments = r.array(|r| Ok((r.string()?, r.bytes()?)))?;
    Ok(Request::SyncGroup(SyncGroup {
        member,
        assignments,
    }))
}

/// Heartbeat.
pub(super) fn heartbeat(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    Ok(Request::Heartbeat(member_ref(r, v >= 3)?))
}

/// LeaveGroup (before v3, one member by its id).
pub(super) fn leave_group(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let group_id = r.string()?;
    let members = if v >= 3 {
        r.array(|r| Ok((r.string()?, r.nullable_string()?)))?
    } else {
        vec![(r.string()?, None)]
    };
    Ok(Request::LeaveGroup { group_id, members })
}

/// OffsetCommit.
pub(super) fn offset_commit(r: &mut Reader, v: i16) -> Result<Request, WireError> {
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
    Ok(Request::OffsetCommit(OffsetCommit {
        member: MemberRef {
            group_id,
            generation_id,
            member_id,
        },
        topics,
    }))
}

/// OffsetFetch (from v2 a null topic list asks for every committed partition).
pub(super) fn offset_fetch(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let group_id = r.string()?;
    let item = |r: &mut Reader| Ok((r.string()?, r.array(|r| r.i32())?));
    let topics = if v >= 2 {
        r.nullable_array(item)?
    } else {
        Some(r.array(item)?)
    };
    Ok(Request::OffsetFetch { group_id, topics })
}

/// DescribeGroups.
pub(super) fn describe_groups(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let groups = r.array(|r| r.string())?;
    if v >= 3 {
        r.bool()?;
    }
    Ok(Request::DescribeGroups(groups))
}

/// A member's identity, as SyncGroup and Heartbeat carry it (the instance id, from
/// v3, is read and dropped).
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
