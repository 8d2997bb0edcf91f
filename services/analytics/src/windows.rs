//! Tumbling windows of event time: each event counts in the one-minute and the
//! one-hour window that hold its `ce_time`, as long as the window is still open.
//!
//! A window closes once analytics has seen an event at least the allowed lateness
//! past the window's end (the **watermark**: the latest event time seen, never
//! ahead of this process's clock, so one event stamped in the future cannot close
//! every window at once). An event of a closed window changes none of its figures
//! and is counted in its `late_events` instead. Whether an event is late is decided
//! once, in the transaction that applies it, so a redelivery (skipped by the inbox)
//! or a restart counts nothing twice. A rebuild replays the topics and counts every
//! event in its window: the late ones are in their windows after a rebuild.
//!
//! Here: the widths and their arithmetic, the range a `ListWindows` asks for, and
//! reading windows back. [`crate::tally`] adds to them.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row as _;
use weft_events::Database;
use weft_events::db::timestamp;
use weft_kit::status::FieldViolation;
use weft_proto::analytics::{Window, WindowWidth};
use weft_proto::common::Money;

/// The figures a window keeps (the `metric` column).
pub(crate) mod metric {
    pub const ORDERS: &str = "orders_created";
    pub const REVENUE: &str = "revenue";
    pub const SIGNUPS: &str = "signups";
    pub const EMAILS: &str = "emails_sent";
    pub const SMS: &str = "sms_sent";
    pub const LATE: &str = "late_events";
}

/// Most windows one `ListWindows` returns: a day of minutes, two months of hours.
pub const MAX_WINDOWS: i64 = 1_440;
/// Windows a `ListWindows` without a start returns, the current one included.
pub const DEFAULT_WINDOWS: i64 = 60;

const MICROS: i64 = 1_000_000;

/// The width of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Width {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Width {
    /// Every width, each event counting in one window of each.
    pub const ALL: [Width; 2] = [Width::Minute, Width::Hour];

    /// The width as stored: seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Width::Minute => 60,
            Width::Hour => 3_600,
        }
    }

    /// The width in µs.
    pub fn micros(self) -> i64 {
        self.seconds() * MICROS
    }

    /// The start of the window that holds `t` (µs since the epoch).
    pub fn start_of(self, t: i64) -> i64 {
        t.div_euclid(self.micros()) * self.micros()
    }

    /// The width a request names; unset is a minute.
    pub fn from_proto(value: i32) -> Option<Self> {
        match WindowWidth::try_from(value).ok()? {
            WindowWidth::Unspecified | WindowWidth::Minute => Some(Width::Minute),
            WindowWidth::Hour => Some(Width::Hour),
        }
    }
}

/// How late an event may be and still count in its window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lateness(pub Duration);

impl Lateness {
    /// Whether the window of `width` starting at `start` is closed at `watermark`.
    pub fn closed(self, width: Width, start: i64, watermark: i64) -> bool {
        let allowed = i64::try_from(self.0.as_micros()).unwrap_or(i64::MAX);
        watermark >= (start + width.micros()).saturating_add(allowed)
    }
}

/// The windows a request asks for: from the one starting at `first` to the one
/// before `end`, all of `width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// Their width.
    pub width: Width,
    /// Start of the first window, µs since the epoch.
    pub first: i64,
    /// End of the last window, µs since the epoch.
    pub end: i64,
}

impl Range {
    /// The range of a `ListWindows` at `now` (µs): `start` and `end` as given (µs,
    /// `None` when unset), widened to whole windows.
    pub fn new(
        width: i32,
        start: Option<i64>,
        end: Option<i64>,
        now: i64,
    ) -> Result<Self, Vec<FieldViolation>> {
        let Some(width) = Width::from_proto(width) else {
            return Err(vec![FieldViolation::new(
                "width",
                "must be WINDOW_WIDTH_MINUTE or WINDOW_WIDTH_HOUR",
            )]);
        };
        let w = width.micros();
        // The window that holds the moment before `end` is the last one.
        let end = width.start_of(end.unwrap_or(now + 1) - 1) + w;
        let first = match start {
            Some(start) => width.start_of(start),
            None => end - DEFAULT_WINDOWS * w,
        };
        if first >= end {
            return Err(vec![FieldViolation::new(
                "start_time",
                "must be before end_time",
            )]);
        }
        let count = (end - first) / w;
        if count > MAX_WINDOWS {
            return Err(vec![FieldViolation::new(
                "end_time",
                format!(
                    "the range holds {count} windows; at most {MAX_WINDOWS} per call: ask for a shorter range, or for hours"
                ),
            )]);
        }
        Ok(Self { width, first, end })
    }

