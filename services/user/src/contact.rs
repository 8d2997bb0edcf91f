//! Verifying a user's email address and phone number.
//!
//! A verification is a secret sent to the address — a long random token by email (the
//! email's link carries it; proving you read the mail needs no login), a six-digit code
//! by text message (entered by the logged-in user, five tries per code) — of which only
//! a SHA-256 hash is stored, with an expiry. Asking for it again replaces the previous
//! one, at most once a minute. The secret reaches the notification service in a
//! `ContactVerificationRequested` event committed with the change that made it.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sqlx::{AnyConnection, Row as _};
use subtle::ConstantTimeEq as _;
use weft_events::{EventContext, Outbox};
use weft_proto::user::ContactKind;

use crate::domain::UserError;
use crate::events::{self, Contact};
use crate::store::UserRecord;

/// How long an email token works.
pub const EMAIL_TTL_MICROS: i64 = 24 * 3_600_000_000;
/// How long a phone code works.
pub const PHONE_TTL_MICROS: i64 = 10 * 60_000_000;
/// Tries of one phone code.
pub const PHONE_ATTEMPTS: i64 = 5;
/// Shortest time between two verification messages for one address.
pub const RESEND_AFTER_MICROS: i64 = 60_000_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored hash of an email token.
fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The stored hash of a phone code (salted with the user id: codes are short).
fn code_hash(user_id: &str, code: &str) -> String {
    hex(&Sha256::digest(format!("{user_id}:{code}").as_bytes()))
}

