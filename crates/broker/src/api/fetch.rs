//! Fetch: answers at once when there is data (or an error), else holds the request
//! until an append to one of its partitions or the end of `max_wait_ms`, whichever is
//! first. A held fetch costs nothing while it waits: it sleeps on the store's append
//! signal and re-reads only when a partition it asks for has grown.

use std::time::Duration;

use kafka_protocol::messages::{
    BrokerId, FetchResponse,
    fetch_response::{FetchableTopicResponse, PartitionData},
};

use super::{Body, code, encode, topic_name};
use crate::request::{Fetch, FetchPartition};
use crate::shared::Shared;
use crate::store::lock;

/// Longest a fetch is held, whatever it asks for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Serves a Fetch.
pub async fn fetch(shared: &Shared, req: Fetch, version: i16) -> Body {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut appends = shared.store.subscribe_appends();
    appends.borrow_and_update();
    loop {
        let (topics, bytes, errors) = collect(shared, &req);
        let enough = bytes > 0 && bytes >= i64::from(req.min_bytes);
        if enough || errors || req.min_bytes <= 0 || tokio::time::Instant::now() >= deadline {
            return encode(&FetchResponse::default().with_responses(topics), version);
        }
        // Wait until a requested partition grows past where the fetch reads.
        loop {
            tokio::select! {
                changed = appends.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = shared.shutdown.cancelled() => break,
            }
            if grew(shared, &req) {
                break;
            }
        }
        if shared.shutdown.is_cancelled() {
            let (topics, _, _) = collect(shared, &req);
            return encode(&FetchResponse::default().with_responses(topics), version);
        }
    }
}

/// Whether any partition of the fetch now ends past its fetch offset.
fn grew(shared: &Shared, req: &Fetch) -> bool {
    req.topics.iter().any(|(name, partitions)| {
        shared.store.topic(name).is_some_and(|t| {
            partitions.iter().any(|p| {
                t.partition(p.partition)
                    .is_some_and(|part| part.end() > p.fetch_offset)
            })
        })
    })
}

/// Reads every partition of the fetch: (responses, bytes of records, any error).
fn collect(shared: &Shared, req: &Fetch) -> (Vec<FetchableTopicResponse>, i64, bool) {
    let mut budget = i64::from(req.max_bytes.max(0));
    let mut total: i64 = 0;
    let mut errors = false;
    let topics = req
        .topics
        .iter()
        .map(|(name, partitions)| {
            let topic = shared.store.topic(name);
            let partitions = partitions
                .iter()
                .map(|p| {
                    let data = read_partition(topic.as_deref(), p, budget, total == 0);
                    if data.error_code != code::NONE {
                        errors = true;
                    }
                    let n = data.records.as_ref().map_or(0, |r| r.len() as i64);
                    budget -= n;
                    total += n;
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic_name(name))
                .with_partitions(partitions)
        })
        .collect();
    (topics, total, errors)
}

/// One partition's answer. The first partition with data gets at least one whole
/// batch however large (KIP-74); later ones only what fits in the budget left.
fn read_partition(
    topic: Option<&crate::store::Topic>,
    p: &FetchPartition,
    budget: i64,
    first: bool,
) -> PartitionData {
    let out = PartitionData::default()
        .with_partition_index(p.partition)
        .with_preferred_read_replica(BrokerId(-1));
    let Some(partition) = topic.and_then(|t| t.partition(p.partition)) else {
        return out
            .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1);
    };
    let (slice, end, start) = {
        let log = lock(&partition.log);
        let end = log.next_offset();
        let start = log.log_start();
        if p.fetch_offset < start || p.fetch_offset > end {
            return out
                .with_error_code(code::OFFSET_OUT_OF_RANGE)
                .with_high_watermark(end)
                .with_last_stable_offset(end)
                .with_log_start_offset(start);
        }
        let limit = i64::from(p.max_bytes.max(0)).min(budget.max(0));
        let slice = if limit > 0 || first {
            log.read(p.fetch_offset, limit.max(1) as usize)
        } else {
            None
        };
        (slice, end, start)
    };
    let out = out
        .with_high_watermark(end)
        .with_last_stable_offset(end)
        .with_log_start_offset(start);
    let Some(slice) = slice else {
        return out;
    };
    if !first && slice.len as i64 > budget {
        return out;
    }
    match slice.read() {
        Ok(bytes) => out.with_records(Some(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "reading the log failed");
            out.with_error_code(code::UNKNOWN_SERVER_ERROR)
        }
    }
}