    /// The last [`DEFAULT_WINDOWS`] windows of `width` at `now`, the current one
    /// included.
    pub fn latest(width: Width, now: i64) -> Self {
        let end = width.start_of(now) + width.micros();
        Self {
            width,
            first: end - DEFAULT_WINDOWS * width.micros(),
            end,
        }
    }

    /// How many windows it holds.
    pub fn len(&self) -> i64 {
        (self.end - self.first) / self.width.micros()
    }

    /// Whether it holds none (never, once built).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a request's time (seconds and nanos) into µs; a time outside what a
/// `Timestamp` may hold is refused, naming `field`.
pub fn micros_of(
    field: &str,
    time: Option<&prost_types::Timestamp>,
) -> Result<Option<i64>, FieldViolation> {
    let Some(t) = time else {
        return Ok(None);
    };
    // 0001-01-01 to 9999-12-31, as the Timestamp type documents.
    const MIN: i64 = -62_135_596_800;
    const MAX: i64 = 253_402_300_799;
    if !(MIN..=MAX).contains(&t.seconds) || !(0..1_000_000_000).contains(&t.nanos) {
        return Err(FieldViolation::new(
            field,
            "must be a time between 0001-01-01 and 9999-12-31",
        ));
    }
    Ok(Some(t.seconds * MICROS + i64::from(t.nanos) / 1_000))
}

/// The pruning of windows older than their retention (by start): one rule per width.
pub fn prune_rules(minutes: Duration, hours: Duration) -> Vec<weft_events::retention::Rule> {
    [
        ("minute windows", Width::Minute, minutes),
        ("hour windows", Width::Hour, hours),
    ]
    .into_iter()
    .map(|(name, width, keep)| weft_events::retention::Rule {
        name,
        delete: format!(
            "DELETE FROM windows WHERE (width, window_start, metric, dimension) IN \
                 (SELECT width, window_start, metric, dimension FROM windows \
                  WHERE width = {} AND window_start < $1 LIMIT $2)",
            width.seconds()
        ),
        keep: Some(keep),
    })
    .collect()
}

/// The watermark now (µs; 0 before the first event).
pub async fn watermark(db: &Database) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT value FROM counters WHERE name = $1")
            .bind(crate::projection::WATERMARK)
            .fetch_optional(db.pool())
            .await?
            .unwrap_or(0),
    )
}

/// A window's stored figures: (metric, dimension, units, nanos).
type Figures = Vec<(String, String, i64, i64)>;

/// The stored figures of the windows of `range` by start; only of those changed
/// after `since` (a version) when given. With the highest version read.
async fn stored(
    db: &Database,
    range: Range,
    since: Option<i64>,
) -> Result<(BTreeMap<i64, Figures>, i64), sqlx::Error> {
    let mut sql = "SELECT window_start, metric, dimension, units, nanos, version FROM windows \
                   WHERE width = $1 AND window_start >= $2 AND window_start < $3"
        .to_owned();
    if since.is_some() {
        sql.push_str(
            " AND window_start IN (SELECT window_start FROM windows \
             WHERE width = $4 AND version > $5 AND window_start >= $6)",
        );
    }
    let width = range.width.seconds();
    let mut query = sqlx::query(&sql)
        .bind(width)
        .bind(range.first)
        .bind(range.end);
    if let Some(since) = since {
        query = query.bind(width).bind(since).bind(range.first);
    }
    let mut by_start: BTreeMap<i64, Figures> = BTreeMap::new();
    let mut highest = since.unwrap_or(0);
    for r in query.fetch_all(db.pool()).await? {
        highest = highest.max(r.try_get(5)?);
        by_start.entry(r.try_get(0)?).or_default().push((
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        ));
    }
    Ok((by_start, highest))
}

/// Every window of `range`, oldest first, empty ones included, with whether each
/// is closed at `watermark`.
pub async fn list(
    db: &Database,
    range: Range,
    lateness: Lateness,
    watermark: i64,
) -> Result<Vec<Window>, sqlx::Error> {
    let (mut stored, _) = stored(db, range, None).await?;
    let w = range.width.micros();
    let mut windows = Vec::with_capacity(usize::try_from(range.len()).unwrap_or(0));
    let mut start = range.first;
    while start < range.end {
        let figures = stored.remove(&start).unwrap_or_default();
        let closed = lateness.closed(range.width, start, watermark);
        windows.push(window(start, start + w, closed, figures));
        start += w;
    }
    Ok(windows)
}