/// Starts a verification of `address` for `user_id` in the transaction `conn`
/// belongs to: stores the secret's hash (replacing any earlier one) and enqueues the
/// event that makes the notification service send it.
pub async fn request(
    conn: &mut AnyConnection,
    ctx: &EventContext,
    user_id: &str,
    kind: ContactKind,
    address: &str,
    now: i64,
) -> Result<(), UserError> {
    let (secret, hash, expires_at) = match kind {
        ContactKind::Email => {
            let mut raw = [0u8; 32];
            rand::fill(&mut raw);
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            let hash = token_hash(&token);
            (token, hash, now + EMAIL_TTL_MICROS)
        }
        ContactKind::Phone => {
            let code = format!("{:06}", rand::random_range(0..1_000_000u32));
            let hash = code_hash(user_id, &code);
            (code, hash, now + PHONE_TTL_MICROS)
        }
        ContactKind::Unspecified => {
            return Err(UserError::invalid("kind", "must be EMAIL or PHONE"));
        }
    };
    sqlx::query(
        "INSERT INTO contact_verifications (user_id, kind, address, secret_hash, expires_at, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (user_id, kind) DO UPDATE SET \
         address = excluded.address, secret_hash = excluded.secret_hash, expires_at = excluded.expires_at, \
         attempts = 0, created_at = excluded.created_at",
    )
    .bind(user_id.to_owned())
    .bind(kind as i32)
    .bind(address.to_owned())
    .bind(hash)
    .bind(expires_at)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let contact = Contact {
        user_id,
        kind,
        address,
    };
    let event = events::verification_requested(contact, secret, expires_at, ctx);
    Outbox::enqueue(conn, &event)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// Starts the verification of `user`'s email address when `email`, and of its phone
/// number when `phone` and it has one, in the transaction `conn` belongs to.
pub async fn request_unverified(
    conn: &mut AnyConnection,
    ctx: &EventContext,
    user: &UserRecord,
    email: bool,
    phone: bool,
) -> Result<(), UserError> {
    let id = &user.user_id;
    if email {
        request(
            conn,
            ctx,
            id,
            ContactKind::Email,
            &user.email,
            user.updated_at,
        )
        .await?;
    }
    if phone && !user.phone.is_empty() {
        request(
            conn,
            ctx,
            id,
            ContactKind::Phone,
            &user.phone,
            user.updated_at,
        )
        .await?;
    }
    Ok(())
}

/// When `user_id` may ask for another verification of `kind`: `Ok` now, else the
/// microseconds to wait.
pub async fn may_resend(
    conn: &mut AnyConnection,
    user_id: &str,
    kind: ContactKind,
    now: i64,
) -> Result<Result<(), i64>, UserError> {
    let row = sqlx::query(
        "SELECT created_at FROM contact_verifications WHERE user_id = $1 AND kind = $2",
    )
    .bind(user_id.to_owned())
    .bind(kind as i32)
    .fetch_optional(&mut *conn)
    .await?;
    let last: Option<i64> = row.map(|r| r.try_get(0)).transpose()?;
    Ok(match last {
        Some(t) if now - t < RESEND_AFTER_MICROS => Err(RESEND_AFTER_MICROS - (now - t)),
        _ => Ok(()),
    })
}

/// Consumes an email token: the user it verifies and the address, when it is valid
/// and not expired. The verification row is deleted either way once found expired.
pub async fn take_email_token(
    conn: &mut AnyConnection,
    token: &str,
    now: i64,
) -> Result<Option<(String, String)>, UserError> {
    let hash = token_hash(token);
    let row = sqlx::query(
        "SELECT user_id, address, expires_at FROM contact_verifications \
         WHERE secret_hash = $1 AND kind = $2",
    )
    .bind(hash.clone())
    .bind(ContactKind::Email as i32)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user_id: String = row.try_get(0)?;
    let address: String = row.try_get(1)?;
    let expires_at: i64 = row.try_get(2)?;
    sqlx::query("DELETE FROM contact_verifications WHERE user_id = $1 AND kind = $2")
        .bind(user_id.clone())
        .bind(ContactKind::Email as i32)
        .execute(&mut *conn)
        .await?;
    Ok((expires_at > now).then_some((user_id, address)))
}

/// What became of a phone code.
pub enum CodeCheck {
    /// Right: the verified number.
    Verified(String),
    /// Wrong, with the tries left.
    Wrong(i64),
    /// No code is pending, or it expired, or its tries are used up.
    Gone,
}

/// Checks a phone code of `user_id`, counting the try.
pub async fn check_phone_code(
    conn: &mut AnyConnection,
    user_id: &str,
    code: &str,
    now: i64,
) -> Result<CodeCheck, UserError> {
    let row = sqlx::query(
        "UPDATE contact_verifications SET attempts = attempts + 1 \
         WHERE user_id = $1 AND kind = $2 RETURNING address, secret_hash, expires_at, attempts",
    )
    .bind(user_id.to_owned())
    .bind(ContactKind::Phone as i32)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(CodeCheck::Gone);
    };
    let address: String = row.try_get(0)?;
    let stored: String = row.try_get(1)?;
    let expires_at: i64 = row.try_get(2)?;
    let attempts: i64 = row.try_get(3)?;
    if expires_at <= now || attempts > PHONE_ATTEMPTS {
        return Ok(CodeCheck::Gone);
    }
    let given = code_hash(user_id, code.trim());
    if bool::from(given.as_bytes().ct_eq(stored.as_bytes())) {
        sqlx::query("DELETE FROM contact_verifications WHERE user_id = $1 AND kind = $2")
            .bind(user_id.to_owned())
            .bind(ContactKind::Phone as i32)
            .execute(&mut *conn)
            .await?;
        return Ok(CodeCheck::Verified(address));
    }
    Ok(CodeCheck::Wrong(PHONE_ATTEMPTS - attempts))
}

/// Enqueues `ContactVerified` in the transaction `conn` belongs to.
pub async fn verified(
    conn: &mut AnyConnection,
    ctx: &EventContext,
    user_id: &str,
    kind: ContactKind,
    address: &str,
) -> Result<(), UserError> {
    let contact = Contact {
        user_id,
        kind,
        address,
    };
    let event = events::verified(contact, ctx);
    Outbox::enqueue(conn, &event)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}
