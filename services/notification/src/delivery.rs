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

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weft_events::consumer::backoff;
use weft_events::db::now_micros;
use weft_events::dlq::{DeadLetters, DeadRecord};
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_kit::telemetry::{MapCarrier, set_parent_from};
use weft_proto::common::EventMetadata;
use weft_proto::notification::{Channel, EmailSent, SmsSent};

use crate::store::{self, Contact, NotificationRow};
use crate::templates::Templates;
use crate::transport::{MailTransport, SendError, SmsTransport};

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
}

impl DeliveryConfig {
    /// Notifications one pass claims.
    fn pass_size(&self) -> i64 {
        (self.concurrency * 4).max(32) as i64
    }

    /// How long a pass claims its rows: long enough for every send of a full pass to
    /// time out, plus a margin. A replica that dies mid-pass delays the rows it had
    /// claimed by this much at most; nobody sends them meanwhile.
    pub fn claim_ttl(&self) -> Duration {
        let rounds = u32::try_from(self.pass_size() as usize / self.concurrency.max(1) + 1)
            .unwrap_or(u32::MAX);
        self.send_timeout.saturating_mul(rounds) + Duration::from_secs(5)
    }
}

/// How many messages each recipient may get: a token bucket per address.
pub struct RecipientLimits {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl RecipientLimits {
    /// `rate` per recipient, all of it at once at most.
    pub fn new(rate: weft_kit::rate::Rate) -> Self {
        Self {
            limiter: governor::DefaultKeyedRateLimiter::keyed(rate.quota(rate.count.get())),
        }
    }

