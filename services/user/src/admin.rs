//! The operator's path to roles: granting and revoking them through the user
//! service's database, which only someone on the machine that holds it (or with its
//! PostgreSQL credentials) can reach — `weft admin grant|revoke|roles|audit`.
//!
//! Each change is one transaction: the user's roles, an audit row (who, what, when)
//! and a `UserRolesChanged` event in the outbox, which the running service's relay
//! publishes. Roles belong to the user id, not the address: a user who changes their
//! email keeps them, and the old address carries nothing. A change takes effect at the
//! user's next access token (tokens live `--token-ttl`, 15 minutes by default).

use sqlx::Row as _;
use weft_auth::Role;
use weft_events::{Database, Outbox};

use crate::domain::UserError;
use crate::events;
use crate::store;

/// A grant or a revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the role.
    Grant,
    /// Remove the role.
    Revoke,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        }
    }
}

/// One row of the audit list.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Order of the change.
    pub seq: i64,
    /// The user.
    pub user_id: String,
    /// The user's email at the time.
    pub email: String,
    /// The role.
    pub role: String,
    /// `grant` or `revoke`.
    pub action: String,
    /// Who did it.
    pub actor: String,
    /// When (µs since the epoch).
    pub changed_at: i64,
}

/// Who runs this: the operator account and host, for the audit row.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Grants or revokes `role` of the user with `email`; the user's roles afterwards.
/// Granting a held role or revoking a missing one changes nothing and writes nothing.
/// `customer` is every user's and cannot be revoked.
pub async fn change(
    db: &Database,
    email: &str,
    role: Role,
    change: Change,
    actor: &str,
) -> Result<Vec<String>, UserError> {
    if role == Role::Customer && change == Change::Revoke {
        return Err(UserError::invalid(
            "role",
            "every user keeps the customer role",
        ));
    }
    let email = email.trim().to_lowercase();
    let mut tx = db.begin().await?;
    let Some(user) = store::by_email_in(&mut tx, &email).await? else {
        return Err(UserError::NotFound);
    };
    let mut roles = user.roles.clone();
    if !roles.iter().any(|r| r == Role::Customer.as_str()) {
        roles.insert(0, Role::Customer.as_str().to_owned());
    }
    let held = roles.iter().any(|r| r == role.as_str());
    match change {
        Change::Grant if !held => roles.push(role.as_str().to_owned()),
        Change::Revoke if held => roles.retain(|r| r != role.as_str()),
        _ => return Ok(roles),
    }
    let now = weft_events::db::now_micros();
    store::set_roles(&mut tx, &user.user_id, &roles, now).await?;
    sqlx::query(
        "INSERT INTO role_changes (user_id, email, role, action, actor, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user.user_id.clone())
    .bind(user.email.clone())
    .bind(role.as_str())
    .bind(change.as_str())
    .bind(actor.to_owned())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let granted_revoked = match change {
        Change::Grant => (vec![role.as_str().to_owned()], Vec::new()),
        Change::Revoke => (Vec::new(), vec![role.as_str().to_owned()]),
    };
    let event = events::roles_changed(&user.user_id, &roles, granted_revoked, actor);
    Outbox::enqueue(&mut tx, &event)
        .await
        .map_err(anyhow::Error::from)?;
    tx.commit().await?;
    tracing::info!(user_id = %user.user_id, role = %role, action = change.as_str(), actor, "role changed");
    Ok(roles)
}

/// The roles of the user with `email`.
pub async fn roles(db: &Database, email: &str) -> Result<Vec<String>, UserError> {
    let user = store::by_email(db, &email.trim().to_lowercase())
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(user.roles)
}

/// The newest `limit` role changes, newest first.
pub async fn audit(db: &Database, limit: i64) -> Result<Vec<AuditRow>, UserError> {
    let rows = sqlx::query(
        "SELECT seq, user_id, email, role, action, actor, changed_at FROM role_changes \
         ORDER BY seq DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                seq: r.try_get(0)?,
                user_id: r.try_get(1)?,
                email: r.try_get(2)?,
                role: r.try_get(3)?,
                action: r.try_get(4)?,
                actor: r.try_get(5)?,
                changed_at: r.try_get(6)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(UserError::from)
}
