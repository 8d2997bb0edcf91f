//! The outbox as services see it: events written inside the caller's transaction,
//! and the backlog of unsent rows.

use sqlx::{AnyConnection, Row as _};

use crate::catalog::DomainEvent;
use crate::db::{Database, now_micros};
use crate::envelope::Envelope;
use crate::error::EventsError;

/// Writes events into the outbox inside a caller's transaction.
pub struct Outbox;

impl Outbox {
    /// Adds `event` to the outbox within the transaction `conn` belongs to. The event
    /// must carry metadata (see [`crate::EventContext::metadata`]).
    pub async fn enqueue<E: DomainEvent>(
        conn: &mut AnyConnection,
        event: &E,
    ) -> Result<(), EventsError> {
        let envelope = Envelope::of(event).map_err(|e| EventsError::CorruptOutboxRow {
            seq: 0,
            reason: e.to_string(),
        })?;
        let headers = serde_json::to_string(&envelope.headers()).map_err(|e| {
            EventsError::CorruptOutboxRow {
                seq: 0,
                reason: e.to_string(),
            }
        })?;
        sqlx::query(
            "INSERT INTO weft_outbox (event_id, topic, event_key, event_type, headers, payload, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(envelope.id)
        .bind(E::TOPIC)
        .bind(event.key().to_owned())
        .bind(E::TYPE)
        .bind(headers)
        .bind(event.encode_to_vec())
        .bind(now_micros())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Unsent rows, and when the oldest of them was written (microseconds since the
    /// epoch).
    pub async fn waiting(db: &Database) -> Result<(i64, Option<i64>), EventsError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM weft_outbox WHERE sent_at IS NULL",
        )
        .fetch_one(db.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("oldest")?))
    }

    /// Unsent rows: the relay's backlog.
    pub async fn backlog(db: &Database) -> Result<i64, EventsError> {
        Ok(Self::waiting(db).await?.0)
    }
}
