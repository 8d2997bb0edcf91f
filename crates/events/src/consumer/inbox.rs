//! Applying records in batches: one database transaction holds, for every record of
//! the batch, its inbox row keyed by (consumer group, event id), the handler's effect
//! (and the outbox rows of its reactions), and — once per partition — the offset after
//! the last record. A record whose inbox row exists is a duplicate and changes
//! nothing.
//!
//! When a handler fails, nothing of the pass commits; the runtime then commits the
//! records before the failing one in a pass of their own (so they are applied once)
//! and deals with the failing record alone: a permanent failure turns it into a dead
//! letter, a transient one is retried after a backoff, the records after it waiting
//! (per-key order is kept: nothing of a partition is applied past a record that is
//! not).

use std::collections::BTreeMap;

use tracing::Instrument as _;

use super::dispatch::{Decision, Record};
use super::{HandlerError, Outcome};
use crate::db::{Database, now_micros};

/// A record of a batch and what is to be done with it.
pub struct Item {
    /// The record.
    pub record: Record,
    /// What to do.
    pub decision: Decision,
}

/// The result of one transaction over a run of items.
pub enum Pass {
    /// Every item settled and the transaction committed.
    Committed(Vec<Outcome>),
    /// The handler of item `at` failed; nothing of the pass committed.
    Failed {
        /// Index of the failing item in the run.
        at: usize,
        /// Why.
        error: HandlerError,
    },
}

/// Applies `items` in one transaction (see the module docs). Dead letters among them
/// must already be on their topic: here only their offsets move. `Err` is a database
/// failure of the pass itself (nothing committed either).
pub async fn apply(
    db: &Database,
    group: &str,
    offsets_in_db: bool,
    items: &[Item],
) -> Result<Pass, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut outcomes = Vec::with_capacity(items.len());
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let r = &item.record;
        last.insert((r.topic.clone(), r.partition), r.offset);
        let handler_and_record = match &item.decision {
            Decision::Ignore => {
                outcomes.push(Outcome::Ignored);
                continue;
            }
            Decision::DeadLetter { .. } => {
                outcomes.push(Outcome::DeadLettered);
                continue;
            }
            Decision::Apply(h, received) => (h, received),
        };
        let (handler, received) = handler_and_record;
        let inserted = sqlx::query(
            "INSERT INTO weft_inbox \
             (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (consumer_group, event_id) DO NOTHING",
        )
        .bind(group.to_owned())
        .bind(received.envelope.id.clone())
        .bind(received.envelope.event_type.clone())
        .bind(received.topic.clone())
        .bind(received.partition)
        .bind(received.offset)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let span = record_span(group, received);
        match handler.handle(&mut tx, received).instrument(span).await {
            Ok(()) => outcomes.push(Outcome::Applied),
            Err(error) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                return Ok(Pass::Failed { at: i, error });
            }
        }
    }
    if offsets_in_db {
        super::offsets::record(&mut tx, group, &last).await?;
    }
    tx.commit().await?;
    Ok(Pass::Committed(outcomes))
}

/// The span of one record's handling, a child of the trace its headers carry.
pub fn record_span(group: &str, received: &super::Received) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = %received.topic,
        messaging.consumer.group.name = %group,
        event.r#type = %received.envelope.event_type,
        event.id = %received.envelope.id,
    );
    let carrier =
        weft_kit::telemetry::MapCarrier(received.envelope.trace.clone().into_iter().collect());
    weft_kit::telemetry::set_parent_from(&span, &carrier);
    span
}