    /// Counts one message to `recipient`; `false` when it is over its limit.
    pub fn allow(&self, recipient: &str) -> bool {
        let key = recipient.trim().to_lowercase();
        let ok = self.limiter.check_key(&key).is_ok();
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        ok
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

/// The event of a sent message.
enum SentEvent {
    Email(EmailSent),
    Sms(SmsSent),
}

/// What became of one attempt.
enum Attempt {
    /// Sent to `recipient` (with `subject`, for emails).
    Sent {
        recipient: String,
        subject: String,
    },
    Retry(String),
    GiveUp(String),
    Nobody,
    /// Not sent on purpose (limit reached, number not verified).
    Suppressed(String),
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
        let attempts: Vec<(NotificationRow, Attempt)> = futures::stream::iter(due)
            .take_while(|_| std::future::ready(!shutdown.is_cancelled()))
            .map(|row| async move {
                let attempt = self.attempt(&row).await;
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
            self.record_sent(&claim, &sent).await?;
        }
        for (row, attempt) in others {
            self.settle(&row, attempt).await?;
        }
        Ok(n)
    }

    async fn attempt(&self, row: &NotificationRow) -> Attempt {
        let contact = {
            let mut conn = match self.db.pool().acquire().await {
                Ok(c) => c,
                Err(e) => return Attempt::Retry(format!("database: {e}")),
            };
            match store::contact(&mut conn, &row.user_id).await {
                Ok(c) => c,
                Err(e) => return Attempt::Retry(format!("database: {e}")),
            }
        };
        let Some(contact) = contact else {
            return Attempt::Retry(format!("user {} is not known yet", row.user_id));
        };
        let context = match template_values(row, &contact) {
            Ok(c) => c,
            Err(e) => return Attempt::GiveUp(e),
        };
        if weft_kit::faults::get("notification-down").is_some() {
            return Attempt::Retry("the fault flag notification-down is on".into());
        }
        match row.channel {
            Channel::Email => self.email(row, &contact, &context).await,
            Channel::Sms => self.text(row, &contact, &context).await,
            Channel::Unspecified => Attempt::GiveUp("notification without a channel".into()),
        }
    }

    async fn email(&self, row: &NotificationRow, contact: &Contact, context: &Value) -> Attempt {
        let address = if row.recipient.is_empty() {
            contact.email.as_str()
        } else {
            row.recipient.as_str()
        };
        let to: Mailbox = match address.parse() {
            Ok(a) => a,
            Err(e) => return Attempt::GiveUp(format!("unusable email address {address:?}: {e}")),
        };
        if !self.limits.allow(address) {
            return Attempt::Suppressed(format!("{address} got its limit of messages for now"));
        }
        let rendered = match self.templates.email(&row.template, context) {
            Ok(r) => r,
            Err(e) => return Attempt::GiveUp(e.to_string()),
        };
        let date = std::time::UNIX_EPOCH + Duration::from_micros(row.created_at.max(0) as u64);
        let message = Message::builder()
            .from(self.config.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(format!("<{}@weft>", row.id)))
            .date(date)
            .multipart(
                MultiPart::alternative()
                    .boundary(format!("weft-{}", row.id))
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(rendered.text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(rendered.html),
                    ),
            );
        let message = match message {
            Ok(m) => m,
            Err(e) => return Attempt::GiveUp(format!("building the email: {e}")),
        };
        match self.mail.send(&row.id, &message).await {
            Ok(()) => Attempt::Sent {
                recipient: address.to_owned(),
                subject: rendered.subject,
            },
            Err(SendError::Transient(e)) => Attempt::Retry(e),
            Err(SendError::Permanent(e)) => Attempt::GiveUp(e),
        }
    }

    async fn text(&self, row: &NotificationRow, contact: &Contact, context: &Value) -> Attempt {
        let number = if row.recipient.is_empty() {
            contact.phone.as_str()
        } else {
            row.recipient.as_str()
        };
        if number.is_empty() {
            return Attempt::Nobody;
        }
        if !is_e164(number) {
            return Attempt::GiveUp(format!("phone number {number:?} is not in E.164 form"));
        }
        // Only the message that verifies a number may go to one not verified yet.
        if row.template != crate::templates::VERIFY_PHONE
            && !(contact.phone_verified && contact.phone == number)
        {
            return Attempt::Suppressed("the phone number is not verified".into());
        }
        if !self.limits.allow(number) {
            return Attempt::Suppressed(format!("{number} got its limit of messages for now"));
        }
        let body = match self.templates.sms(&row.template, context) {
            Ok(b) => b,
            Err(e) => return Attempt::GiveUp(e.to_string()),
        };
        match self.sms.send(&row.id, number, &body).await {
            Ok(()) => Attempt::Sent {
                recipient: number.to_owned(),
                subject: String::new(),
            },
            Err(SendError::Transient(e)) => Attempt::Retry(e),
            Err(SendError::Permanent(e)) => Attempt::GiveUp(e),
        }
    }

    /// The event saying `row` went out, continuing its trigger's trace (one trace per
    /// user action).
    async fn sent_event(
        &self,
        row: &NotificationRow,
        recipient: &str,
        subject: &str,
    ) -> Result<SentEvent, sqlx::Error> {
        let trigger = store::trigger(&self.db, &row.trigger_event_id).await?;
        let span = tracing::info_span!(
            "notification sent",
            otel.kind = "producer",
            notification.id = %row.id,
            notification.template = %row.template,
        );
        if let Some(t) = &trigger {
            let carrier = MapCarrier(
                t.headers
                    .iter()
                    .filter(|(k, _)| weft_events::envelope::header::TRACE.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            );
            set_parent_from(&span, &carrier);
        }
        let context = EventContext {
            correlation_id: trigger
                .map(|t| t.correlation_id)
                .unwrap_or_else(|| row.trigger_event_id.clone()),
            causation_id: row.trigger_event_id.clone(),
        };
        let metadata =
            Some(span.in_scope(|| context.metadata(crate::IDENTITY.name, crate::IDENTITY.version)));
        Ok(match row.channel {
            Channel::Sms => SentEvent::Sms(sms_sent(row, recipient, metadata)),
            _ => SentEvent::Email(email_sent(row, recipient, subject, metadata)),
        })
    }

    /// Marks the rows sent and enqueues their events, in one transaction.
    async fn record_sent(
        &self,
        claim: &str,
        sent: &[(NotificationRow, Attempt)],
    ) -> Result<(), sqlx::Error> {
        let mut events = Vec::with_capacity(sent.len());
        for (row, attempt) in sent {
            if let Attempt::Sent { recipient, subject } = attempt {
                events.push((
                    row,
                    recipient,
                    subject,
                    self.sent_event(row, recipient, subject).await?,
                ));
            }
        }
        let mut tx = self.db.begin().await?;
        let mut recorded = Vec::with_capacity(events.len());
        for (row, recipient, subject, event) in &events {
            if !store::mark_sent(&mut tx, &row.id, claim, recipient, subject, now_micros()).await? {
                tracing::warn!(notification_id = %row.id, "sent, but the row is no longer pending under this pass's claim (the claim ran out and another pass took it); not recorded twice");
                continue;
            }
            let enqueued = match event {
                SentEvent::Sms(e) => Outbox::enqueue(&mut tx, e).await,
                SentEvent::Email(e) => Outbox::enqueue(&mut tx, e).await,
            };
            enqueued.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            recorded.push(*row);
        }
        self.relay.commit(tx).await?;
        for row in recorded {
            metrics::counter!("notifications_sent_total", "template" => row.template.clone(), "channel" => row.channel.as_str_name())
                .increment(1);
            tracing::info!(notification_id = %row.id, template = %row.template, channel = row.channel.as_str_name(), "notification sent");
        }
        Ok(())
    }

    async fn settle(&self, row: &NotificationRow, attempt: Attempt) -> Result<(), sqlx::Error> {
        match attempt {
            Attempt::Sent { .. } => Ok(()),
            Attempt::Nobody => store::drop_unaddressable(&self.db, &row.id).await,
            Attempt::Suppressed(why) => {
                tracing::info!(notification_id = %row.id, template = %row.template, why = %why, "notification suppressed");
                metrics::counter!("notifications_suppressed_total", "template" => row.template.clone())
                    .increment(1);
                store::suppress(&self.db, &row.id, &why).await
            }
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
                store::reschedule(&self.db, &row.id, next, &error).await
            }
            Attempt::GiveUp(error) => self.give_up(row, &error).await,
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

/// The template values of `row`: what the event said plus the contact and a short
/// order reference.
fn template_values(row: &NotificationRow, contact: &Contact) -> Result<Value, String> {
    let mut values: Value =
        serde_json::from_str(&row.context).map_err(|e| format!("stored template values: {e}"))?;
    let Some(map) = values.as_object_mut() else {
        return Err("stored template values are not an object".into());
    };
    let name = if contact.name.is_empty() {
        "there".to_owned()
    } else {
        contact.name.clone()
    };
    map.insert("name".into(), Value::String(name));
    map.insert("email".into(), Value::String(contact.email.clone()));
    if let Some(order) = map.get("order_id").and_then(Value::as_str) {
        let short: String = order.chars().take(8).collect();
        map.insert("order_ref".into(), Value::String(short));
    }
    Ok(values)
}

/// `+` and 7 to 15 digits, the first not zero.
fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn email_sent(
    row: &NotificationRow,
    recipient: &str,
    subject: &str,
    metadata: Option<EventMetadata>,
) -> EmailSent {
    EmailSent {
        metadata,
        notification_id: row.id.clone(),
        user_id: row.user_id.clone(),
        recipient: recipient.to_owned(),
        template: row.template.clone(),
        subject: subject.to_owned(),
        trigger_event_id: row.trigger_event_id.clone(),
    }
}

fn sms_sent(row: &NotificationRow, recipient: &str, metadata: Option<EventMetadata>) -> SmsSent {
    SmsSent {
        metadata,
        notification_id: row.id.clone(),
        user_id: row.user_id.clone(),
        recipient: recipient.to_owned(),
        template: row.template.clone(),
        trigger_event_id: row.trigger_event_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+15551234567"));
        assert!(!is_e164("15551234567"));
        assert!(!is_e164("+0555123"));
        assert!(!is_e164("+1555abc4567"));
        assert!(!is_e164("+123"));
    }
}
