//! The projections: how each event changes them (inside the consumer's transaction,
//! which also records the event in the inbox and its offset), how they are read, and
//! how a rebuild drops them.

use sqlx::{AnyConnection, Row as _};
use weft_events::consumer::{Handler, HandlerError, Received, Reset};
use weft_events::db::{now_micros, timestamp};
use weft_events::{Database, DomainEvent};
use weft_proto::analytics::{HourlyCount, LatencySummary, Metrics, RecentEvent};
use weft_proto::common::Money;
use weft_proto::notification::{EmailSent, SmsSent};
use weft_proto::order::{
    OrderCancelled, OrderCreated, OrderDelivered, OrderKind, OrderShipped, PaymentFailed,
    PaymentProcessed,
};
use weft_proto::user::{SignupSource, UserSignedUp, UserUpdated};

use crate::latency;

/// How many recent events are kept.
pub const RECENT: i64 = 50;
/// How many hours of orders a snapshot carries.
const HOURS: i64 = 168;
const HOUR_MICROS: i64 = 3_600_000_000;

const SIGNUPS: &str = "signups";
const ORDERS: &str = "orders_created";
const EMAILS: &str = "emails_sent";
const SMS: &str = "sms_sent";
const EVENTS: &str = "events_processed";
const LATENCY_MAX: &str = "latency_max_us";
const UPDATED: &str = "updated_at";

fn permanent(msg: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(msg.into())
}

fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

fn required(value: &str, what: &str, event: &str) -> Result<(), HandlerError> {
    if value.trim().is_empty() {
        return Err(permanent(format!("{event} without {what}")));
    }
    Ok(())
}

async fn add(conn: &mut AnyConnection, name: &str, by: i64) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value RETURNING value",
    )
    .bind(name.to_owned())
    .bind(by)
    .fetch_one(conn)
    .await?;
    row.try_get(0)
}

async fn set_max(conn: &mut AnyConnection, name: &str, value: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET \
         value = CASE WHEN excluded.value > counters.value THEN excluded.value ELSE counters.value END",
    )
    .bind(name.to_owned())
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}

async fn bump(
    conn: &mut AnyConnection,
    table: &str,
    key_column: &str,
    key: impl Into<KeyValue>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO {table} ({key_column}, count) VALUES ($1, 1) \
         ON CONFLICT ({key_column}) DO UPDATE SET count = {table}.count + 1"
    );
    match key.into() {
        KeyValue::Text(k) => sqlx::query(&sql).bind(k).execute(conn).await?,
        KeyValue::Int(k) => sqlx::query(&sql).bind(k).execute(conn).await?,
    };
    Ok(())
}

enum KeyValue {
    Text(String),
    Int(i64),
}

