//! Decoders of the record traffic: Produce and InitProducerId from producers, Fetch
//! and ListOffsets from consumers. Each reads the body of its request at version `v`,
//! dropping what the broker does not use.

use super::messages::{Fetch, FetchPartition, Produce, Request};
use crate::wire::{Reader, WireError};

/// Produce.
pub(super) fn produce(r: &mut Reader) -> Result<Request, WireError> {
    let transactional_id = r.nullable_string()?;
    let acks = r.i16()?;
    r.i32()?;
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| Ok((r.i32()?, r.nullable_bytes()?)))?;
        Ok((name, partitions))
    })?;
    Ok(Request::Produce(Produce {
        transactional_id,
        acks,
        topics,
    }))
}

/// Fetch: sessionless, at either isolation level (without transactions both levels
/// read alike).
pub(super) fn fetch(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    r.i32()?; // replica id
    let max_wait_ms = r.i32()?;
    let min_bytes = r.i32()?;
    let max_bytes = r.i32()?;
    r.i8()?; // isolation level
    if v >= 7 {
        r.i32()?; // session id
        r.i32()?;
    }
    let topics = r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| fetch_partition(r, v))?;
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
    Ok(Request::Fetch(Fetch {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics,
    }))
}

/// One partition of a Fetch.
fn fetch_partition(r: &mut Reader, v: i16) -> Result<FetchPartition, WireError> {
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
}

/// ListOffsets.
pub(super) fn list_offsets(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    r.i32()?;
    if v >= 2 {
        r.i8()?;
    }
    Ok(Request::ListOffsets(r.array(|r| {
        let name = r.string()?;
        let partitions = r.array(|r| {
            let partition = r.i32()?;
            if v >= 4 {
                r.i32()?;
            }
            Ok((partition, r.i64()?))
        })?;
        Ok((name, partitions))
    })?))
}

/// InitProducerId.
pub(super) fn init_producer_id(r: &mut Reader, v: i16) -> Result<Request, WireError> {
    let transactional_id = r.nullable_string()?;
    r.i32()?;
    if v >= 3 {
        r.i64()?;
        r.i16()?;
    }
    Ok(Request::InitProducerId { transactional_id })
}