/// The windows of `range` changed after version `since` (an `events_processed`
/// value), oldest first; with the highest version among them (`since` when none).
pub async fn changed(
    db: &Database,
    range: Range,
    since: i64,
    lateness: Lateness,
    watermark: i64,
) -> Result<(Vec<Window>, i64), sqlx::Error> {
    let (stored, highest) = stored(db, range, Some(since)).await?;
    let w = range.width.micros();
    let windows = stored
        .into_iter()
        .map(|(start, figures)| {
            let closed = lateness.closed(range.width, start, watermark);
            window(start, start + w, closed, figures)
        })
        .collect();
    Ok((windows, highest))
}

/// One window from its stored figures: (metric, dimension, units, nanos).
fn window(start: i64, end: i64, closed: bool, figures: Figures) -> Window {
    let mut out = Window {
        start_time: Some(timestamp(start)),
        end_time: Some(timestamp(end)),
        closed,
        ..Window::default()
    };
    for (name, dimension, units, nanos) in figures {
        match name.as_str() {
            metric::ORDERS => out.orders_created += units,
            metric::SIGNUPS => {
                out.signups += units;
                *out.signups_by_source.entry(dimension).or_default() += units;
            }
            metric::EMAILS => out.emails_sent += units,
            metric::SMS => out.sms_sent += units,
            metric::LATE => out.late_events += units,
            metric::REVENUE => out.revenue.push(money(dimension, units, nanos)),
            _ => {}
        }
    }
    out
}

/// An exact amount stored as units × 10^9 + nanos, normalised (same sign).
fn money(currency_code: String, units: i64, nanos: i64) -> Money {
    let total = i128::from(units) * 1_000_000_000 + i128::from(nanos);
    Money {
        currency_code,
        units: i64::try_from(total / 1_000_000_000).unwrap_or(i64::MAX),
        nanos: i32::try_from(total % 1_000_000_000).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * MICROS;

    #[test]
    fn an_event_on_a_boundary_opens_the_next_window() {
        assert_eq!(Width::Minute.start_of(MIN - 1), 0);
        assert_eq!(Width::Minute.start_of(MIN), MIN);
        assert_eq!(Width::Hour.start_of(61 * MIN), 60 * MIN);
        // Before the epoch too.
        assert_eq!(Width::Minute.start_of(-1), -MIN);
    }

    #[test]
    fn a_window_closes_once_the_watermark_is_the_lateness_past_its_end() {
        let lateness = Lateness(Duration::from_secs(300));
        assert!(!lateness.closed(Width::Minute, 0, 6 * MIN - 1));
        assert!(lateness.closed(Width::Minute, 0, 6 * MIN));
        assert!(!lateness.closed(Width::Hour, 0, 6 * MIN));
    }

    #[test]
    fn a_range_is_whole_windows_and_bounded() {
        let now = 100 * MIN + 30 * MICROS;
        let last_hour = Range::new(0, None, None, now).unwrap();
        assert_eq!((last_hour.first, last_hour.end), (41 * MIN, 101 * MIN));
        assert_eq!(last_hour.len(), DEFAULT_WINDOWS);
        assert_eq!(Range::latest(Width::Minute, now), last_hour);
        assert_eq!(
            Range::latest(Width::Minute, 101 * MIN),
            Range::new(0, None, None, 101 * MIN).unwrap()
        );
        let given = Range::new(1, Some(MIN + 1), Some(3 * MIN), now).unwrap();
        assert_eq!((given.first, given.end, given.len()), (MIN, 3 * MIN, 2));
        let hours = Range::new(2, Some(0), Some(now), now).unwrap();
        assert_eq!((hours.first, hours.end), (0, 120 * MIN));

        let field = |r: Result<Range, Vec<FieldViolation>>| r.unwrap_err()[0].field.clone();
        assert_eq!(field(Range::new(7, None, None, now)), "width");
        assert_eq!(
            field(Range::new(1, Some(3 * MIN), Some(3 * MIN), now)),
            "start_time"
        );
        assert_eq!(
            field(Range::new(1, Some(0), Some(MAX_WINDOWS * MIN + 1), now)),
            "end_time"
        );
        assert!(Range::new(1, Some(0), Some(MAX_WINDOWS * MIN), now).is_ok());
    }

    #[test]
    fn times_a_timestamp_cannot_hold_are_refused() {
        let t = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(
            micros_of("t", Some(&t(1, 5_000))).unwrap(),
            Some(MICROS + 5)
        );
        assert!(micros_of("t", Some(&t(i64::MAX, 0))).is_err());
        assert!(micros_of("t", Some(&t(0, -1))).is_err());
        assert_eq!(micros_of("t", None).unwrap(), None);
    }

    #[test]
    fn stored_amounts_read_back_exactly() {
        let m = money("USD".into(), 3, 1_500_000_000);
        assert_eq!((m.units, m.nanos), (4, 500_000_000));
    }
}
