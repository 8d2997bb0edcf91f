//! The statements a tally is written with: upserts that add to a counter, a row of a
//! breakdown or a currency's revenue, and the insert of the recent events. Every
//! statement takes the open transaction; nothing here decides what to write.

use std::collections::VecDeque;

use sqlx::{AnyConnection, Row as _};

/// Nanos in one unit of a currency.
pub(super) const NANOS: i128 = 1_000_000_000;

/// One row of `recent_events`.
pub(super) struct Recent {
    pub(super) seq: i64,
    pub(super) event_id: String,
    pub(super) event_type: String,
    pub(super) topic: String,
    pub(super) subject: String,
    pub(super) correlation_id: String,
    pub(super) occurred_at: i64,
    pub(super) processed_at: i64,
    pub(super) summary: String,
}

/// The counters `names`, locked until the transaction ends: replicas applying
/// batches side by side take turns here, so each numbers its recent events after the
/// other's and sees the watermark the other left.
pub(super) async fn lock_counters<const N: usize>(
    tx: &mut AnyConnection,
    names: [&'static str; N],
) -> Result<[i64; N], sqlx::Error> {
    let sql = format!(
        "INSERT INTO counters (name, value) VALUES {} \
         ON CONFLICT (name) DO UPDATE SET value = counters.value RETURNING name, value",
        weft_events::sql::rows(N, 2, 1)
    );
    let mut query = sqlx::query(&sql);
    for name in names {
        query = query.bind(name).bind(0i64);
    }
    let mut values = [0i64; N];
    for row in query.fetch_all(&mut *tx).await? {
        let name: String = row.try_get(0)?;
        if let Some(i) = names.iter().position(|n| *n == name) {
            values[i] = row.try_get(1)?;
        }
    }
    Ok(values)
}

/// The key of a row to add to.
pub(super) enum Key {
    Text(String),
    Int(i64),
}

/// Adds each amount of `rows` to the `value_column` of its key's row in `table`, a
/// statement for each run of a power of two of them (each key at most once).
pub(super) async fn add_to(
    tx: &mut AnyConnection,
    table: &str,
    key_column: &str,
    value_column: &str,
    rows: &[(Key, i64)],
) -> Result<(), sqlx::Error> {
    for run in weft_events::sql::pow2_chunks(rows, 64) {
        let sql = format!(
            "INSERT INTO {table} ({key_column}, {value_column}) VALUES {} \
             ON CONFLICT ({key_column}) DO UPDATE SET {value_column} = {table}.{value_column} + excluded.{value_column}",
            weft_events::sql::values(tx, run.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (key, by) in run {
            query = match key {
                Key::Text(k) => query.bind(k.clone()),
                Key::Int(k) => query.bind(*k),
            }
            .bind(*by);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Writes the counters of a transaction with one statement (there are a handful of
/// counter names, so a handful of texts): `added` are added to, each of `highest`
/// raises its counter unless that is higher already, and `set` replaces its
/// counter's value.
pub(super) async fn counters(
    tx: &mut AnyConnection,
    added: &[(&'static str, i64)],
    highest: &[(&'static str, i64)],
    set: Option<(&'static str, i64)>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&str, i64)> = added.iter().chain(highest).copied().chain(set).collect();
    if rows.is_empty() {
        return Ok(());
    }
    // $1..$k name the counters that keep their highest value, $k+1 the one set.
    let k = highest.len().max(1);
    let kept: Vec<String> = (1..=k).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO counters (name, value) VALUES {} ON CONFLICT (name) DO UPDATE SET value = \
         CASE WHEN excluded.name IN ({}) THEN \
           CASE WHEN excluded.value > counters.value THEN excluded.value ELSE counters.value END \
         WHEN excluded.name = ${} THEN excluded.value \
         ELSE counters.value + excluded.value END",
        weft_events::sql::rows(rows.len(), 2, k + 2),
        kept.join(", "),
        k + 1,
    );
    let mut query = sqlx::query(&sql);
    for i in 0..k {
        query = query.bind(highest.get(i).map_or("", |(name, _)| name));
    }
    query = query.bind(set.map_or("", |(name, _)| name));
    for (name, value) in rows {
        query = query.bind(name).bind(value);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// What a transaction adds to one figure of one window.
pub(super) struct WindowRow {
    /// The window's width, seconds.
    pub(super) width: i64,
    /// Its start, µs since the epoch.
    pub(super) start: i64,
    pub(super) metric: &'static str,
    pub(super) dimension: String,
    /// A count, or an amount of money in whole units ...
    pub(super) units: i64,
    /// ... and nanos (0 for a count).
    pub(super) nanos: i64,
}

/// Adds each of `rows` to its window's figure, as changed by the transaction that
/// brings `events_processed` to `version`; a statement for each run of a power of two
/// of them. Amounts are kept as units × 10^9 + nanos and stay exact: the nanos
/// carry into the units as they add up.
pub(super) async fn add_to_windows(
    tx: &mut AnyConnection,
    rows: &[WindowRow],
    version: i64,
) -> Result<(), sqlx::Error> {
    for run in weft_events::sql::pow2_chunks(rows, 64) {
        let sql = format!(
            "INSERT INTO windows (width, window_start, metric, dimension, units, nanos, version) \
             VALUES {} ON CONFLICT (width, window_start, metric, dimension) DO UPDATE SET \
             units = windows.units + excluded.units + (windows.nanos + excluded.nanos) / 1000000000, \
             nanos = (windows.nanos + excluded.nanos) % 1000000000, version = excluded.version",
            weft_events::sql::values(tx, run.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for r in run {
            query = query
                .bind(r.width)
                .bind(r.start)
                .bind(r.metric)
                .bind(r.dimension.clone())
                .bind(r.units)
                .bind(r.nanos)
                .bind(version);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Adds `nanos` to the revenue of `currency`, exactly (whole units and nanos of the
/// same sign).
pub(super) async fn add_revenue(
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

/// Inserts the recent events, a statement for each run of a power of two of them.
pub(super) async fn insert_recent(
    tx: &mut AnyConnection,
    rows: &VecDeque<Recent>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<&Recent> = rows.iter().collect();
    for run in weft_events::sql::pow2_chunks(&rows, 64) {
        let sql = format!(
            "INSERT INTO recent_events (seq, event_id, event_type, topic, subject, correlation_id, \
             occurred_at, processed_at, summary) VALUES {}",
            weft_events::sql::values(tx, run.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for r in run {
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
    }
    Ok(())
}

/// Deletes the recent events with `seq <= up_to`.
pub(super) async fn forget_recent(tx: &mut AnyConnection, up_to: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recent_events WHERE seq <= $1")
        .bind(up_to)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
