//! The delivery worker: sends the planned notifications that are due, a bounded
//! number at a time, and records the results.
//!
//! - Sent: the row becomes SENT and `EmailSent` / `SmsSent` enters the outbox in the
//!   same transaction (correlation of the trigger kept, causation = the trigger) —
//!   one transaction for all the messages of a pass that went out.
//! - Transient failure (transport down, recipient not known yet): the row is tried
//!   again after a jittered exponential backoff. Other notifications keep flowing;
//!   nothing waits behind a failing one.
//! - Permanent failure, or too many attempts: the triggering record goes to the
//!   dead-letter topic with the reason, then the row becomes FAILED.
//! - Not to be sent: a recipient who got `--recipient-limit` messages in the last
//!   hour gets no more (the mesh cannot be used to bomb a third party's inbox or
//!   phone), and a text message goes only to a verified number (except the one that
//!   verifies it). The row becomes SUPPRESSED with the reason; nothing is
//!   dead-lettered.

mod attempt;
mod limits;
mod record;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use lettre::message::Mailbox;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weft_events::Database;
use weft_events::consumer::backoff;
use weft_events::db::now_micros;
use weft_events::dlq::{DeadLetters, DeadRecord};
use weft_events::outbox::RelayWaker;

use self::attempt::{Attempt, Sender};
pub use self::limits::RecipientLimits;
use crate::store::{self, NotificationRow};
use crate::templates::Templates;
use crate::transport::{MailTransport, SmsTransport};

/// Settings of the worker.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Attempts before a notification is given up on.
    pub max_attempts: u32,
    /// The sender of every email.
    pub from: Mailbox,
    /// Longest wait between two looks at the table when nothing is due.
    pub idle_poll: Duration,
    /// Messages sent at once.
    pub concurrency: usize,
    /// Time limit of one send (SMTP or webhook exchange): with the pass size and the
    /// concurrency it sets how long a pass claims its rows.
    pub send_timeout: Duration,
    /// Whether every transport writes files here (no SMTP server, no webhook): a send
    /// then takes microseconds, not a network exchange, so a pass takes more rows.
    pub local: bool,
}

impl DeliveryConfig {
    /// Notifications one pass claims: four rounds of sends over the network, where
    /// a replica that dies mid-pass delays its rows by the claim's length
    /// ([`Self::claim_ttl`]); four times as many to local files, where the pass's own
    /// statements are most of its cost (measured: 128 rather than 32 drained a burst
    /// of 3,000 orders 1.10–1.12× faster).
    fn pass_size(&self) -> i64 {
        let network = self.network_pass();
        (if self.local { network * 4 } else { network }) as i64
    }

    /// The rows of a pass over the network: four rounds of sends.
    fn network_pass(&self) -> usize {
        (self.concurrency * 4).max(32)
    }

    /// How long a pass claims its rows: long enough for every send of a full pass
    /// over the network to time out, plus a margin (a pass to local files, however
    /// long, writes in far less). A replica that dies mid-pass delays the rows it had
    /// claimed by this much at most; nobody sends them meanwhile.
    pub fn claim_ttl(&self) -> Duration {
        let rounds =
            u32::try_from(self.network_pass() / self.concurrency.max(1) + 1).unwrap_or(u32::MAX);
        self.send_timeout.saturating_mul(rounds) + Duration::from_secs(5)
    }
}

/// Delivers planned notifications.
pub struct Deliverer {
    /// The service database.
    pub db: Database,
    /// This replica's name, the start of its passes' claims.
    pub replica: String,
    /// Email transport.
    pub mail: Arc<dyn MailTransport>,
    /// Text message transport.
    pub sms: Arc<dyn SmsTransport>,
    /// The templates.
    pub templates: Arc<Templates>,
    /// Wakes the outbox relay after a sent event is committed.
    pub relay: RelayWaker,
    /// Where given-up triggers go.
    pub dlq: DeadLetters,
    /// Wakes the worker when the consumer planned something.
    pub wake: Arc<Notify>,
    /// Messages per recipient.
    pub limits: RecipientLimits,
    /// Settings.
    pub config: DeliveryConfig,
}

