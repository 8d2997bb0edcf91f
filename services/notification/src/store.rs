//! The notification database: contacts, trigger records and notifications.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use weft_events::{Database, Received};
use weft_proto::notification::{Channel, DeliveryStatus};

/// Where to reach a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Phone number (E.164), empty when none.
    pub phone: String,
    /// Whether the email address is verified.
    pub email_verified: bool,
    /// Whether the phone number is verified: text messages go only to verified ones.
    pub phone_verified: bool,
}

/// Saves what `UserSignedUp` says of a user.
pub async fn put_contact(
    conn: &mut AnyConnection,
    user_id: &str,
    c: &Contact,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contacts (user_id, email, name, phone, email_verified, phone_verified, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name, \
         phone = excluded.phone, email_verified = excluded.email_verified, \
         phone_verified = excluded.phone_verified, updated_at = excluded.updated_at",
    )
    .bind(user_id.to_owned())
    .bind(c.email.clone())
    .bind(c.name.clone())
    .bind(c.phone.clone())
    .bind(i64::from(c.email_verified))
    .bind(i64::from(c.phone_verified))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The contact of `user_id`, if this service has seen the user.
pub async fn contact(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<Contact>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CONTACT} FROM contacts WHERE user_id = $1"
    ))
    .bind(user_id.to_owned())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(contact_of).transpose()
}

/// The contacts of `user_ids` that this service has seen, by user id: one statement
/// (an `IN` list padded to a power of two).
pub async fn contacts(
    db: &Database,
    user_ids: &[&str],
) -> Result<HashMap<String, Contact>, sqlx::Error> {
    let select = format!("SELECT {CONTACT}, user_id FROM contacts");
    let rows = weft_events::sql::fetch_in(db.pool(), &select, "user_id", user_ids).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(5)?, contact_of(r)?)))
        .collect()
}

/// The columns of a [`Contact`], in the order [`contact_of`] reads them.
const CONTACT: &str = "email, name, phone, email_verified, phone_verified";

fn contact_of(r: &AnyRow) -> Result<Contact, sqlx::Error> {
    Ok(Contact {
        email: r.try_get(0)?,
        name: r.try_get(1)?,
        phone: r.try_get(2)?,
        email_verified: r.try_get::<i64, _>(3)? != 0,
        phone_verified: r.try_get::<i64, _>(4)? != 0,
    })
}

/// Marks `address` of `user_id` verified, if it is still the user's (a verification
/// of an address since changed verifies nothing).
pub async fn set_verified(
    conn: &mut AnyConnection,
    user_id: &str,
    email: bool,
    address: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let sql = if email {
        "UPDATE contacts SET email_verified = 1, updated_at = $1 WHERE user_id = $2 AND email = $3"
    } else {
        "UPDATE contacts SET phone_verified = 1, updated_at = $1 WHERE user_id = $2 AND phone = $3"
    };
    sqlx::query(sql)
        .bind(now)
        .bind(user_id.to_owned())
        .bind(address.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the triggering record whole (for a later dead letter). Idempotent.
pub async fn save_trigger(
    conn: &mut AnyConnection,
    event: &Received,
    now: i64,
) -> Result<(), sqlx::Error> {
    save_triggers(conn, &[TriggerRow::of(event, now)]).await
}

/// A triggering record as it is kept.
pub struct TriggerRow {
    event_id: String,
    event_type: String,
    correlation_id: String,
    topic: String,
    partition: i64,
    offset: i64,
    key: Option<String>,
    /// A JSON list of (name, base64 value).
    headers: String,
    payload: Vec<u8>,
    created_at: i64,
}

impl TriggerRow {
    /// The row that keeps `event`, received at `now`.
    pub fn of(event: &Received, now: i64) -> Self {
        let headers: Vec<(&str, String)> = event
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), STANDARD.encode(v)))
            .collect();
        Self {
            event_id: event.envelope.id.clone(),
            event_type: event.envelope.event_type.clone(),
            correlation_id: event.context().correlation_id,
            topic: event.topic.clone(),
            partition: i64::from(event.partition),
            offset: event.offset,
            key: event.key.clone(),
            headers: serde_json::to_string(&headers).unwrap_or_else(|_| "[]".into()),
            payload: event.payload.clone(),
            created_at: now,
        }
    }
}

