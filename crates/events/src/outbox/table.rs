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
        Self::enqueue_all(conn, std::slice::from_ref(event)).await
    }

    /// Adds `events`, in order, to the outbox within the transaction `conn` belongs to,
    /// a statement for each run of a power of two of them (see [`crate::sql`]).
    pub async fn enqueue_all<E: DomainEvent>(
        conn: &mut AnyConnection,
        events: &[E],
    ) -> Result<(), EventsError> {
        let now = now_micros();
        for run in crate::sql::pow2_chunks(events, 64) {
            let sql = format!(
                "INSERT INTO weft_outbox (event_id, topic, event_key, event_type, headers, payload, created_at) \
                 VALUES {}",
                crate::sql::values(conn, run.len(), 7)
            );
            let mut insert = sqlx::query(&sql);
            for event in run {
                let (id, headers) = Self::envelope(event)?;
                insert = insert
                    .bind(id)
                    .bind(E::TOPIC)
                    .bind(event.key().to_owned())
                    .bind(E::TYPE)
                    .bind(headers)
                    .bind(event.encode_to_vec())
                    .bind(now);
            }
            insert.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// The id and the headers (JSON) of `event`'s envelope.
    fn envelope<E: DomainEvent>(event: &E) -> Result<(String, String), EventsError> {
        let corrupt = |reason: String| EventsError::CorruptOutboxRow { seq: 0, reason };
        let envelope = Envelope::of(event).map_err(|e| corrupt(e.to_string()))?;
        let headers =
            serde_json::to_string(&envelope.headers()).map_err(|e| corrupt(e.to_string()))?;
        Ok((envelope.id, headers))
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
