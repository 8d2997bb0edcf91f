//! Produce: each partition's batch is checked in full (outside any lock), then
//! appended under its partition's lock after the producer sequence check, and waiting
//! fetches are woken. A refused batch is answered with the reason and leaves nothing
//! in the log.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{
    ProduceResponse,
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
};

use super::{Body, code, encode, s, topic_name};
use crate::batch::{self, BatchError};
use crate::log::AppendError;
use crate::request::Produce;
use crate::shared::Shared;
use crate::store::lock;

/// Serves a Produce; `None` when `acks=0` (no response is sent).
pub fn produce(shared: &Shared, req: Produce, version: i16) -> Option<Body> {
    let mut appended = false;
    let topics = req
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let topic = shared.store.topic(&name);
            let partitions = partitions
                .into_iter()
                .map(|(index, records)| {
                    let outcome = if req.transactional_id.is_some() {
                        Err((
                            code::INVALID_REQUEST,
                            "transactions are not supported by this broker".to_owned(),
                        ))
                    } else if !(-1..=1).contains(&req.acks) {
                        Err((
                            code::INVALID_REQUIRED_ACKS,
                            format!("acks={} (0, 1 or -1)", req.acks),
                        ))
                    } else {
                        append(shared, topic.as_deref(), index, records)
                    };
                    let response = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_log_append_time_ms(-1);
                    match outcome {
                        Ok((base_offset, log_start)) => {
                            appended = true;
                            response
                                .with_base_offset(base_offset)
                                .with_log_start_offset(log_start)
                        }
                        Err((error, message)) => {
                            tracing::debug!(topic = %name, partition = index, error, %message, "produce refused");
                            response
                                .with_error_code(error)
                                .with_base_offset(-1)
                                .with_log_start_offset(-1)
                                .with_error_message((version >= 8).then(|| s(message)))
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(topic_name(&name))
                .with_partition_responses(partitions)
        })
        .collect();
    if appended {
        shared.store.notify_appended();
    }
    (req.acks != 0).then(|| encode(&ProduceResponse::default().with_responses(topics), version))
}

/// Checks and appends one partition's records: `(base offset, log start)` or
/// `(error code, message)`.
fn append(
    shared: &Shared,
    topic: Option<&crate::store::Topic>,
    index: i32,
    records: Option<bytes::Bytes>,
) -> Result<(i64, i64), (i16, String)> {
    let Some(partition) = topic.and_then(|t| t.partition(index)) else {
        return Err((
            code::UNKNOWN_TOPIC_OR_PARTITION,
            "no such topic or partition".to_owned(),
        ));
    };
    let records = records.unwrap_or_default();
    if records.len() > shared.max_batch_bytes {
        return Err((
            code::MESSAGE_TOO_LARGE,
            format!(
                "{} bytes; this broker takes batches of up to {}",
                records.len(),
                shared.max_batch_bytes
            ),
        ));
    }
    let header = batch::validate(&records).map_err(|e| {
        let code = match e {
            BatchError::Magic(_) => code::UNSUPPORTED_FOR_MESSAGE_FORMAT,
            BatchError::Compression(_) => code::UNSUPPORTED_COMPRESSION_TYPE,
            BatchError::Records(_) | BatchError::Transactional | BatchError::Several(_) => {
                code::INVALID_RECORD
            }
            BatchError::Truncated(_) | BatchError::Length { .. } | BatchError::Crc { .. } => {
                code::CORRUPT_MESSAGE
            }
        };
        (code, e.to_string())
    })?;
    check_timestamps(shared, &records, &header)?;
    let mut bytes = records.to_vec();
    let mut log = lock(&partition.log);
    match log.append(&mut bytes, &header) {
        Ok(a) => {
            partition.set_end(log.next_offset());
            Ok((a.base_offset, log.log_start()))
        }
        Err(AppendError::Refused(code)) => Err((code, format!("sequence check: {header}"))),
        Err(AppendError::Io(e)) => {
            tracing::error!(error = %e, "appending to the log failed");
            Err((
                code::KAFKA_STORAGE_ERROR,
                "the broker could not write the log".to_owned(),
            ))
        }
    }
}

/// Refuses a batch with a record timestamp further ahead of the broker's clock than
/// `--message-timestamp-after-max`, as Kafka does for CreateTime topics (records
/// without a timestamp pass; so do old ones: Kafka's `before.max.ms` is unbounded).
fn check_timestamps(
    shared: &Shared,
    records: &[u8],
    header: &batch::BatchHeader,
) -> Result<(), (i16, String)> {
    let latest = batch::max_record_timestamp(records, header);
    if latest == batch::NO_TIMESTAMP {
        return Ok(());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let ahead = i64::try_from(shared.message_timestamp_after_max.as_millis()).unwrap_or(i64::MAX);
    let limit = now.saturating_add(ahead);
    if latest > limit {
        return Err((
            code::INVALID_TIMESTAMP,
            format!(
                "timestamp {latest} is out of range: records may be at most {} ahead of the broker's clock ({limit})",
                humantime::format_duration(shared.message_timestamp_after_max)
            ),
        ));
    }
    Ok(())
}
