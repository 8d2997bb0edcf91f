//! Leases: work that one replica at a time may do when several share a database (the
//! outbox relay first of all: two relays would publish every row twice and interleave a
//! key's events).
//!
//! A lease is a row of `weft_leases`: its holder, a fencing token and when it expires.
//! A replica takes a lease that is free or expired, renews it while it works, and gives
//! it back when it stops, so a rolling restart hands over at once. A holder that dies
//! keeps it until it expires: another replica takes over within the lease's time to
//! live plus its own polling interval. Every change of holder adds one to the token,
//! and the holder's writes check it ([`Lease::still_held`], in the same transaction): a
//! former holder that wakes up after a pause (SIGSTOP, a long GC, a network cut) writes
//! nothing once another replica has taken over.
//!
//! Expiry compares the database row's wall-clock time with the taker's clock; the
//! fencing token does not depend on clocks at all.

use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Row as _};

use crate::db::{Backend, Database, now_micros};
use crate::error::EventsError;

/// This replica's name in leases: `$WEFT_REPLICA_ID`, else the host name (a pod's name
/// on Kubernetes). It stays the same across restarts of the replica, so a replica that
/// crashed and came back resumes its leases at once instead of waiting for them to
/// expire. Replicas on one host that share a database need ids of their own
/// (`weft up` gives each one).
pub fn replica_id() -> String {
    if let Ok(id) = std::env::var("WEFT_REPLICA_ID")
        && !id.trim().is_empty()
    {
        return id.trim().to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The lease `name` on a database, as seen by one replica.
#[derive(Debug)]
pub struct Lease {
    db: Database,
    name: String,
    holder: String,
    ttl: Duration,
    held: Option<Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    /// Until when this replica may act on it, by its own monotonic clock (which keeps
    /// counting while the process is stopped).
    valid_until: Instant,
    renewed_at: Instant,
}

/// Who holds a lease, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder's replica id.
    pub holder: String,
    /// The fencing token of its tenure.
    pub token: i64,
    /// When it expires unless renewed (microseconds since the epoch).
    pub expires_at: i64,
}

impl Lease {
    /// The lease `name` for the replica `holder`, expiring `ttl` after each renewal.
    pub fn new(db: Database, name: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            db,
            name: name.to_owned(),
            holder: holder.to_owned(),
            ttl,
            held: None,
        }
    }

    /// This replica's id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token while this replica holds the lease and it has not run out by
    /// this replica's clock.
    pub fn token(&self) -> Option<i64> {
        self.held
            .filter(|h| Instant::now() < h.valid_until)
            .map(|h| h.token)
    }

    /// Takes the lease if it is free, expired or held under this replica's name (a
    /// restarted replica resumes at once, in a new tenure that fences its former
    /// process), or renews it when a third of its time has passed; the fencing token when this replica holds it, `None` when another
    /// does. Losing it is logged.
    pub async fn ensure(&mut self) -> Result<Option<i64>, EventsError> {
        if let Some(h) = self.held {
            if Instant::now() < h.valid_until && h.renewed_at.elapsed() < self.ttl / 3 {
                return Ok(Some(h.token));
            }
            let started = Instant::now();
            // Through a write transaction, like every writer of the service: on SQLite
            // it takes its turn instead of spinning in the busy handler.
            let mut tx = self.db.begin().await?;
            let renewed = sqlx::query(
                "UPDATE weft_leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND token = $4",
            )
            .bind(now_micros() + micros(self.ttl))
            .bind(self.name.clone())
            .bind(self.holder.clone())
            .bind(h.token)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            tx.commit().await?;
            if renewed {
                self.held = Some(Held {
                    token: h.token,
                    valid_until: started + self.ttl,
                    renewed_at: started,
                });
                return Ok(Some(h.token));
            }
            self.held = None;
            metrics::gauge!("lease_held", "lease" => self.name.clone()).set(0.0);
            let now = self.current().await?;
            tracing::warn!(
                lease = %self.name,
                token = h.token,
                now_held_by = now.as_ref().map(|n| n.holder.as_str()).unwrap_or("nobody"),
                "lost the lease (it expired and another replica took it); stopping that work"
            );
        }
        self.acquire().await
    }

    async fn acquire(&mut self) -> Result<Option<i64>, EventsError> {
        let started = Instant::now();
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO weft_leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             token = weft_leases.token + 1, expires_at = excluded.expires_at \
             WHERE weft_leases.expires_at < $4 OR weft_leases.holder = excluded.holder",
        )
        .bind(self.name.clone())
        .bind(self.holder.clone())
        .bind(now + micros(self.ttl))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let current = read(&mut tx, &self.name).await?;
        tx.commit().await?;
        match current {
            Some(c) if c.holder == self.holder => {
                self.held = Some(Held {
                    token: c.token,
                    valid_until: started + self.ttl,
                    renewed_at: started,
                });
                metrics::gauge!("lease_held", "lease" => self.name.clone()).set(1.0);
                metrics::counter!("lease_taken_total", "lease" => self.name.clone()).increment(1);
                tracing::info!(lease = %self.name, holder = %self.holder, token = c.token, "took the lease");
                Ok(Some(c.token))
            }
            _ => Ok(None),
        }
    }

    /// Gives the lease back (a clean stop), so another replica takes it at its next
    /// try instead of after the time to live.
    pub async fn release(&mut self) {
        let Some(h) = self.held.take() else { return };
        metrics::gauge!("lease_held", "lease" => self.name.clone()).set(0.0);
        let done = sqlx::query(
            "UPDATE weft_leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(self.name.clone())
        .bind(self.holder.clone())
        .bind(h.token)
        .execute(self.db.pool())
        .await;
        match done {
            Ok(_) => tracing::info!(lease = %self.name, token = h.token, "gave the lease back"),
            Err(e) => {
                tracing::warn!(lease = %self.name, error = %e, "could not give the lease back; it expires by itself")
            }
        }
    }

    /// Who holds the lease now, as the database says.
    pub async fn current(&self) -> Result<Option<Holder>, EventsError> {
        let mut conn = self.db.pool().acquire().await?;
        read(&mut conn, &self.name).await
    }

    /// Whether the tenure of `token` is still the lease's current one, checked inside
    /// the transaction `conn` belongs to: the fence of a holder's writes. On PostgreSQL
    /// the row is locked until that transaction ends, so no takeover commits between
    /// the check and the write; SQLite has one writer at a time anyway.
    pub async fn still_held(
        &self,
        conn: &mut AnyConnection,
        token: i64,
    ) -> Result<bool, EventsError> {
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT 1 FROM weft_leases WHERE name = $1 AND holder = $2 AND token = $3{lock}"
        ))
        .bind(self.name.clone())
        .bind(self.holder.clone())
        .bind(token)
        .fetch_optional(conn)
        .await?;
        Ok(row.is_some())
    }
}

async fn read(conn: &mut AnyConnection, name: &str) -> Result<Option<Holder>, EventsError> {
    let row = sqlx::query("SELECT holder, token, expires_at FROM weft_leases WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some(Holder {
            holder: r.try_get("holder")?,
            token: r.try_get("token")?,
            expires_at: r.try_get("expires_at")?,
        }),
        None => None,
    })
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}
