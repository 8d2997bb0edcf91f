//! One batch of the run loop: the record the loop received and whatever else the
//! client has fetched already (up to [`Consumer::max_batch`], never waiting for more),
//! held back while the operator's fault flags say so, settled, then accounted for:
//! metrics, the positions the lag reporter reads, the end of a replay, the
//! after-commit hook. Partitions found claimed by another member are dropped and the
//! claims looked at.

use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::consumer::StreamConsumer;
use tokio_util::sync::CancellationToken;

use super::held::Held;
use crate::consumer::dispatch::Record;
use crate::consumer::group::GroupContext;
use crate::consumer::settle::{Running, Settled};
use crate::consumer::{Consumer, Outcome};

impl Consumer {
    /// Settles the batch that begins with `first` (see the module docs); `false` when
    /// shutdown came first, the records left to be read again later.
    pub(super) async fn take_batch(
        &self,
        first: Record,
        consumer: &StreamConsumer<GroupContext>,
        held: &mut Held,
        topics: &[String],
        running: &Running<'_>,
    ) -> bool {
        let records = self.fetched_with(first, consumer);
        if !self.obey_faults(records.len(), running.shutdown).await {
            return false;
        }
        let Some(settled) = self
            .settle(records, |r| held.replaying(r), &held.epochs, running)
            .await
        else {
            return false; // shutdown during a retry: the records are read again later
        };
        self.account(&settled, held);
        if !settled.fenced.is_empty() {
            for p in &settled.fenced {
                held.drop_partition(p);
            }
            self.look_at_claims(consumer, held, topics).await;
        }
        true
    }

    /// `first` and the records fetched already behind it, up to a batch.
    fn fetched_with(&self, first: Record, consumer: &StreamConsumer<GroupContext>) -> Vec<Record> {
        let prefix = self.kafka.client.prefix.as_str();
        // Whatever else is fetched already joins the batch; nothing waits for more.
        let mut records = vec![first];
        while records.len() < self.max_batch {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => records.push(Record::of(&m, prefix)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer fetch failed");
                    break;
                }
                None => break,
            }
        }
        records
    }

    /// Operators' fault flags: this consumer holds what it fetched while it is paused,
    /// and waits before each record while it is slow. `false` on shutdown.
    async fn obey_faults(&self, records: usize, shutdown: &CancellationToken) -> bool {
        while weft_kit::faults::get("consumer-pause").as_deref() == Some(self.group.as_str()) {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        if let Some(delay) = weft_kit::faults::millis("slow-consumer") {
            let all = delay.saturating_mul(u32::try_from(records).unwrap_or(u32::MAX));
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(all) => {}
            }
        }
        true
    }

    /// Counts the settled records and moves this member's positions past them (a
    /// replayed partition that reached its end is read normally again); the
    /// after-commit hook sees each record that was not fenced.
    fn account(&self, settled: &Settled, held: &mut Held) {
        metrics::histogram!("consumer_batch_size", "group" => self.group.clone())
            .record(settled.records.len() as f64);
        for (record, received, outcome) in &settled.records {
            metrics::counter!("consumer_records_total", "group" => self.group.clone(), "outcome" => outcome.as_str())
                .increment(1);
            if *outcome == Outcome::Fenced {
                continue;
            }
            let tp = (record.topic.clone(), record.partition);
            held.positions().insert(tp.clone(), record.offset + 1);
            if held
                .replay_until
                .get(&tp)
                .is_some_and(|end| record.offset + 1 >= *end)
            {
                held.replay_until.remove(&tp);
            }
            if let (Some(after), Some(received)) = (&self.after, received) {
                after(received, *outcome);
            }
        }
    }
}
