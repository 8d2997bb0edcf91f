//! The users table.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use weft_events::Database;

use crate::domain::UserError;

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Id (UUID v7).
    pub user_id: String,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// E.164 phone or empty.
    pub phone: String,
    /// `SignupSource` number.
    pub source: i32,
    /// Roles.
    pub roles: Vec<String>,
    /// Attributes.
    pub metadata: BTreeMap<String, String>,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether the email address is verified.
    pub email_verified: bool,
    /// Whether the phone number is verified.
    pub phone_verified: bool,
    /// Created, µs since the epoch.
    pub created_at: i64,
    /// Updated, µs since the epoch.
    pub updated_at: i64,
}

const COLUMNS: &str = "user_id, email, name, phone, source, roles, metadata, password_hash, \
                       email_verified, phone_verified, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<UserRecord, sqlx::Error> {
    let roles: String = row.try_get("roles")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(UserRecord {
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        phone: row.try_get("phone")?,
        source: i32::try_from(row.try_get::<i64, _>("source")?).unwrap_or_default(),
        roles: roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        password_hash: row.try_get("password_hash")?,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        phone_verified: row.try_get::<i64, _>("phone_verified")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Inserts `user`; a taken email is [`UserError::EmailTaken`].
pub async fn insert(conn: &mut AnyConnection, user: &UserRecord) -> Result<(), UserError> {
    let result = sqlx::query(
        "INSERT INTO users (user_id, email, name, phone, source, roles, metadata, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(user.user_id.clone())
    .bind(user.email.clone())
    .bind(user.name.clone())
    .bind(user.phone.clone())
    .bind(i64::from(user.source))
    .bind(user.roles.join(","))
    .bind(serde_json::to_string(&user.metadata).map_err(anyhow::Error::from)?)
    .bind(user.password_hash.clone())
    .bind(user.created_at)
    .bind(user.updated_at)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if weft_events::db::is_unique_violation(&e) => Err(UserError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Writes the mutable fields of `user`.
pub async fn update(conn: &mut AnyConnection, user: &UserRecord) -> Result<(), UserError> {
    let result = sqlx::query(
        "UPDATE users SET email = $1, name = $2, phone = $3, metadata = $4, updated_at = $5, \
         email_verified = $6, phone_verified = $7 WHERE user_id = $8",
    )
    .bind(user.email.clone())
    .bind(user.name.clone())
    .bind(user.phone.clone())
    .bind(serde_json::to_string(&user.metadata).map_err(anyhow::Error::from)?)
    .bind(user.updated_at)
    .bind(i64::from(user.email_verified))
    .bind(i64::from(user.phone_verified))
    .bind(user.user_id.clone())
    .execute(conn)
    .await;
    match result {
        Ok(r) if r.rows_affected() == 1 => Ok(()),
        Ok(_) => Err(UserError::NotFound),
        Err(e) if weft_events::db::is_unique_violation(&e) => Err(UserError::EmailTaken),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the roles of `user_id`.
pub async fn set_roles(
    conn: &mut AnyConnection,
    user_id: &str,
    roles: &[String],
    now: i64,
) -> Result<(), UserError> {
    sqlx::query("UPDATE users SET roles = $1, updated_at = $2 WHERE user_id = $3")
        .bind(roles.join(","))
        .bind(now)
        .bind(user_id.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// The user with `email`, read inside a transaction.
pub async fn by_email_in(
    conn: &mut AnyConnection,
    email: &str,
) -> Result<Option<UserRecord>, UserError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The user with `user_id`.
pub async fn by_id(db: &Database, user_id: &str) -> Result<Option<UserRecord>, UserError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE user_id = $1"))
        .bind(user_id.to_owned())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The user with `user_id`, read inside a transaction.
pub async fn by_id_in(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<UserRecord>, UserError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE user_id = $1"))
        .bind(user_id.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The user with `email` (already lower-cased).
pub async fn by_email(db: &Database, email: &str) -> Result<Option<UserRecord>, UserError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email.to_owned())
        .fetch_optional(db.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}
