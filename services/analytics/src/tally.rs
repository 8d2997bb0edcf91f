//! How events change the projections. Each event is read and checked on its own
//! (an event that can never be counted is refused, and goes to the dead-letter topic);
//! what a transaction's events change is summed in memory and written once, at its
//! end: one upsert per counter, bucket, hour and currency, one for the windows, and
//! the newest of the recent events — instead of a dozen statements for every event.
//!
//! Nothing personal is projected: summaries of the recent events name users by id,
//! never by email address or phone number, and a verification's secret is never read.

mod read;
mod write;

use std::collections::{BTreeMap, VecDeque};

use sqlx::AnyConnection;
use weft_events::consumer::{HandlerError, Projection, Received, Scope};
use weft_events::db::now_micros;

use self::read::{Change, permanent, read};
use self::write::{Key, NANOS, Recent, WindowRow};
use crate::latency;
use crate::projection::{
    EMAILS, EVENTS, LATENCY_MAX, ORDERS, RECENT, SIGNUPS, SMS, UPDATED, WATERMARK,
};
use crate::windows::{Lateness, Width, metric};

const HOUR_MICROS: i64 = 3_600_000_000;

/// Applies every event to the projections, a transaction at a time, with windows
/// that take events up to `lateness` late.
pub struct Projector {
    /// How late an event may be and still count in its window.
    pub lateness: Lateness,
}

impl Projection for Projector {
    fn scope(&self) -> Box<dyn Scope> {
        Box::new(Tally {
            lateness: self.lateness,
            ..Tally::default()
        })
    }
}

/// What a transaction's events add up to.
#[derive(Default)]
struct Tally {
    lateness: Lateness,
    /// `events_processed` before the first event of the transaction.
    base: Option<i64>,
    /// The watermark after the events so far (read with `base`).
    watermark: i64,
    /// What the events add to each window: (width, start, metric, dimension).
    windows: BTreeMap<(Width, i64, &'static str, String), i128>,
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
                let [b, watermark] = write::lock_counters(tx, [EVENTS, WATERMARK]).await?;
                self.base = Some(b);
                self.watermark = watermark;
                b
            }
        };
        self.add_to_windows(&change, occurred_at, event.replaying);
        // An event stamped ahead of this clock does not close windows early.
        self.watermark = self.watermark.max(occurred_at.min(now));
        self.add(change, occurred_at);
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
        let tally = *self;
        let version = tally.base.unwrap_or(0) + tally.counters.get(EVENTS).copied().unwrap_or(0);
        let added: Vec<(&'static str, i64)> = tally.counters.into_iter().collect();
        let mut highest: Vec<(&'static str, i64)> = tally
            .latency_max
            .map(|max| (LATENCY_MAX, max))
            .into_iter()
            .collect();
        if tally.base.is_some() {
            highest.push((WATERMARK, tally.watermark));
        }
        let updated = (tally.updated > 0).then_some((UPDATED, tally.updated));
        write::counters(tx, &added, &highest, updated).await?;
        let windows: Vec<WindowRow> = tally
            .windows
            .into_iter()
            .map(|((width, start, name, dimension), amount)| {
                // Revenue is summed in nanos, every other figure is a count.
                let (units, nanos) = if name == metric::REVENUE {
                    (
                        i64::try_from(amount / NANOS).unwrap_or(i64::MAX),
                        (amount % NANOS) as i64,
                    )
                } else {
                    (i64::try_from(amount).unwrap_or(i64::MAX), 0)
                };
                WindowRow {
                    width: width.seconds(),
                    start,
                    metric: name,
                    dimension,
                    units,
                    nanos,
                }
            })
            .collect();
        write::add_to_windows(tx, &windows, version).await?;
        let sources = keyed(tally.by_source, Key::Text);
        write::add_to(tx, "signups_by_source", "source", "count", &sources).await?;
        let hours = keyed(tally.hours, Key::Int);
        write::add_to(tx, "orders_per_hour", "hour_start", "count", &hours).await?;
        let buckets = keyed(tally.buckets, Key::Int);
        write::add_to(tx, "latency_buckets", "bucket", "count", &buckets).await?;
        for (currency, nanos) in tally.revenue {
            write::add_revenue(tx, &currency, nanos).await?;
        }
        if let Some(newest) = tally.recent.back().map(|r| r.seq) {
            write::insert_recent(tx, &tally.recent).await?;
            write::forget_recent(tx, newest - RECENT).await?;
        }
        Ok(())
    }
}

