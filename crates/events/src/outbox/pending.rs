//! The relay's side of the outbox table: the unsent rows a round reads, in order, and
//! what it writes back (sent, or the error of the first row that failed).

use sqlx::{AnyConnection, Row as _};

use crate::db::Database;
use crate::error::EventsError;

/// An unsent row.
pub(super) struct Pending {
    pub(super) seq: i64,
    pub(super) topic: String,
    pub(super) key: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) payload: Vec<u8>,
}

/// The first `batch` unsent rows, in order.
pub(super) async fn fetch(db: &Database, batch: i64) -> Result<Vec<Pending>, EventsError> {
    let rows = sqlx::query(
        "SELECT seq, topic, event_key, headers, payload FROM weft_outbox \
         WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(batch)
    .fetch_all(db.pool())
    .await?;
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let headers: String = row.try_get("headers")?;
        let headers =
            serde_json::from_str(&headers).map_err(|e| EventsError::CorruptOutboxRow {
                seq,
                reason: e.to_string(),
            })?;
        pending.push(Pending {
            seq,
            topic: row.try_get("topic")?,
            key: row.try_get("event_key")?,
            headers,
            payload: row.try_get("payload")?,
        });
    }
    Ok(pending)
}

/// Marks the rows `acked` sent at `now`, in the transaction `conn` belongs to.
pub(super) async fn mark_sent(
    conn: &mut AnyConnection,
    now: i64,
    acked: &[i64],
) -> Result<(), sqlx::Error> {
    if acked.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE weft_outbox SET sent_at = $1, attempts = attempts + 1 WHERE seq IN ({})",
        crate::sql::list(crate::sql::padded_len(acked.len()), 2)
    );
    let mut update = sqlx::query(&sql).bind(now);
    for seq in crate::sql::padded(acked) {
        update = update.bind(*seq);
    }
    update.execute(conn).await?;
    Ok(())
}

/// Counts a failed try of row `seq` and keeps its `error`, as far as the database
/// lets it (the round fails anyway).
pub(super) async fn note_failure(db: &Database, seq: i64, error: &str) {
    let _ = sqlx::query(
        "UPDATE weft_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = $2",
    )
    .bind(error.to_owned())
    .bind(seq)
    .execute(db.pool())
    .await;
}