/// Keeps the triggering records `rows`, a statement for each run of a power of two of
/// them. Idempotent.
pub async fn save_triggers(
    conn: &mut AnyConnection,
    rows: &[TriggerRow],
) -> Result<(), sqlx::Error> {
    for run in weft_events::sql::pow2_chunks(rows, 64) {
        let sql = format!(
            "INSERT INTO triggers (event_id, event_type, correlation_id, topic, kafka_partition, \
             kafka_offset, event_key, headers, payload, created_at) \
             VALUES {} ON CONFLICT (event_id) DO NOTHING",
            weft_events::sql::values(conn, run.len(), 10)
        );
        let mut query = sqlx::query(&sql);
        for t in run {
            query = query
                .bind(t.event_id.clone())
                .bind(t.event_type.clone())
                .bind(t.correlation_id.clone())
                .bind(t.topic.clone())
                .bind(t.partition)
                .bind(t.offset)
                .bind(t.key.clone())
                .bind(t.headers.clone())
                .bind(t.payload.clone())
                .bind(t.created_at);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A stored trigger record.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Its correlation id.
    pub correlation_id: String,
    /// Topic it came from.
    pub topic: String,
    /// Partition it came from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record key.
    pub key: Option<String>,
    /// The record headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record value.
    pub payload: Vec<u8>,
}

/// The trigger record `event_id`.
pub async fn trigger(db: &Database, event_id: &str) -> Result<Option<Trigger>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT correlation_id, topic, kafka_partition, kafka_offset, event_key, headers, payload \
         FROM triggers WHERE event_id = $1",
    )
    .bind(event_id.to_owned())
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Trigger {
        correlation_id: r.try_get(0)?,
        topic: r.try_get(1)?,
        partition: i32::try_from(r.try_get::<i64, _>(2)?).unwrap_or_default(),
        offset: r.try_get(3)?,
        key: r.try_get(4)?,
        headers: decode_headers(&r.try_get::<String, _>(5)?),
        payload: r.try_get(6)?,
    }))
}

/// What a sent message's event takes from its trigger: the correlation id and the
/// record headers (the trace context among them).
pub struct TriggerContext {
    /// The trigger's correlation id.
    pub correlation_id: String,
    /// The trigger record's headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The [`TriggerContext`] of each of the trigger records `event_ids` that is kept, by
/// event id, read with one statement (not the payloads).
pub async fn trigger_contexts(
    db: &Database,
    event_ids: &[&str],
) -> Result<HashMap<String, TriggerContext>, sqlx::Error> {
    let select = "SELECT event_id, correlation_id, headers FROM triggers";
    let rows = weft_events::sql::fetch_in(db.pool(), select, "event_id", event_ids).await?;
    rows.iter()
        .map(|r| {
            let context = TriggerContext {
                correlation_id: r.try_get(1)?,
                headers: decode_headers(&r.try_get::<String, _>(2)?),
            };
            Ok((r.try_get(0)?, context))
        })
        .collect()
}

/// A trigger's stored headers: a JSON list of (name, base64 value).
fn decode_headers(json: &str) -> Vec<(String, Vec<u8>)> {
    let headers: Vec<(String, String)> = serde_json::from_str(json).unwrap_or_default();
    headers
        .into_iter()
        .map(|(k, v)| (k, STANDARD.decode(v).unwrap_or_default()))
        .collect()
}

/// One notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Its id.
    pub id: String,
    /// The recipient user.
    pub user_id: String,
    /// Email or SMS.
    pub channel: Channel,
    /// Template name.
    pub template: String,
    /// The event that caused it.
    pub trigger_event_id: String,
    /// Template values (JSON object).
    pub context: String,
    /// Address or number, once known.
    pub recipient: String,
    /// Subject, once rendered.
    pub subject: String,
    /// Delivery status.
    pub status: DeliveryStatus,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// Created, µs since the epoch.
    pub created_at: i64,
    /// Sent, µs since the epoch.
    pub sent_at: Option<i64>,
}

const COLUMNS: &str = "notification_id, user_id, channel, template, trigger_event_id, context, \
                       recipient, subject, status, attempts, last_error, created_at, sent_at";

