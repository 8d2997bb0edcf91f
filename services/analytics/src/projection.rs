//! The projections: how they are read and how a rebuild drops them ([`crate::tally`]
//! is how events change them).

use sqlx::{AnyConnection, Row as _};
use weft_events::Database;
use weft_events::consumer::Reset;
use weft_events::db::timestamp;
use weft_proto::analytics::{HourlyCount, LatencySummary, Metrics, RecentEvent};
use weft_proto::common::Money;

use crate::latency;

/// How many recent events are kept.
pub const RECENT: i64 = 50;
/// How many hours of orders a snapshot carries.
const HOURS: i64 = 168;

pub(crate) const SIGNUPS: &str = "signups";
pub(crate) const ORDERS: &str = "orders_created";
pub(crate) const EMAILS: &str = "emails_sent";
pub(crate) const SMS: &str = "sms_sent";
pub(crate) const EVENTS: &str = "events_processed";
pub(crate) const LATENCY_MAX: &str = "latency_max_us";
pub(crate) const UPDATED: &str = "updated_at";
/// The latest event time seen, never ahead of the clock ([`crate::windows`]).
pub(crate) const WATERMARK: &str = "watermark_us";

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
            "windows",
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
    let latency_max = read_counters(&mut tx, &mut m).await?;
    for row in sqlx::query("SELECT source, count FROM signups_by_source")
        .fetch_all(&mut *tx)
        .await?
    {
        m.signups_by_source.insert(row.try_get(0)?, row.try_get(1)?);
    }
    m.revenue = revenue(&mut tx).await?;
    m.orders_per_hour = orders_per_hour(&mut tx).await?;
    m.event_latency = Some(latency_summary(&mut tx, latency_max).await?);
    tx.commit().await?;
    Ok(m)
}

/// Sets the counters of `m`; the highest latency seen (µs), which is a counter too.
async fn read_counters(tx: &mut AnyConnection, m: &mut Metrics) -> Result<i64, sqlx::Error> {
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
    Ok(latency_max)
}

/// The revenue in each currency, by currency code.
async fn revenue(tx: &mut AnyConnection) -> Result<Vec<Money>, sqlx::Error> {
    let mut revenue = Vec::new();
    for row in sqlx::query("SELECT currency, units, nanos FROM revenue ORDER BY currency")
        .fetch_all(&mut *tx)
        .await?
    {
        revenue.push(Money {
            currency_code: row.try_get(0)?,
            units: row.try_get(1)?,
            nanos: i32::try_from(row.try_get::<i64, _>(2)?).unwrap_or_default(),
        });
    }
    Ok(revenue)
}

/// The orders of the last [`HOURS`] hours that had any, oldest first.
async fn orders_per_hour(tx: &mut AnyConnection) -> Result<Vec<HourlyCount>, sqlx::Error> {
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
    Ok(hours)
}

/// Processing latency from the buckets, with the highest seen (µs).
async fn latency_summary(
    tx: &mut AnyConnection,
    latency_max: i64,
) -> Result<LatencySummary, sqlx::Error> {
    let buckets = sqlx::query("SELECT bucket, count FROM latency_buckets ORDER BY bucket")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let max_ms = latency_max as f64 / 1000.0;
    Ok(LatencySummary {
        count: buckets.iter().map(|(_, c)| c).sum(),
        p50_ms: round(latency::quantile(&buckets, 0.50, max_ms)),
        p99_ms: round(latency::quantile(&buckets, 0.99, max_ms)),
        max_ms: round(max_ms),
    })
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