impl Deliverer {
    /// Delivers until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.deliver_due(&shutdown).await {
                Ok(n) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "delivery pass failed");
                }
            }
            let wait = if failures > 0 {
                backoff(failures)
            } else {
                self.until_next_due().await
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn until_next_due(&self) -> Duration {
        match store::next_due(&self.db).await {
            Ok(Some(at)) => {
                let micros = (at - now_micros()).max(0);
                Duration::from_micros(micros as u64).min(self.config.idle_poll)
            }
            _ => self.config.idle_poll,
        }
    }

    /// One pass over the due notifications; how many it settled or rescheduled. The
    /// pass first claims its rows, so replicas sharing the database never send one
    /// message twice.
    pub async fn deliver_due(&self, shutdown: &CancellationToken) -> Result<usize, sqlx::Error> {
        let claim = format!(
            "{}/{}",
            self.replica,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let now = now_micros();
        let until =
            now + i64::try_from(self.config.claim_ttl().as_micros()).unwrap_or(i64::MAX / 2);
        let due = store::claim_due(&self.db, &claim, now, until, self.config.pass_size()).await?;
        let n = due.len();
        let users: Vec<&str> = due.iter().map(|row| row.user_id.as_str()).collect();
        let contacts = &store::contacts(&self.db, &users).await?;
        let sender = &self.sender();
        let attempts: Vec<(NotificationRow, Attempt)> = futures::stream::iter(due)
            .take_while(|_| std::future::ready(!shutdown.is_cancelled()))
            .map(|row| async move {
                let attempt = sender.attempt(&row, contacts.get(&row.user_id)).await;
                (row, attempt)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let (sent, others): (Vec<_>, Vec<_>) = attempts
            .into_iter()
            .partition(|(_, a)| matches!(a, Attempt::Sent { .. }));
        if !sent.is_empty() {
            // Sent but not recorded (the database failed): the next pass sends them
            // again, which the file transport absorbs and SMTP may not (at least once).
            record::record_sent(&self.db, &self.relay, &claim, &sent).await?;
        }
        let mut suppressed = Vec::new();
        for (row, attempt) in &others {
            match attempt {
                Attempt::Suppressed(why) => {
                    tracing::info!(notification_id = %row.id, template = %row.template, why = %why, "notification suppressed");
                    metrics::counter!("notifications_suppressed_total", "template" => row.template.clone())
                        .increment(1);
                    suppressed.push((row.id.as_str(), why.as_str()));
                }
                _ => self.settle(row, attempt).await?,
            }
        }
        if !suppressed.is_empty() {
            store::suppress(&self.db, &suppressed).await?;
        }
        Ok(n)
    }

    /// What the pass's attempts use of the worker.
    fn sender(&self) -> Sender<'_> {
        Sender {
            mail: self.mail.as_ref(),
            sms: self.sms.as_ref(),
            templates: &self.templates,
            limits: &self.limits,
            from: &self.config.from,
        }
    }

    async fn settle(&self, row: &NotificationRow, attempt: &Attempt) -> Result<(), sqlx::Error> {
        match attempt {
            // Recorded with the pass's others.
            Attempt::Sent { .. } | Attempt::Suppressed(_) => Ok(()),
            Attempt::Nobody => store::drop_unaddressable(&self.db, &row.id).await,
            Attempt::Retry(error) => {
                let attempts = u32::try_from(row.attempts)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
                if attempts >= self.config.max_attempts {
                    let error = format!("gave up after {attempts} attempts: {error}");
                    return self.give_up(row, &error).await;
                }
                let wait = backoff(attempts);
                tracing::warn!(notification_id = %row.id, attempts, ?wait, error = %error, "delivery failed; will retry");
                let next = now_micros() + i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 2);
                store::reschedule(&self.db, &row.id, next, error).await
            }
            Attempt::GiveUp(error) => self.give_up(row, error).await,
        }
    }

    /// Dead-letters the trigger, then marks the row failed. When the dead-letter
    /// topic cannot be reached the row stays pending and is tried again later.
    async fn give_up(&self, row: &NotificationRow, error: &str) -> Result<(), sqlx::Error> {
        tracing::warn!(notification_id = %row.id, error, "giving up on a notification");
        if let Some(t) = store::trigger(&self.db, &row.trigger_event_id).await? {
            let record = DeadRecord {
                topic: &t.topic,
                partition: t.partition,
                offset: t.offset,
                key: t.key.as_deref().map(str::as_bytes),
                payload: Some(&t.payload),
                headers: t
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
                    .collect(),
            };
            if let Err(e) = self
                .dlq
                .send_record(&record, "delivery-failed", error)
                .await
            {
                let next = now_micros() + 5_000_000;
                return store::reschedule(&self.db, &row.id, next, &format!("dead letter: {e}"))
                    .await;
            }
        }
        metrics::counter!("notifications_failed_total", "template" => row.template.clone())
            .increment(1);
        store::mark_failed(&self.db, &row.id, error).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(concurrency: usize, local: bool) -> DeliveryConfig {
        DeliveryConfig {
            max_attempts: 3,
            from: "weft <noreply@weft.local>"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            idle_poll: Duration::from_secs(1),
            concurrency,
            send_timeout: Duration::from_secs(10),
            local,
        }
    }

    #[test]
    fn a_pass_to_local_files_takes_four_times_the_rows_for_as_long_a_claim() {
        assert_eq!(config(8, false).pass_size(), 32);
        assert_eq!(config(8, true).pass_size(), 128);
        assert_eq!(config(16, false).pass_size(), 64);
        assert_eq!(config(16, true).pass_size(), 256);
        // Five rounds of sends that time out, plus 5 s, however many rows a pass takes.
        for concurrency in [8, 16] {
            let network = config(concurrency, false).claim_ttl();
            assert_eq!(network, Duration::from_secs(55));
            assert_eq!(config(concurrency, true).claim_ttl(), network);
        }
    }
}