impl From<String> for KeyValue {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for KeyValue {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

/// Adds `amount` to the revenue of its currency, exactly.
async fn add_revenue(conn: &mut AnyConnection, amount: &Money) -> Result<(), sqlx::Error> {
    let row = sqlx::query("SELECT units, nanos FROM revenue WHERE currency = $1")
        .bind(amount.currency_code.clone())
        .fetch_optional(&mut *conn)
        .await?;
    let (units, nanos): (i64, i64) = match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, 0),
    };
    let total = i128::from(units) * 1_000_000_000
        + i128::from(nanos)
        + i128::from(amount.units) * 1_000_000_000
        + i128::from(amount.nanos);
    let units = i64::try_from(total / 1_000_000_000).unwrap_or(i64::MAX);
    let nanos = (total % 1_000_000_000) as i64;
    sqlx::query(
        "INSERT INTO revenue (currency, units, nanos) VALUES ($1, $2, $3) \
         ON CONFLICT (currency) DO UPDATE SET units = excluded.units, nanos = excluded.nanos",
    )
    .bind(amount.currency_code.clone())
    .bind(units)
    .bind(nanos)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies every event to the projections.
pub struct Projector;

impl Projector {
    /// What `event` changes beyond the common counters; returns its one-line summary.
    async fn apply_specific(
        tx: &mut AnyConnection,
        event: &Received,
        occurred_at: i64,
    ) -> Result<String, HandlerError> {
        let t = event.envelope.event_type.as_str();
        let summary = if t == UserSignedUp::TYPE {
            let e = event.decode::<UserSignedUp>()?;
            required(&e.user_id, "a user_id", "UserSignedUp")?;
            required(&e.email, "an email", "UserSignedUp")?;
            let source = SignupSource::try_from(e.source)
                .unwrap_or(SignupSource::Unspecified)
                .as_str_name()
                .to_owned();
            add(tx, SIGNUPS, 1).await?;
            bump(tx, "signups_by_source", "source", source.clone()).await?;
            format!("signup {} ({source})", e.email)
        } else if t == UserUpdated::TYPE {
            let e = event.decode::<UserUpdated>()?;
            required(&e.user_id, "a user_id", "UserUpdated")?;
            format!(
                "profile of {} changed: {}",
                short(&e.user_id),
                e.changed_fields.join(", ")
            )
        } else if t == OrderCreated::TYPE {
            let e = event.decode::<OrderCreated>()?;
            required(&e.order_id, "an order_id", "OrderCreated")?;
            required(&e.user_id, "a user_id", "OrderCreated")?;
            let total = e
                .total
                .as_ref()
                .filter(|m| m.currency_code.len() == 3)
                .ok_or_else(|| permanent("OrderCreated without a total"))?;
            if (total.units > 0 && total.nanos < 0)
                || (total.units < 0 && total.nanos > 0)
                || total.nanos.abs() >= 1_000_000_000
            {
                return Err(permanent("OrderCreated with a malformed total"));
            }
            add(tx, ORDERS, 1).await?;
            add_revenue(tx, total).await?;
            let hour = occurred_at.div_euclid(HOUR_MICROS) * HOUR_MICROS;
            bump(tx, "orders_per_hour", "hour_start", hour).await?;
            let welcome = if e.kind == OrderKind::Welcome as i32 {
                " (welcome)"
            } else {
                ""
            };
            format!("order {} {total}{welcome}", short(&e.order_id))
        } else if t == PaymentProcessed::TYPE {
            let e = event.decode::<PaymentProcessed>()?;
            let amount = e.amount.map(|m| m.to_string()).unwrap_or_default();
            format!("payment {amount} for order {}", short(&e.order_id))
        } else if t == PaymentFailed::TYPE {
            let e = event.decode::<PaymentFailed>()?;
            format!(
                "payment failed for order {}: {}",
                short(&e.order_id),
                e.reason
            )
        } else if t == OrderShipped::TYPE {
            let e = event.decode::<OrderShipped>()?;
            format!("order {} shipped with {}", short(&e.order_id), e.carrier)
        } else if t == OrderDelivered::TYPE {
            let e = event.decode::<OrderDelivered>()?;
            format!("order {} delivered", short(&e.order_id))
        } else if t == OrderCancelled::TYPE {
            let e = event.decode::<OrderCancelled>()?;
            format!("order {} cancelled: {}", short(&e.order_id), e.reason)
        } else if t == EmailSent::TYPE {
            let e = event.decode::<EmailSent>()?;
            required(&e.notification_id, "a notification_id", "EmailSent")?;
            add(tx, EMAILS, 1).await?;
            format!("email {} to {}", e.template, e.recipient)
        } else if t == SmsSent::TYPE {
            let e = event.decode::<SmsSent>()?;
            required(&e.notification_id, "a notification_id", "SmsSent")?;
            add(tx, SMS, 1).await?;
            format!("text {} to {}", e.template, e.recipient)
        } else {
            // Catalogued but newer than this projection: counted and listed only.
            t.rsplit('.').next().unwrap_or(t).to_owned()
        };
        Ok(summary)
    }
}

#[async_trait::async_trait]
impl Handler for Projector {
    async fn handle(&self, tx: &mut AnyConnection, event: &Received) -> Result<(), HandlerError> {
        let now = now_micros();
        let occurred_at = chrono::DateTime::parse_from_rfc3339(&event.envelope.time)
            .map(|t| t.timestamp_micros())
            .map_err(|e| permanent(format!("ce_time {:?}: {e}", event.envelope.time)))?;
        let summary = Self::apply_specific(tx, event, occurred_at).await?;
        let seq = add(tx, EVENTS, 1).await?;
        // A replayed event's age says nothing about processing latency.
        if !event.replaying {
            let latency = (now - occurred_at).max(0);
            bump(tx, "latency_buckets", "bucket", latency::bucket(latency)).await?;
            set_max(tx, LATENCY_MAX, latency).await?;
        }
        sqlx::query(
            "INSERT INTO recent_events (seq, event_id, event_type, topic, subject, correlation_id, \
             occurred_at, processed_at, summary) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(seq)
        .bind(event.envelope.id.clone())
        .bind(event.envelope.event_type.clone())
        .bind(event.topic.clone())
        .bind(
            event
                .key
                .clone()
                .unwrap_or_else(|| event.envelope.subject.clone()),
        )
        .bind(event.envelope.correlation_id.clone())
        .bind(occurred_at)
        .bind(now)
        .bind(summary)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recent_events WHERE seq <= $1")
            .bind(seq - RECENT)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(UPDATED)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Drops every projection (the consumer forgets its inbox and offsets in the same
/// transaction).
pub struct DropProjections;

#[async_trait::async_trait]
impl Reset for DropProjections {
    async fn reset(&self, tx: &mut AnyConnection) -> Result<(), sqlx::Error> {
        for table in [
            "counters",
            "signups_by_source",
            "revenue",
            "orders_per_hour",
            "latency_buckets",
            "recent_events",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// The metrics now, read in one transaction so they agree with each other.
pub async fn metrics(db: &Database) -> Result<Metrics, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let mut m = Metrics::default();
    let mut latency_max = 0i64;
    for row in sqlx::query("SELECT name, value FROM counters")
        .fetch_all(&mut *tx)
        .await?
    {
        let name: String = row.try_get(0)?;
        let value: i64 = row.try_get(1)?;
        match name.as_str() {
            SIGNUPS => m.signups = value,
            ORDERS => m.orders_created = value,
            EMAILS => m.emails_sent = value,
            SMS => m.sms_sent = value,
            EVENTS => m.events_processed = value,
            LATENCY_MAX => latency_max = value,
            UPDATED => m.update_time = Some(timestamp(value)),
            _ => {}
        }
    }
    for row in sqlx::query("SELECT source, count FROM signups_by_source")
        .fetch_all(&mut *tx)
        .await?
    {
        m.signups_by_source.insert(row.try_get(0)?, row.try_get(1)?);
    }
    for row in sqlx::query("SELECT currency, units, nanos FROM revenue ORDER BY currency")
        .fetch_all(&mut *tx)
        .await?
    {
        m.revenue.push(Money {
            currency_code: row.try_get(0)?,
            units: row.try_get(1)?,
            nanos: i32::try_from(row.try_get::<i64, _>(2)?).unwrap_or_default(),
        });
    }
    let mut hours = sqlx::query(
        "SELECT hour_start, count FROM orders_per_hour ORDER BY hour_start DESC LIMIT $1",
    )
    .bind(HOURS)
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|r| {
        Ok(HourlyCount {
            hour_start: Some(timestamp(r.try_get(0)?)),
            count: r.try_get(1)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    hours.reverse();
    m.orders_per_hour = hours;
    let buckets = sqlx::query("SELECT bucket, count FROM latency_buckets ORDER BY bucket")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let max_ms = latency_max as f64 / 1000.0;
    m.event_latency = Some(LatencySummary {
        count: buckets.iter().map(|(_, c)| c).sum(),
        p50_ms: round(latency::quantile(&buckets, 0.50, max_ms)),
        p99_ms: round(latency::quantile(&buckets, 0.99, max_ms)),
        max_ms: round(max_ms),
    });
    tx.commit().await?;
    Ok(m)
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

/// Recent events with `seq > after`, newest first, at most `limit`; with the highest
/// seq among them.
pub async fn recent(
    db: &Database,
    after: i64,
    limit: i64,
) -> Result<(Vec<RecentEvent>, i64), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, event_id, event_type, topic, subject, correlation_id, occurred_at, \
         processed_at, summary FROM recent_events WHERE seq > $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut last = after;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        last = last.max(r.try_get::<i64, _>(0)?);
        events.push(RecentEvent {
            event_id: r.try_get(1)?,
            event_type: r.try_get(2)?,
            topic: r.try_get(3)?,
            subject: r.try_get(4)?,
            correlation_id: r.try_get(5)?,
            occurred_at: Some(timestamp(r.try_get(6)?)),
            processed_at: Some(timestamp(r.try_get(7)?)),
            summary: r.try_get(8)?,
        });
    }
    Ok((events, last))
}
