//! Applying records in batches: one database transaction holds, for every record of
//! the batch, its inbox row keyed by (consumer group, event id) — written for the
//! whole batch with one statement per few hundred records —, the handler's effect
//! (and the outbox rows of its reactions), the projections' writes, and once per
//! partition the offset after the last record. A record whose inbox row exists (from
//! an earlier transaction, or earlier in this batch) is a duplicate and changes
//! nothing.
//!
//! When a handler fails, nothing of the pass commits; the runtime then commits the
//! records before the failing one in a pass of their own (so they are applied once)
//! and deals with the failing record alone: a permanent failure turns it into a dead
//! letter, a transient one is retried after a backoff, the records after it waiting
//! (per-key order is kept: nothing of a partition is applied past a record that is
//! not).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sqlx::{AnyConnection, Row as _};
use tracing::Instrument as _;

use super::claims::{self, Partition};
use super::dispatch::{Apply, Decision, Record};
use super::{HandlerError, Outcome, Received, Scope};
use crate::db::{Database, now_micros};

/// Inbox rows written by one statement at most (7 values each, far below the
/// parameter limits of SQLite and PostgreSQL); a batch is written in runs of powers
/// of two up to it, so the statement comes in 8 shapes.
const INBOX_CHUNK: usize = 128;

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
    /// Another member claimed these partitions since this one did; nothing of the
    /// pass committed.
    Fenced(Vec<Partition>),
}

/// Applies `items` in one transaction (see the module docs), first checking that this
/// member still holds their partitions at `epochs` ([`claims::check`]). Dead letters
/// among them must already be on their topic: here only their offsets move. `Err` is
/// a database failure of the pass itself (nothing committed either).
pub async fn apply(
    db: &Database,
    group: &str,
    epochs: &HashMap<Partition, i64>,
    items: &[Item],
) -> Result<Pass, sqlx::Error> {
    let mut tx = db.begin().await?;
    let fenced = claims::check(&mut tx, group, held_epochs(epochs, items)).await?;
    if !fenced.is_empty() {
        return Ok(Pass::Fenced(fenced));
    }
    let new = record_in_inbox(&mut tx, group, items).await?;
    let mut first_seen: HashSet<&str> = HashSet::with_capacity(new.len());
    let mut scopes: Scopes = Vec::new();
    let mut outcomes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (how, received) = match &item.decision {
            Decision::Fenced => {
                outcomes.push(Outcome::Fenced);
                continue;
            }
            Decision::Ignore => {
                outcomes.push(Outcome::Ignored);
                continue;
            }
            Decision::DeadLetter { .. } => {
                outcomes.push(Outcome::DeadLettered);
                continue;
            }
            Decision::Apply(how, received) => (how, received),
        };
        let id = received.envelope.id.as_str();
        if !(new.contains(id) && first_seen.insert(id)) {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let span = record_span(group, received);
        match handle(&mut tx, how, received, span, &mut scopes).await {
            Ok(()) => outcomes.push(Outcome::Applied),
            Err(error) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                return Ok(Pass::Failed { at: i, error });
            }
        }
    }
    for (_, scope) in scopes {
        scope.finish(&mut tx).await?;
    }
    super::offsets::record(&mut tx, group, &last_offsets(items)).await?;
    tx.commit().await?;
    Ok(Pass::Committed(outcomes))
}

/// The scopes of the projections a transaction has seen so far, each by the address
/// of its projection.
type Scopes = Vec<(usize, Box<dyn Scope>)>;

/// The claimed epoch of each partition `items` are to settle records of.
fn held_epochs<'a>(
    epochs: &'a HashMap<Partition, i64>,
    items: &[Item],
) -> BTreeMap<&'a Partition, i64> {
    let mut held: BTreeMap<&Partition, i64> = BTreeMap::new();
    for item in items {
        if matches!(item.decision, Decision::Fenced) {
            continue;
        }
        let key = (item.record.topic.clone(), item.record.partition);
        if let Some((partition, epoch)) = epochs.get_key_value(&key) {
            held.insert(partition, *epoch);
        }
    }
    held
}

/// The last offset of each partition among `items` this member holds.
fn last_offsets(items: &[Item]) -> BTreeMap<(String, i32), i64> {
    let mut last: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for item in items {
        let r = &item.record;
        if !matches!(item.decision, Decision::Fenced) {
            last.insert((r.topic.clone(), r.partition), r.offset);
        }
    }
    last
}

/// Hands `received` to its handler, or to the scope of its projection in this
/// transaction (opened at the projection's first event), inside `span`.
async fn handle(
    tx: &mut AnyConnection,
    how: &Apply,
    received: &Received,
    span: tracing::Span,
    scopes: &mut Scopes,
) -> Result<(), HandlerError> {
    match how {
        Apply::Each(handler) => handler.handle(tx, received).instrument(span).await,
        Apply::Scoped(projection) => {
            let key = Arc::as_ptr(projection).cast::<()>() as usize;
            let scope = match scopes.iter().position(|(k, _)| *k == key) {
                Some(at) => &mut scopes[at].1,
                None => {
                    scopes.push((key, projection.scope()));
                    let at = scopes.len() - 1;
                    &mut scopes[at].1
                }
            };
            scope.handle(tx, received).instrument(span).await
        }
    }
}

/// Inserts the inbox rows of every record to apply (the first of each event id);
/// returns the ids that were not there yet.
async fn record_in_inbox(
    tx: &mut AnyConnection,
    group: &str,
    items: &[Item],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut seen = HashSet::new();
    let rows: Vec<&Received> = items
        .iter()
        .filter_map(|item| match &item.decision {
            Decision::Apply(_, r) => Some(r.as_ref()),
            _ => None,
        })
        .filter(|r| seen.insert(r.envelope.id.as_str()))
        .collect();
    let mut new = HashSet::with_capacity(rows.len());
    let now = now_micros();
    for chunk in crate::sql::pow2_chunks(&rows, INBOX_CHUNK) {
        let sql = format!(
            "INSERT INTO weft_inbox \
             (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset, processed_at) \
             VALUES {} ON CONFLICT (consumer_group, event_id) DO NOTHING RETURNING event_id",
            crate::sql::values(tx, chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = query
                .bind(group.to_owned())
                .bind(r.envelope.id.clone())
                .bind(r.envelope.event_type.clone())
                .bind(r.topic.clone())
                .bind(r.partition)
                .bind(r.offset)
                .bind(now);
        }
        for row in query.fetch_all(&mut *tx).await? {
            new.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(new)
}

/// The span of one record's handling, a child of the trace its headers carry.
pub fn record_span(group: &str, received: &Received) -> tracing::Span {
    let span = tracing::info_span!(
        "consume",
        otel.name = %format_args!("process {}", received.topic),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.destination.name = %received.topic,
        messaging.consumer.group.name = %group,
        event.r#type = %received.envelope.event_type,
        event.id = %received.envelope.id,
    );
    let carrier: HashMap<String, String> = received.envelope.trace.clone().into_iter().collect();
    weft_kit::telemetry::set_parent_from(&span, &weft_kit::telemetry::MapCarrier(carrier));
    span
}
