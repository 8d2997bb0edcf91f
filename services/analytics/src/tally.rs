//! How events change the projections. Each event is read and checked on its own
//! (an event that can never be counted is refused, and goes to the dead-letter topic);
//! what a transaction's events change is summed in memory and written once, at its
//! end: one upsert per counter, bucket, hour and currency, and the newest of the
//! recent events — instead of a dozen statements for every event.
//!
//! Nothing personal is projected: summaries of the recent events name users by id,
//! never by email address or phone number, and a verification's secret is never read.

use std::collections::{BTreeMap, VecDeque};

use sqlx::{AnyConnection, Row as _};
use weft_events::DomainEvent;
use weft_events::consumer::{HandlerError, Projection, Received, Scope};
use weft_events::db::now_micros;
use weft_proto::common::Money;
use weft_proto::notification::{EmailSent, SmsSent};
use weft_proto::order::{
    OrderCancelled, OrderCreated, OrderDelivered, OrderKind, OrderShipped, PaymentFailed,
    PaymentProcessed,
};
use weft_proto::user::{
    ContactVerificationRequested, ContactVerified, SignupSource, UserRolesChanged, UserSignedUp,
    UserUpdated,
};

use crate::latency;
use crate::projection::{EMAILS, EVENTS, LATENCY_MAX, ORDERS, RECENT, SIGNUPS, SMS, UPDATED};

const HOUR_MICROS: i64 = 3_600_000_000;
const NANOS: i128 = 1_000_000_000;

fn permanent(msg: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(msg.into())
}

fn required(value: &str, what: &str, event: &str) -> Result<(), HandlerError> {
    if value.trim().is_empty() {
        return Err(permanent(format!("{event} without {what}")));
    }
    Ok(())
}

/// What one event adds to the projections beyond the common counters.
enum Change {
    Signup(String),
    Order(Money),
    Email,
    Sms,
    Nothing,
}

/// An event type the projections know: what one event of it changes, and its
/// one-line summary, once it is checked.
trait Counted: DomainEvent {
    fn count(self) -> Result<(Change, String), HandlerError>;
}

/// How analytics reads one event type.
type Reader = fn(&Received) -> Result<(Change, String), HandlerError>;

/// Decodes `event` as `E` and counts it.
fn read_as<E: Counted>(event: &Received) -> Result<(Change, String), HandlerError> {
    event.decode::<E>()?.count()
}

/// Every event type the projections know, with its reader.
const READERS: &[(&str, Reader)] = &[
    (UserSignedUp::TYPE, read_as::<UserSignedUp>),
    (UserUpdated::TYPE, read_as::<UserUpdated>),
    (UserRolesChanged::TYPE, read_as::<UserRolesChanged>),
    (
        ContactVerificationRequested::TYPE,
        read_as::<ContactVerificationRequested>,
    ),
    (ContactVerified::TYPE, read_as::<ContactVerified>),
    (OrderCreated::TYPE, read_as::<OrderCreated>),
    (PaymentProcessed::TYPE, read_as::<PaymentProcessed>),
    (PaymentFailed::TYPE, read_as::<PaymentFailed>),
    (OrderShipped::TYPE, read_as::<OrderShipped>),
    (OrderDelivered::TYPE, read_as::<OrderDelivered>),
    (OrderCancelled::TYPE, read_as::<OrderCancelled>),
    (EmailSent::TYPE, read_as::<EmailSent>),
    (SmsSent::TYPE, read_as::<SmsSent>),
];

/// Reads and checks `event`: what it changes and its one-line summary.
fn read(event: &Received) -> Result<(Change, String), HandlerError> {
    let t = event.envelope.event_type.as_str();
    match READERS.iter().find(|(name, _)| *name == t) {
        Some((_, reader)) => reader(event),
        // Catalogued but newer than this projection: counted and listed only.
        None => Ok((
            Change::Nothing,
            t.rsplit('.').next().unwrap_or(t).to_owned(),
        )),
    }
}

impl Counted for UserSignedUp {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.user_id, "a user_id", "UserSignedUp")?;
        required(&self.email, "an email", "UserSignedUp")?;
        let source = SignupSource::try_from(self.source)
            .unwrap_or(SignupSource::Unspecified)
            .as_str_name()
            .to_owned();
        // Summaries carry ids, never an address or a number (see the module docs).
        let summary = format!("signup of user {} ({source})", self.user_id);
        Ok((Change::Signup(source), summary))
    }
}

