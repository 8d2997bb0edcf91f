//! The errors the user service answers with, and their one mapping to gRPC statuses.

use tonic::Status;
use weft_kit::status::FieldViolation;

use crate::password::HashError;

/// What can go wrong in the user service; mapped to a gRPC status once, by its
/// `From` impl below.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The request is invalid; every offending field is named.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Another user has this email address.
    #[error("email already registered")]
    EmailTaken,
    /// No such user (or not visible to the caller).
    #[error("user not found")]
    NotFound,
    /// Email or password is wrong.
    #[error("email or password is wrong")]
    BadCredentials,
    /// Too many failed logins for this account.
    #[error("too many failed logins")]
    Locked {
        /// When trying again may succeed.
        retry_after: std::time::Duration,
    },
    /// Every password hashing worker is busy and its queue is full.
    #[error("too many password checks at once")]
    Busy,
    /// The caller may see the user but not do this.
    #[error("not allowed")]
    Denied,
    /// The user's state does not allow it (e.g. verifying what is verified).
    #[error("{0}")]
    Precondition(&'static str),
    /// Asked again too soon.
    #[error("{what}")]
    TooSoon {
        /// What was asked.
        what: &'static str,
        /// When asking again may succeed.
        retry_after: std::time::Duration,
    },
    /// A dependency failed; the cause is logged, not sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl UserError {
    /// One invalid field.
    pub fn invalid(field: &str, description: &str) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<sqlx::Error> for UserError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<Vec<FieldViolation>> for UserError {
    fn from(list: Vec<FieldViolation>) -> Self {
        Self::Invalid(list)
    }
}

impl From<HashError> for UserError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            HashError::Failed(e) => Self::Internal(anyhow::anyhow!(e)),
        }
    }
}

/// The single mapping of [`UserError`] to a gRPC status.
impl From<UserError> for Status {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid(v) => weft_kit::status::invalid_argument(&v),
            UserError::EmailTaken => {
                Status::already_exists("a user with this email address already exists")
            }
            UserError::NotFound => Status::not_found("user not found"),
            UserError::BadCredentials => Status::unauthenticated("email or password is wrong"),
            UserError::Locked { retry_after } => retry_later(
                tonic::Code::ResourceExhausted,
                format!(
                    "too many failed logins for this account; try again in {} s",
                    retry_after.as_secs().max(1)
                ),
                retry_after,
            ),
            UserError::Busy => retry_later(
                tonic::Code::ResourceExhausted,
                "too many password checks at once; try again in a moment".into(),
                std::time::Duration::from_secs(1),
            ),
            UserError::Denied => Status::permission_denied("you may not change this user"),
            UserError::Precondition(why) => Status::failed_precondition(why),
            UserError::TooSoon { what, retry_after } => retry_later(
                tonic::Code::ResourceExhausted,
                format!("{what}; try again in {} s", retry_after.as_secs().max(1)),
                retry_after,
            ),
            UserError::Internal(err) => weft_kit::status::internal(err.as_ref()),
        }
    }
}

fn retry_later(code: tonic::Code, message: String, after: std::time::Duration) -> Status {
    use tonic_types::StatusExt as _;
    let mut details = tonic_types::ErrorDetails::new();
    details.set_retry_info(Some(after));
    Status::with_error_details(code, message, details)
}