/// The rows of a breakdown, each amount under its key.
fn keyed<K>(rows: BTreeMap<K, i64>, key: impl Fn(K) -> Key) -> Vec<(Key, i64)> {
    rows.into_iter().map(|(k, by)| (key(k), by)).collect()
}

impl Tally {
    /// Adds what one event changes to the window of each width that holds
    /// `occurred_at`, or counts it late there when that window has closed. An event
    /// read again by a rebuild (`replaying`) is never late: lateness is about when
    /// an event reached the live projections, and a rebuild reads every partition
    /// at its own pace.
    fn add_to_windows(&mut self, change: &Change, occurred_at: i64, replaying: bool) {
        let figures: Vec<(&'static str, String, i128)> = match change {
            Change::Signup(source) => vec![(metric::SIGNUPS, source.clone(), 1)],
            Change::Order(total) => vec![
                (metric::ORDERS, String::new(), 1),
                (
                    metric::REVENUE,
                    total.currency_code.clone(),
                    i128::from(total.units) * NANOS + i128::from(total.nanos),
                ),
            ],
            Change::Email => vec![(metric::EMAILS, String::new(), 1)],
            Change::Sms => vec![(metric::SMS, String::new(), 1)],
            Change::Nothing => return,
        };
        let lateness = self.lateness;
        for width in Width::ALL {
            let start = width.start_of(occurred_at);
            if !replaying && lateness.closed(width, start, self.watermark) {
                *self
                    .windows
                    .entry((width, start, metric::LATE, String::new()))
                    .or_default() += 1;
                continue;
            }
            for (name, dimension, amount) in &figures {
                *self
                    .windows
                    .entry((width, start, *name, dimension.clone()))
                    .or_default() += amount;
            }
        }
    }

    /// Adds what one event changes beyond the common counters; an order counts in
    /// the hour it occurred.
    fn add(&mut self, change: Change, occurred_at: i64) {
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
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_proto::common::Money;

    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn tally(watermark: i64) -> Tally {
        Tally {
            lateness: Lateness(Duration::from_secs(300)),
            watermark,
            ..Tally::default()
        }
    }

    fn order() -> Change {
        Change::Order(Money {
            currency_code: "EUR".into(),
            units: 1,
            nanos: 500_000_000,
        })
    }

    #[test]
    fn an_event_of_a_closed_window_is_late_unless_a_rebuild_reads_it() {
        // Minute 0 closed at minute 6; the hour is open.
        let mut live = tally(6 * MINUTE);
        live.add_to_windows(&order(), 30_000_000, false);
        let got: Vec<_> = live.windows.into_iter().collect();
        assert_eq!(
            got,
            [
                ((Width::Minute, 0, metric::LATE, String::new()), 1),
                ((Width::Hour, 0, metric::ORDERS, String::new()), 1),
                (
                    (Width::Hour, 0, metric::REVENUE, "EUR".into()),
                    1_500_000_000
                ),
            ]
        );
        let mut rebuild = tally(6 * MINUTE);
        rebuild.add_to_windows(&order(), 30_000_000, true);
        assert_eq!(
            rebuild.windows.len(),
            4,
            "counted in the minute and the hour"
        );
        assert!(
            rebuild
                .windows
                .keys()
                .all(|(_, _, m, _)| *m != metric::LATE)
        );
        // Events that change no figure are counted nowhere, late or not.
        let mut other = tally(6 * MINUTE);
        other.add_to_windows(&Change::Nothing, 0, false);
        assert!(other.windows.is_empty());
    }
}
