//! Partition claims (`weft_partition_claims`): which replica of a consumer group works
//! on each partition, fenced in the service database.
//!
//! Kafka's group coordinator decides who is assigned what; the database decides whose
//! writes count. A member claims the partitions it is assigned (each claim adds one to
//! the partition's epoch) and reads their stored offsets after the claim, in the same
//! transaction. Every transaction that applies records of a partition first checks
//! that the partition's epoch is still the one it claimed ([`check`]); on PostgreSQL
//! that check also holds the claim's row lock until the commit, so a new claim waits
//! for a transaction in flight and then reads the offsets it wrote. A member that lost
//! a partition without hearing of it (stopped past its session timeout, cut off from
//! the brokers) therefore commits nothing more for it: its transaction is rolled back.
//!
//! A rewind releases every claim of the group (holder empty, epoch + 1), and each member
//! claims its partitions again and reads them from the beginning.
//!
//! The database also carries the deployment's identity ([`deployment_id`]), which the
//! members of a group must share.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row as _};

use crate::db::{Database, now_micros};

/// A partition by weft's topic name.
pub type Partition = (String, i32);

/// What a claim found: the epoch this member now holds for each partition, and the
/// group's stored next offsets (of every partition, read after the claim).
#[derive(Debug, Default)]
pub struct Claimed {
    /// Epochs by partition.
    pub epochs: HashMap<Partition, i64>,
    /// Stored next offsets by partition.
    pub stored: HashMap<Partition, i64>,
}

/// Claims `partitions` of `group` for `holder`, in one transaction.
pub async fn claim(
    db: &Database,
    group: &str,
    holder: &str,
    partitions: &[Partition],
) -> Result<Claimed, sqlx::Error> {
    let mut tx = db.begin().await?;
    let now = now_micros();
    let mut claimed = Claimed::default();
    for (topic, partition) in partitions {
        let row = sqlx::query(
            "INSERT INTO weft_partition_claims \
             (consumer_group, topic, kafka_partition, epoch, holder, claimed_at) \
             VALUES ($1, $2, $3, 1, $4, $5) \
             ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE \
             SET epoch = weft_partition_claims.epoch + 1, holder = excluded.holder, \
                 claimed_at = excluded.claimed_at \
             RETURNING epoch",
        )
        .bind(group.to_owned())
        .bind(topic.clone())
        .bind(i64::from(*partition))
        .bind(holder.to_owned())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        claimed
            .epochs
            .insert((topic.clone(), *partition), row.try_get(0)?);
    }
    claimed.stored = super::offsets::stored_in(&mut tx, group).await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Which of `epochs`' partitions this member no longer holds, checked in the
/// transaction `conn` belongs to (taking the claims' row locks until it ends), with
/// one statement for up to 64 partitions.
pub async fn check<'a>(
    conn: &mut AnyConnection,
    group: &str,
    epochs: impl IntoIterator<Item = (&'a Partition, i64)>,
) -> Result<Vec<Partition>, sqlx::Error> {
    let epochs: Vec<(&Partition, i64)> = epochs.into_iter().collect();
    let mut fenced = Vec::new();
    for run in crate::sql::pow2_chunks(&epochs, 64) {
        // The values' columns are column1, column2, … on both SQLite and PostgreSQL.
        let sql = format!(
            "UPDATE weft_partition_claims SET epoch = weft_partition_claims.epoch \
             FROM (VALUES {}) AS v \
             WHERE consumer_group = $1 AND topic = v.column1 AND kafka_partition = v.column2 \
                 AND epoch = v.column3 \
             RETURNING topic, kafka_partition",
            crate::sql::rows(run.len(), 3, 2)
        );
        let mut query = sqlx::query(&sql).bind(group.to_owned());
        for ((topic, partition), epoch) in run {
            query = query
                .bind(topic.clone())
                .bind(i64::from(*partition))
                .bind(*epoch);
        }
        let held: HashSet<Partition> = query
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<i64, _>(1)? as i32)))
            .collect::<Result<_, sqlx::Error>>()?;
        fenced.extend(
            run.iter()
                .map(|(partition, _)| (*partition).clone())
                .filter(|p| !held.contains(p)),
        );
    }
    Ok(fenced)
}

/// Who holds each partition of `group` now: epoch and holder (empty when released).
pub async fn holders(
    db: &Database,
    group: &str,
) -> Result<HashMap<Partition, (i64, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT topic, kafka_partition, epoch, holder FROM weft_partition_claims \
         WHERE consumer_group = $1",
    )
    .bind(group.to_owned())
    .fetch_all(db.pool())
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let partition: i64 = row.try_get(1)?;
        out.insert(
            (row.try_get(0)?, partition as i32),
            (row.try_get(2)?, row.try_get(3)?),
        );
    }
    Ok(out)
}

/// Releases every claim of `group` (a rewind), in the transaction `conn` belongs to:
/// members in flight are fenced, and each claims its partitions again.
pub async fn release_all(conn: &mut AnyConnection, group: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE weft_partition_claims SET epoch = epoch + 1, holder = '' \
         WHERE consumer_group = $1",
    )
    .bind(group.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The identity of the deployment `db` belongs to: made once, at random, by the first
/// replica that asks; the same for every replica sharing the database.
pub async fn deployment_id(db: &Database) -> Result<String, sqlx::Error> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO weft_deployment (singleton, id, created_at) VALUES (1, $1, $2) \
         ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(fresh[..12].to_owned())
    .bind(now_micros())
    .execute(&mut *tx)
    .await?;
    let id: String = sqlx::query("SELECT id FROM weft_deployment WHERE singleton = 1")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(id)
}
