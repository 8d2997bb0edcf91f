//! Settling a batch: dead letters published first, then the rest applied in as few
//! transactions as failures allow (see the [module docs](super)).

use std::collections::HashMap;

use super::claims::Partition;
use super::dispatch::{self, Decision, Record};
use super::inbox::{self, Item, Pass};
use super::{Consumer, HandlerError, Outcome, Received, retry};
use crate::dlq::DeadLetters;
use tokio_util::sync::CancellationToken;

/// What a settled batch came to: each record with its parsed form (when it had one)
/// and outcome, and the partitions found claimed by another member meanwhile.
pub struct Settled {
    /// The records, in order.
    pub records: Vec<(Record, Option<Received>, Outcome)>,
    /// Partitions this member turned out not to hold any more.
    pub fenced: Vec<Partition>,
}

/// What settling needs of the running consumer.
pub struct Running<'a> {
    /// The dead-letter publisher.
    pub dlq: &'a DeadLetters,
    /// The process's shutdown.
    pub shutdown: &'a CancellationToken,
}

impl Consumer {
    /// Settles `records` in order (see the module docs) while this member holds their
    /// partitions at `epochs`: records of a partition it does not hold (or turns out
    /// to have lost) are left alone. `None` when shutdown interrupted it: nothing after
    /// the last committed pass is settled, and it will be read again.
    pub(super) async fn settle(
        &self,
        records: Vec<Record>,
        replaying: impl Fn(&Record) -> bool,
        epochs: &HashMap<Partition, i64>,
        running: &Running<'_>,
    ) -> Option<Settled> {
        let mut items: Vec<Item> = records
            .into_iter()
            .map(|record| Item {
                decision: if epochs.contains_key(&(record.topic.clone(), record.partition)) {
                    self.dispatch.decide(&record, replaying(&record))
                } else {
                    Decision::Fenced
                },
                record,
            })
            .collect();
        let mut fenced_partitions = Vec::new();
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(items.len());
        // Which dead letters are on their topic already.
        let mut published = vec![false; items.len()];
        let mut limit = items.len();
        // Failed passes in a row (the database unreachable), and how many times the
        // record failing transiently (its index) has been tried.
        let mut attempt = 0u32;
        let mut tries: Option<(usize, u32)> = None;
        while outcomes.len() < items.len() {
            let start = outcomes.len();
            for i in start..limit {
                if let Decision::DeadLetter { reason, error, .. } = &items[i].decision
                    && !published[i]
                {
                    if !self
                        .dead_letter(&items[i].record, reason, error, running)
                        .await
                    {
                        return None;
                    }
                    published[i] = true;
                }
            }
            match inbox::apply(&self.db, &self.group, epochs, &items[start..limit]).await {
                Ok(Pass::Committed(done)) => {
                    attempt = 0;
                    outcomes.extend(done);
                    limit = items.len();
                }
                Ok(Pass::Fenced(lost)) => {
                    attempt = 0;
                    tracing::warn!(group = %self.group, partitions = ?lost, "another member claimed these partitions; leaving their records to it");
                    metrics::counter!("consumer_fenced_total", "group" => self.group.clone())
                        .increment(lost.len() as u64);
                    for item in &mut items[start..] {
                        if lost.contains(&(item.record.topic.clone(), item.record.partition)) {
                            item.decision = Decision::Fenced;
                        }
                    }
                    fenced_partitions.extend(lost);
                }
                Ok(Pass::Failed { at, error }) => {
                    attempt = 0;
                    let failing = start + at;
                    let tried = match tries {
                        Some((i, n)) if i == failing => n + 1,
                        _ => 1,
                    };
                    tries = Some((failing, tried));
                    if matches!(
                        error,
                        HandlerError::Permanent(_) | HandlerError::Undecodable(_)
                    ) {
                        dead_letter_instead(&mut items[failing], &self.group, |received, span| {
                            tracing::warn!(parent: span, error = %error, "event rejected; dead-lettering");
                            Decision::rejected(received, &error)
                        });
                    }
                    if let HandlerError::Transient(e) = &error
                        && self.max_attempts.is_some_and(|max| tried >= max)
                    {
                        dead_letter_instead(&mut items[failing], &self.group, |received, span| {
                            tracing::error!(parent: span, error = %e, tries = tried, "transient failures exhausted the retries; dead-lettering");
                            metrics::counter!("consumer_retries_exhausted_total", "group" => self.group.clone())
                                .increment(1);
                            Decision::DeadLetter {
                                reason: dispatch::RETRIES_EXHAUSTED,
                                error: format!("after {tried} attempts: {e}"),
                                received: Some(received),
                            }
                        });
                        limit = items.len();
                        continue;
                    }
                    if at > 0 {
                        // Commit what came before the failing record, once.
                        limit = failing;
                        continue;
                    }
                    if let HandlerError::Transient(e) = error {
                        tracing::warn!(group = %self.group, error = %e, tries = tried, "transient failure; retrying");
                        metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                            .increment(1);
                        if !retry::pause(tried, running.shutdown).await {
                            return None;
                        }
                        limit = items.len();
                    }
                }
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(group = %self.group, error = %e, attempt, "applying a batch failed; retrying");
                    metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                        .increment(1);
                    if !retry::pause(attempt, running.shutdown).await {
                        return None;
                    }
                }
            }
        }
        let records = items
            .into_iter()
            .zip(outcomes)
            .map(|(item, outcome)| {
                let received = match item.decision {
                    Decision::Apply(_, r) => Some(*r),
                    Decision::DeadLetter { received, .. } => received.map(|r| *r),
                    Decision::Ignore | Decision::Fenced => None,
                };
                (item.record, received, outcome)
            })
            .collect();
        Some(Settled {
            records,
            fenced: fenced_partitions,
        })
    }

    /// Publishes a dead letter and waits for its acknowledgement, retrying until it
    /// is there; `false` on shutdown before that.
    async fn dead_letter(
        &self,
        record: &Record,
        reason: &str,
        error: &str,
        running: &Running<'_>,
    ) -> bool {
        tracing::warn!(
            group = %self.group,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            reason,
            error,
            "dead-lettering record"
        );
        let mut attempt = 0u32;
        loop {
            match running.dlq.send_record(&record.dead(), reason, error).await {
                Ok(()) => return true,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(error = %e, attempt, "dead-letter publish failed; retrying");
                    if !retry::pause(attempt, running.shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// Makes the record of `item`, when it was to be applied, a dead letter as `decide`
/// says (given the record and its span).
fn dead_letter_instead(
    item: &mut Item,
    group: &str,
    decide: impl FnOnce(Box<Received>, &tracing::Span) -> Decision,
) {
    item.decision = match std::mem::replace(&mut item.decision, Decision::Ignore) {
        Decision::Apply(_, received) => {
            let span = inbox::record_span(group, &received);
            decide(received, &span)
        }
        other => other,
    };
}