fn from_row(r: &AnyRow) -> Result<NotificationRow, sqlx::Error> {
    let channel = i32::try_from(r.try_get::<i64, _>("channel")?).unwrap_or_default();
    let status = i32::try_from(r.try_get::<i64, _>("status")?).unwrap_or_default();
    Ok(NotificationRow {
        id: r.try_get("notification_id")?,
        user_id: r.try_get("user_id")?,
        channel: Channel::try_from(channel).unwrap_or(Channel::Unspecified),
        template: r.try_get("template")?,
        trigger_event_id: r.try_get("trigger_event_id")?,
        context: r.try_get("context")?,
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        status: DeliveryStatus::try_from(status).unwrap_or(DeliveryStatus::Unspecified),
        attempts: r.try_get("attempts")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

/// Plans `n`, unless its (trigger, template, channel) is planned already; whether it
/// was planned now.
pub async fn plan(conn: &mut AnyConnection, n: &NotificationRow) -> Result<bool, sqlx::Error> {
    Ok(!plan_all(conn, std::slice::from_ref(n)).await?.is_empty())
}

/// Plans `rows`, a statement for each run of a power of two of them, leaving out those
/// whose (trigger, template, channel) is planned already; the ids of those planned now.
pub async fn plan_all(
    conn: &mut AnyConnection,
    rows: &[NotificationRow],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut planned = HashSet::with_capacity(rows.len());
    for run in weft_events::sql::pow2_chunks(rows, 64) {
        let sql = format!(
            "INSERT INTO notifications (notification_id, user_id, channel, template, trigger_event_id, \
             context, recipient, subject, status, attempts, next_attempt_at, created_at) \
             VALUES {} ON CONFLICT (trigger_event_id, template, channel) DO NOTHING \
             RETURNING notification_id",
            weft_events::sql::values(conn, run.len(), 12)
        );
        let mut query = sqlx::query(&sql);
        for n in run {
            query = query
                .bind(n.id.clone())
                .bind(n.user_id.clone())
                .bind(n.channel as i64)
                .bind(n.template.clone())
                .bind(n.trigger_event_id.clone())
                .bind(n.context.clone())
                .bind(n.recipient.clone())
                .bind(String::new())
                .bind(DeliveryStatus::Pending as i64)
                .bind(0_i64)
                .bind(n.created_at)
                .bind(n.created_at);
        }
        for r in query.fetch_all(&mut *conn).await? {
            planned.insert(r.try_get(0)?);
        }
    }
    Ok(planned)
}

/// Claims up to `limit` pending notifications due at `now`, earliest first, for the
/// delivery pass `claim` until `until`: they are not due for anyone else before then.
/// Returns the rows this pass holds.
pub async fn claim_due(
    db: &Database,
    claim: &str,
    now: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    // Through a write transaction: it takes its turn with the service's other writers
    // instead of retrying on SQLite's busy handler. The rows it claims are its answer.
    let mut tx = db.begin().await?;
    let rows = sqlx::query(&format!(
        "UPDATE notifications SET claimed_by = $1, next_attempt_at = $2 \
         WHERE status = $3 AND next_attempt_at <= $4 AND notification_id IN ( \
           SELECT notification_id FROM notifications WHERE status = $3 AND next_attempt_at <= $4 \
           ORDER BY next_attempt_at, notification_id LIMIT $5) \
         RETURNING {COLUMNS}"
    ))
    .bind(claim.to_owned())
    .bind(until)
    .bind(DeliveryStatus::Pending as i64)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut rows = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(rows)
}

/// When the next pending notification is due, if any.
pub async fn next_due(db: &Database) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT MIN(next_attempt_at) FROM notifications WHERE status = $1")
        .bind(DeliveryStatus::Pending as i64)
        .fetch_one(db.pool())
        .await?;
    row.try_get::<Option<i64>, _>(0)
}

/// One delivery to record: the notification, who it went to and its subject.
pub struct Delivered<'a> {
    /// The notification's id.
    pub id: &'a str,
    /// Where it went.
    pub recipient: &'a str,
    /// Its subject (empty for a text message).
    pub subject: &'a str,
}

/// Records the deliveries made under `claim`, a statement for each run of a power of
/// two of them; the ids recorded. A row missing from the answer was no longer pending
/// or another pass has claimed it since (this one outlived its claim).
pub async fn mark_sent(
    conn: &mut AnyConnection,
    claim: &str,
    delivered: &[Delivered<'_>],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut recorded = HashSet::with_capacity(delivered.len());
    for run in weft_events::sql::pow2_chunks(delivered, 64) {
        // The values' columns are column1, column2, … on both SQLite and PostgreSQL.
        let sql = format!(
            "UPDATE notifications SET status = $1, recipient = v.column2, subject = v.column3, \
             sent_at = $2, attempts = attempts + 1, last_error = NULL \
             FROM (VALUES {}) AS v \
             WHERE notifications.notification_id = v.column1 AND status = $3 AND claimed_by = $4 \
             RETURNING notification_id",
            weft_events::sql::rows(run.len(), 3, 5)
        );
        let mut query = sqlx::query(&sql)
            .bind(DeliveryStatus::Sent as i64)
            .bind(now)
            .bind(DeliveryStatus::Pending as i64)
            .bind(claim.to_owned());
        for d in run {
            query = query
                .bind(d.id.to_owned())
                .bind(d.recipient.to_owned())
                .bind(d.subject.to_owned());
        }
        for r in query.fetch_all(&mut *conn).await? {
            recorded.insert(r.try_get(0)?);
        }
    }
    Ok(recorded)
}

/// Counts a failed attempt and sets when to try again.
pub async fn reschedule(
    db: &Database,
    id: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
         WHERE notification_id = $3 AND status = $4",
    )
    .bind(next_attempt_at)
    .bind(error.to_owned())
    .bind(id.to_owned())
    .bind(DeliveryStatus::Pending as i64)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Gives up on a notification.
pub async fn mark_failed(db: &Database, id: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE notifications SET status = $1, attempts = attempts + 1, last_error = $2 \
         WHERE notification_id = $3 AND status = $4",
    )
    .bind(DeliveryStatus::Failed as i64)
    .bind(error.to_owned())
    .bind(id.to_owned())
    .bind(DeliveryStatus::Pending as i64)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Marks pending notifications as not sent on purpose, each saying why (its id, why),
/// a statement for each run of a power of two of them.
pub async fn suppress(db: &Database, suppressed: &[(&str, &str)]) -> Result<(), sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    for run in weft_events::sql::pow2_chunks(suppressed, 64) {
        // The values' columns are column1, column2, … on both SQLite and PostgreSQL.
        let sql = format!(
            "UPDATE notifications SET status = $1, last_error = v.column2 \
             FROM (VALUES {}) AS v \
             WHERE notifications.notification_id = v.column1 AND status = $2",
            weft_events::sql::rows(run.len(), 2, 3)
        );
        let mut query = sqlx::query(&sql)
            .bind(DeliveryStatus::Suppressed as i64)
            .bind(DeliveryStatus::Pending as i64);
        for (id, why) in run {
            query = query.bind((*id).to_owned()).bind((*why).to_owned());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Drops a planned notification that turned out to have nobody to go to (a text
/// message for a user without a phone number).
pub async fn drop_unaddressable(db: &Database, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM notifications WHERE notification_id = $1 AND status = $2")
        .bind(id.to_owned())
        .bind(DeliveryStatus::Pending as i64)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// One notification.
pub async fn get(db: &Database, id: &str) -> Result<Option<NotificationRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE notification_id = $1"
    ))
    .bind(id.to_owned())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// A page of a user's notifications, newest first, after the cursor
/// `(created_at, notification_id)`.
pub async fn page(
    db: &Database,
    user_id: &str,
    after: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    let rows = match after {
        None => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 \
                 ORDER BY created_at DESC, notification_id DESC LIMIT $2"
            ))
            .bind(user_id.to_owned())
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
        Some((at, id)) => {
            sqlx::query(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE user_id = $1 \
                 AND (created_at < $2 OR (created_at = $2 AND notification_id < $3)) \
                 ORDER BY created_at DESC, notification_id DESC LIMIT $4"
            ))
            .bind(user_id.to_owned())
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(db.pool())
            .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// What the notification service prunes besides the inbox and the outbox: the
/// triggering records of notifications that are settled (sent, failed, suppressed —
/// none pending), once past the retention. The notifications themselves stay: they
/// are the users' history.
pub fn prune_rules() -> Vec<weft_events::retention::Rule> {
    vec![weft_events::retention::Rule {
        name: "notification triggers",
        delete: format!(
            "DELETE FROM triggers WHERE event_id IN \
             (SELECT t.event_id FROM triggers t WHERE t.created_at < $1 AND NOT EXISTS \
              (SELECT 1 FROM notifications n WHERE n.trigger_event_id = t.event_id AND n.status = {}) \
              LIMIT $2)",
            weft_proto::notification::DeliveryStatus::Pending as i32
        ),
        keep: None,
    }]
}
