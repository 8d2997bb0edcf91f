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

/// Where settling a batch stands between its passes.
struct Settling {
    /// The batch, each record with what is to be done with it.
    items: Vec<Item>,
    /// The outcome of each item settled so far, in order.
    outcomes: Vec<Outcome>,
    /// Which dead letters are on their topic already.
    published: Vec<bool>,
    /// Where the next pass ends.
    limit: usize,
    /// Failed passes in a row (the database unreachable).
    attempt: u32,
    /// How many times the record failing transiently (its index) has been tried.
    tries: Option<(usize, u32)>,
    /// Partitions found claimed by another member.
    fenced: Vec<Partition>,
}

impl Settling {
    fn new(items: Vec<Item>) -> Self {
        let n = items.len();
        Self {
            items,
            outcomes: Vec::with_capacity(n),
            published: vec![false; n],
            limit: n,
            attempt: 0,
            tries: None,
            fenced: Vec::new(),
        }
    }

    /// Each record with its parsed form (when it had one) and outcome.
    fn settled(self) -> Settled {
        let records = self
            .items
            .into_iter()
            .zip(self.outcomes)
            .map(|(item, outcome)| {
                let received = match item.decision {
                    Decision::Apply(_, r) => Some(*r),
                    Decision::DeadLetter { received, .. } => received.map(|r| *r),
                    Decision::Ignore | Decision::Fenced => None,
                };
                (item.record, received, outcome)
            })
            .collect();
        Settled {
            records,
            fenced: self.fenced,
        }
    }
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
        let mut s = Settling::new(self.decide(records, replaying, epochs));
        while s.outcomes.len() < s.items.len() {
            let start = s.outcomes.len();
            if !self.publish_dead_letters(&mut s, start, running).await {
                return None;
            }
            let pass = inbox::apply(&self.db, &self.group, epochs, &s.items[start..s.limit]).await;
            let going_on = match pass {
                Ok(Pass::Committed(done)) => {
                    s.attempt = 0;
                    s.outcomes.extend(done);
                    s.limit = s.items.len();
                    true
                }
                Ok(Pass::Fenced(lost)) => {
                    s.attempt = 0;
                    self.leave_fenced(&mut s, start, lost);
                    true
                }
                Ok(Pass::Failed { at, error }) => {
                    s.attempt = 0;
                    self.handler_failed(&mut s, start, at, error, running).await
                }
                Err(e) => {
                    s.attempt = s.attempt.saturating_add(1);
                    tracing::warn!(group = %self.group, error = %e, attempt = s.attempt, "applying a batch failed; retrying");
                    metrics::counter!("consumer_retries_total", "group" => self.group.clone())
                        .increment(1);
                    retry::pause(s.attempt, running.shutdown).await
                }
            };
            if !going_on {
                return None;
            }
        }
        Some(s.settled())
    }

    /// What is to be done with each record: nothing when this member does not hold
    /// its partition, what its handler says otherwise.
    fn decide(
        &self,
        records: Vec<Record>,
        replaying: impl Fn(&Record) -> bool,
        epochs: &HashMap<Partition, i64>,
    ) -> Vec<Item> {
        records
            .into_iter()
            .map(|record| Item {
                decision: if epochs.contains_key(&(record.topic.clone(), record.partition)) {
                    self.dispatch.decide(&record, replaying(&record))
                } else {
                    Decision::Fenced
                },
                record,
            })
            .collect()
    }

    /// Publishes the dead letters of the next pass (from `start`) that are not on
    /// their topic yet; `false` on shutdown before that.
    async fn publish_dead_letters(
        &self,
        s: &mut Settling,
        start: usize,
        running: &Running<'_>,
    ) -> bool {
        for i in start..s.limit {
            if let Decision::DeadLetter { reason, error, .. } = &s.items[i].decision
                && !s.published[i]
            {
                if !self
                    .dead_letter(&s.items[i].record, reason, error, running)
                    .await
                {
                    return false;
                }
                s.published[i] = true;
            }
        }
        true
    }

    /// Leaves the records of the `lost` partitions from `start` on to the member that
    /// claimed them.
    fn leave_fenced(&self, s: &mut Settling, start: usize, lost: Vec<Partition>) {
        tracing::warn!(group = %self.group, partitions = ?lost, "another member claimed these partitions; leaving their records to it");
        metrics::counter!("consumer_fenced_total", "group" => self.group.clone())
            .increment(lost.len() as u64);
        for item in &mut s.items[start..] {
            if lost.contains(&(item.record.topic.clone(), item.record.partition)) {
                item.decision = Decision::Fenced;
            }
        }
        s.fenced.extend(lost);
    }

    /// The handler of item `at` of the pass from `start` failed: a permanent failure
    /// makes it a dead letter, and so do transient ones past
    /// [`Consumer::max_attempts`]; the records before it are committed on their own
    /// first; a transient failure is retried after a pause. `false` on shutdown
    /// during that pause.
    async fn handler_failed(
        &self,
        s: &mut Settling,
        start: usize,
        at: usize,
        error: HandlerError,
        running: &Running<'_>,
    ) -> bool {
        let failing = start + at;
        let tried = match s.tries {
            Some((i, n)) if i == failing => n + 1,
            _ => 1,
        };
        s.tries = Some((failing, tried));
        if matches!(
            error,
            HandlerError::Permanent(_) | HandlerError::Undecodable(_)
        ) {
            dead_letter_instead(&mut s.items[failing], &self.group, |received, span| {
                tracing::warn!(parent: span, error = %error, "event rejected; dead-lettering");
                Decision::rejected(received, &error)
            });
        }
        if let HandlerError::Transient(e) = &error
            && self.max_attempts.is_some_and(|max| tried >= max)
        {
            dead_letter_instead(&mut s.items[failing], &self.group, |received, span| {
                tracing::error!(parent: span, error = %e, tries = tried, "transient failures exhausted the retries; dead-lettering");
                metrics::counter!("consumer_retries_exhausted_total", "group" => self.group.clone())
                    .increment(1);
                Decision::DeadLetter {
                    reason: dispatch::RETRIES_EXHAUSTED,
                    error: format!("after {tried} attempts: {e}"),
                    received: Some(received),
                }
            });
            s.limit = s.items.len();
            return true;
        }
        if at > 0 {
            // Commit what came before the failing record, once.
            s.limit = failing;
            return true;
        }
        if let HandlerError::Transient(e) = error {
            tracing::warn!(group = %self.group, error = %e, tries = tried, "transient failure; retrying");
            metrics::counter!("consumer_retries_total", "group" => self.group.clone()).increment(1);
            if !retry::pause(tried, running.shutdown).await {
                return false;
            }
            s.limit = s.items.len();
        }
        true
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