impl Counted for UserUpdated {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.user_id, "a user_id", "UserUpdated")?;
        let summary = format!(
            "profile of {} changed: {}",
            self.user_id,
            self.changed_fields.join(", ")
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for UserRolesChanged {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!(
            "roles of user {} now {}",
            self.user_id,
            self.roles.join(", ")
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for ContactVerificationRequested {
    fn count(self) -> Result<(Change, String), HandlerError> {
        // Never the secret, nor the address.
        let summary = format!("verification sent to user {}", self.user_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for ContactVerified {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("contact of user {} verified", self.user_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderCreated {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.order_id, "an order_id", "OrderCreated")?;
        required(&self.user_id, "a user_id", "OrderCreated")?;
        let total = self
            .total
            .filter(|m| m.currency_code.len() == 3)
            .ok_or_else(|| permanent("OrderCreated without a total"))?;
        if (total.units > 0 && total.nanos < 0)
            || (total.units < 0 && total.nanos > 0)
            || total.nanos.abs() >= 1_000_000_000
        {
            return Err(permanent("OrderCreated with a malformed total"));
        }
        let welcome = if self.kind == OrderKind::Welcome as i32 {
            " (welcome)"
        } else {
            ""
        };
        let summary = format!("order {} {total}{welcome}", self.order_id);
        Ok((Change::Order(total), summary))
    }
}

impl Counted for PaymentProcessed {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let amount = self.amount.map(|m| m.to_string()).unwrap_or_default();
        let summary = format!("payment {amount} for order {}", self.order_id);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for PaymentFailed {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!(
            "payment failed for order {}: {}",
            self.order_id, self.reason
        );
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderShipped {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("order {} shipped with {}", self.order_id, self.carrier);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for OrderDelivered {
    fn count(self) -> Result<(Change, String), HandlerError> {
        Ok((
            Change::Nothing,
            format!("order {} delivered", self.order_id),
        ))
    }
}

impl Counted for OrderCancelled {
    fn count(self) -> Result<(Change, String), HandlerError> {
        let summary = format!("order {} cancelled: {}", self.order_id, self.reason);
        Ok((Change::Nothing, summary))
    }
}

impl Counted for EmailSent {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.notification_id, "a notification_id", "EmailSent")?;
        let summary = format!("email {} to user {}", self.template, self.user_id);
        Ok((Change::Email, summary))
    }
}

impl Counted for SmsSent {
    fn count(self) -> Result<(Change, String), HandlerError> {
        required(&self.notification_id, "a notification_id", "SmsSent")?;
        let summary = format!("text {} to user {}", self.template, self.user_id);
        Ok((Change::Sms, summary))
    }
}

/// Applies every event to the projections, a transaction at a time.
pub struct Projector;

impl Projection for Projector {
    fn scope(&self) -> Box<dyn Scope> {
        Box::new(Tally::default())
    }
}

/// One row of `recent_events`.
struct Recent {
    seq: i64,
    event_id: String,
    event_type: String,
    topic: String,
    subject: String,
    correlation_id: String,
    occurred_at: i64,
    processed_at: i64,
    summary: String,
}

/// What a transaction's events add up to.
#[derive(Default)]
struct Tally {
    /// `events_processed` before the first event of the transaction.
    base: Option<i64>,
    counters: BTreeMap<&'static str, i64>,
    latency_max: Option<i64>,
    updated: i64,
    by_source: BTreeMap<String, i64>,
    revenue: BTreeMap<String, i128>,
    hours: BTreeMap<i64, i64>,
    buckets: BTreeMap<i64, i64>,
    recent: VecDeque<Recent>,
}

#[async_trait::async_trait]
impl Scope for Tally {
    async fn handle(
        &mut self,
        tx: &mut AnyConnection,
        event: &Received,
    ) -> Result<(), HandlerError> {
        let now = now_micros();
        let occurred_at = chrono::DateTime::parse_from_rfc3339(&event.envelope.time)
            .map(|t| t.timestamp_micros())
            .map_err(|e| permanent(format!("ce_time {:?}: {e}", event.envelope.time)))?;
        let (change, summary) = read(event)?;
        let base = match self.base {
            Some(b) => b,
            None => {
                let b = counter(tx, EVENTS).await?;
                self.base = Some(b);
                b
            }
        };
        match change {
            Change::Signup(source) => {
                *self.counters.entry(SIGNUPS).or_default() += 1;
                *self.by_source.entry(source).or_default() += 1;
            }
            Change::Order(total) => {
                *self.counters.entry(ORDERS).or_default() += 1;
                *self.revenue.entry(total.currency_code).or_default() +=
                    i128::from(total.units) * NANOS + i128::from(total.nanos);
                let hour = occurred_at.div_euclid(HOUR_MICROS) * HOUR_MICROS;
                *self.hours.entry(hour).or_default() += 1;
            }
            Change::Email => *self.counters.entry(EMAILS).or_default() += 1,
            Change::Sms => *self.counters.entry(SMS).or_default() += 1,
            Change::Nothing => {}
        }
        let events = self.counters.entry(EVENTS).or_default();
        *events += 1;
        let seq = base + *events;
        // A replayed event's age says nothing about processing latency.
        if !event.replaying {
            let latency = (now - occurred_at).max(0);
            *self.buckets.entry(latency::bucket(latency)).or_default() += 1;
            self.latency_max = Some(self.latency_max.map_or(latency, |m| m.max(latency)));
        }
        self.updated = now;
        if self.recent.len() == RECENT as usize {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            seq,
            event_id: event.envelope.id.clone(),
            event_type: event.envelope.event_type.clone(),
            topic: event.topic.clone(),
            subject: event
                .key
                .clone()
                .unwrap_or_else(|| event.envelope.subject.clone()),
            correlation_id: event.envelope.correlation_id.clone(),
            occurred_at,
            processed_at: now,
            summary,
        });
        Ok(())
    }

    async fn finish(self: Box<Self>, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        for (name, by) in &self.counters {
            add_to(
                tx,
                "counters",
                "name",
                Key::Text((*name).to_owned()),
                "value",
                *by,
            )
            .await?;
        }
        if let Some(max) = self.latency_max {
            sqlx::query(
                "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET \
                 value = CASE WHEN excluded.value > counters.value THEN excluded.value ELSE counters.value END",
            )
            .bind(LATENCY_MAX)
            .bind(max)
            .execute(&mut *tx)
            .await?;
        }
        for (source, by) in self.by_source {
            add_to(
                tx,
                "signups_by_source",
                "source",
                Key::Text(source),
                "count",
                by,
            )
            .await?;
        }
        for (hour, by) in self.hours {
            add_to(
                tx,
                "orders_per_hour",
                "hour_start",
                Key::Int(hour),
                "count",
                by,
            )
            .await?;
        }
        for (bucket, by) in self.buckets {
            add_to(
                tx,
                "latency_buckets",
                "bucket",
                Key::Int(bucket),
                "count",
                by,
            )
            .await?;
        }
        for (currency, nanos) in self.revenue {
            add_revenue(tx, &currency, nanos).await?;
        }
        if let Some(newest) = self.recent.back().map(|r| r.seq) {
            insert_recent(tx, &self.recent).await?;
            sqlx::query("DELETE FROM recent_events WHERE seq <= $1")
                .bind(newest - RECENT)
                .execute(&mut *tx)
                .await?;
        }
        if self.updated > 0 {
            sqlx::query(
                "INSERT INTO counters (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(UPDATED)
            .bind(self.updated)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// The counter `name`, locked until the transaction ends: replicas applying batches
/// side by side take turns here, so each numbers its recent events after the other's.
async fn counter(tx: &mut AnyConnection, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, 0) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value RETURNING value",
    )
    .bind(name.to_owned())
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)
}

enum Key {
    Text(String),
    Int(i64),
}

/// Adds `by` to the `value_column` of the row of `key` in `table`.
async fn add_to(
    tx: &mut AnyConnection,
    table: &str,
    key_column: &str,
    key: Key,
    value_column: &str,
    by: i64,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO {table} ({key_column}, {value_column}) VALUES ($1, $2) \
         ON CONFLICT ({key_column}) DO UPDATE SET {value_column} = {table}.{value_column} + excluded.{value_column}"
    );
    let query = match key {
        Key::Text(k) => sqlx::query(&sql).bind(k),
        Key::Int(k) => sqlx::query(&sql).bind(k),
    };
    query.bind(by).execute(&mut *tx).await?;
    Ok(())
}

/// Adds `nanos` to the revenue of `currency`, exactly (whole units and nanos of the
/// same sign).
async fn add_revenue(
    tx: &mut AnyConnection,
    currency: &str,
    nanos: i128,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query("SELECT units, nanos FROM revenue WHERE currency = $1")
        .bind(currency.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
    let (units, part): (i64, i64) = match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, 0),
    };
    let total = i128::from(units) * NANOS + i128::from(part) + nanos;
    let units = i64::try_from(total / NANOS).unwrap_or(i64::MAX);
    let part = (total % NANOS) as i64;
    sqlx::query(
        "INSERT INTO revenue (currency, units, nanos) VALUES ($1, $2, $3) \
         ON CONFLICT (currency) DO UPDATE SET units = excluded.units, nanos = excluded.nanos",
    )
    .bind(currency.to_owned())
    .bind(units)
    .bind(part)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts the recent events with one statement.
async fn insert_recent(tx: &mut AnyConnection, rows: &VecDeque<Recent>) -> Result<(), sqlx::Error> {
    // Placeholders are written out because sqlx's Any query builder emits `?`, which
    // PostgreSQL does not accept.
    let values: Vec<String> = (0..rows.len())
        .map(|i| {
            let b = i * 9;
            let p: Vec<String> = (1..=9).map(|k| format!("${}", b + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO recent_events (seq, event_id, event_type, topic, subject, correlation_id, \
         occurred_at, processed_at, summary) VALUES {}",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for r in rows {
        query = query
            .bind(r.seq)
            .bind(r.event_id.clone())
            .bind(r.event_type.clone())
            .bind(r.topic.clone())
            .bind(r.subject.clone())
            .bind(r.correlation_id.clone())
            .bind(r.occurred_at)
            .bind(r.processed_at)
            .bind(r.summary.clone());
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::READERS;

    #[test]
    fn every_catalogued_event_type_has_one_reader() {
        let mut read: Vec<&str> = READERS.iter().map(|(t, _)| *t).collect();
        let mut catalogued: Vec<&str> = weft_events::catalog::EVENT_TYPES
            .iter()
            .map(|(t, _)| *t)
            .collect();
        read.sort_unstable();
        catalogued.sort_unstable();
        assert_eq!(read, catalogued);
    }
}
