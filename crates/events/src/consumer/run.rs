//! The run loop of a consumer group member.
//!
//! Before joining, a member checks what it is about to read (`startup`): the topics
//! exist, the stored offsets can be right, a group that has never stored an offset
//! knows where to begin, and no member of another deployment is in the group. Then it
//! subscribes, and takes, in this order, whichever comes first: shutdown; a change of
//! its assignment ([`Change`], see `ownership`); a rewind (`rewinding`); a
//! periodic look at its claims (a rewind elsewhere released them, or another member
//! took one over); the next records, settled as one batch (`batch`). Changes are
//! taken only between batches, so a revoked partition's records have settled before
//! it is released.

mod batch;
mod held;
mod ownership;
mod rewinding;
mod startup;

use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Consumer;
use super::dispatch::Record;
use super::group::{Change, GroupContext};
use super::replay::RewindReply;
use super::settle::Running;
use crate::dlq::DeadLetters;
use crate::error::EventsError;
use held::Held;

/// How often a member looks at its claims in the database.
const CLAIMS_LOOK: Duration = Duration::from_secs(1);
/// The pause after an error the consumer reports (see the run loop).
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Marks the group context closing when dropped (declared after the consumer, so it
/// drops first).
struct Closing<'a>(&'a GroupContext);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Consumer {
    /// Consumes until `shutdown`, then leaves the group.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), EventsError> {
        let topics: Vec<String> = self.topics.iter().cloned().collect();
        let Some(deployment) = self.ready_to_join(&topics, &shutdown).await? else {
            return Ok(());
        };
        let (changes_tx, mut changes) = mpsc::unbounded_channel();
        let mut held = Held::default();
        let context = GroupContext::new(
            &self.group,
            &self.kafka.client.prefix,
            changes_tx,
            held.positions.clone(),
        );
        let client_id = format!("weft:{deployment}:{}", self.replica);
        let consumer: StreamConsumer<GroupContext> = self
            .kafka
            .consumer(
                &client_id,
                &self.group,
                &format!("{deployment}-{}", self.replica),
            )
            .create_with_context(context)?;
        // However the loop ends (even by its future being dropped), the consumer's
        // close must release its partitions itself: nothing will take changes then.
        let _closing = Closing(consumer.context());
        let cluster: Vec<String> = topics.iter().map(|t| self.kafka.topic(t)).collect();
        let names: Vec<&str> = cluster.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        let dlq = DeadLetters::new(&self.kafka, &self.group)?;
        tracing::info!(group = %self.group, replica = %self.replica, %deployment, ?topics, max_batch = self.max_batch, "consumer joining its group");
        let running = Running {
            dlq: &dlq,
            shutdown: &shutdown,
        };
        let mut rewinds = std::mem::replace(&mut self.rewinds, mpsc::channel(1).1);
        let result = self
            .consume(
                &consumer,
                &topics,
                &mut held,
                &mut changes,
                &mut rewinds,
                &running,
            )
            .await;
        consumer.context().close();
        consumer.unsubscribe();
        tracing::info!(group = %self.group, "consumer stopped");
        result
    }

    /// The loop (see the module docs), until shutdown or an error that stops the
    /// consumer.
    async fn consume(
        &self,
        consumer: &StreamConsumer<GroupContext>,
        topics: &[String],
        held: &mut Held,
        changes: &mut mpsc::UnboundedReceiver<Change>,
        rewinds: &mut mpsc::Receiver<RewindReply>,
        running: &Running<'_>,
    ) -> Result<(), EventsError> {
        let shutdown = running.shutdown;
        let mut rewinding = self.rewinding();
        let mut look = tokio::time::interval(CLAIMS_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        let result = loop {
            let received = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                Some(change) = changes.recv() => {
                    match self.change(consumer, held, change, topics, shutdown).await {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    }
                }
                Some(reply) = rewinds.recv() => {
                    if self.take_rewind(&mut rewinding, reply, topics).await {
                        self.look_at_claims(consumer, held, topics).await;
                    }
                    continue;
                }
                _ = look.tick() => {
                    self.look_at_claims(consumer, held, topics).await;
                    self.follow_replay(&mut rewinding).await;
                    continue;
                }
                msg = consumer.recv() => msg,
            };
            let first = match received {
                Ok(m) => {
                    self.reading_again(&mut failures);
                    Record::of(&m, self.kafka.client.prefix.as_str())
                }
                Err(e) => {
                    if !self.pause_after(&e, &mut failures, shutdown).await {
                        break Ok(());
                    }
                    continue;
                }
            };
            if !self
                .take_batch(first, consumer, held, topics, running)
                .await
            {
                break Ok(());
            }
        };
        rewinding.stop().await;
        result
    }

    /// Reports that the consumer reads again after `failures` errors in a row, and
    /// starts counting them anew.
    fn reading_again(&self, failures: &mut u32) {
        if *failures > 0 {
            tracing::info!(group = %self.group, errors = *failures, "consumer reading again");
            *failures = 0;
        }
    }

    /// Counts and reports an error the consumer returned, then pauses briefly;
    /// `false` when `shutdown` came meanwhile.
    async fn pause_after(
        &self,
        e: &KafkaError,
        failures: &mut u32,
        shutdown: &CancellationToken,
    ) -> bool {
        // librdkafka reports the brokers' troubles here and mends them by itself (it
        // reconnects, with its own back-off). They queue up while the brokers are
        // away, so sleeping longer at each one, as this loop once did, kept a consumer
        // idle for up to a minute after a broker was back: only a short pause, against
        // a busy loop.
        *failures = failures.saturating_add(1);
        metrics::counter!("consumer_errors_total", "group" => self.group.clone()).increment(1);
        if *failures == 1 {
            tracing::warn!(group = %self.group, error = %e, "consumer error; librdkafka retries by itself");
        } else {
            tracing::debug!(group = %self.group, error = %e, errors = *failures, "consumer error");
        }
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(ERROR_PAUSE) => true,
        }
    }
}
