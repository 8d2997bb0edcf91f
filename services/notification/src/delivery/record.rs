//! Recording what went out: each sent row becomes SENT and its `EmailSent` /
//! `SmsSent` enters the outbox, all of a pass in one transaction. The event continues
//! the trace of the notification's trigger and keeps its correlation (causation =
//! the trigger).

use weft_events::db::now_micros;
use weft_events::outbox::RelayWaker;
use weft_events::{Database, EventContext, Outbox};
use weft_kit::telemetry::{MapCarrier, set_parent_from};
use weft_proto::common::EventMetadata;
use weft_proto::notification::{Channel, EmailSent, SmsSent};

use super::attempt::Attempt;
use crate::store::{self, NotificationRow, TriggerContext};

/// The event of a sent message.
enum SentEvent {
    Email(EmailSent),
    Sms(SmsSent),
}

/// Marks the rows of `sent` (those that are [`Attempt::Sent`]) sent under `claim` and
/// enqueues their events, in one transaction, then wakes the relay.
pub(super) async fn record_sent(
    db: &Database,
    relay: &RelayWaker,
    claim: &str,
    sent: &[(NotificationRow, Attempt)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = sent
        .iter()
        .filter(|(_, attempt)| matches!(attempt, Attempt::Sent { .. }))
        .map(|(row, _)| row.trigger_event_id.as_str())
        .collect();
    let triggers = store::trigger_contexts(db, &ids).await?;
    let mut events = Vec::with_capacity(sent.len());
    for (row, attempt) in sent {
        if let Attempt::Sent { recipient, subject } = attempt {
            let trigger = triggers.get(&row.trigger_event_id);
            events.push((
                row,
                recipient,
                subject,
                sent_event(trigger, row, recipient, subject),
            ));
        }
    }
    let delivered: Vec<store::Delivered<'_>> = events
        .iter()
        .map(|(row, recipient, subject, _)| store::Delivered {
            id: &row.id,
            recipient,
            subject,
        })
        .collect();
    let mut tx = db.begin().await?;
    let marked = store::mark_sent(&mut tx, claim, &delivered, now_micros()).await?;
    let mut recorded = Vec::with_capacity(events.len());
    let (mut emails, mut texts) = (Vec::new(), Vec::new());
    for (row, _, _, event) in events {
        if !marked.contains(&row.id) {
            tracing::warn!(notification_id = %row.id, "sent, but the row is no longer pending under this pass's claim (the claim ran out and another pass took it); not recorded twice");
            continue;
        }
        match event {
            SentEvent::Sms(e) => texts.push(e),
            SentEvent::Email(e) => emails.push(e),
        }
        recorded.push(row);
    }
    // One statement per kind of event (per run of a power of two of them).
    let enqueued = match Outbox::enqueue_all(&mut tx, &emails).await {
        Ok(()) => Outbox::enqueue_all(&mut tx, &texts).await,
        failed => failed,
    };
    enqueued.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    relay.commit(tx).await?;
    for row in recorded {
        metrics::counter!("notifications_sent_total", "template" => row.template.clone(), "channel" => row.channel.as_str_name())
            .increment(1);
        tracing::info!(notification_id = %row.id, template = %row.template, channel = row.channel.as_str_name(), "notification sent");
    }
    Ok(())
}

/// The event saying `row` went out, continuing its trigger's trace (one trace per
/// user action).
fn sent_event(
    trigger: Option<&TriggerContext>,
    row: &NotificationRow,
    recipient: &str,
    subject: &str,
) -> SentEvent {
    let span = tracing::info_span!(
        "notification sent",
        otel.kind = "producer",
        notification.id = %row.id,
        notification.template = %row.template,
    );
    if let Some(t) = trigger {
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
            .map(|t| t.correlation_id.clone())
            .unwrap_or_else(|| row.trigger_event_id.clone()),
        causation_id: row.trigger_event_id.clone(),
    };
    let metadata = Some(span.in_scope(|| {
        context.metadata(
            crate::config::IDENTITY.name,
            crate::config::IDENTITY.version,
        )
    }));
    match row.channel {
        Channel::Sms => SentEvent::Sms(sms_sent(row, recipient, metadata)),
        _ => SentEvent::Email(email_sent(row, recipient, subject, metadata)),
    }
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
