//! The boundary where errors become `tonic::Status`: validation failures carry
//! `google.rpc.BadRequest` field violations; internal failures get a generic message
//! and a request id, and their cause is logged, never sent.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `items[2].quantity`.
    pub field: String,
    /// What is wrong with it, for a person.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Collects field violations while parsing a request, for a service whose error `E`
/// has a variant for them (`From<Vec<FieldViolation>>`).
#[derive(Debug)]
pub struct Violations<E>(Vec<FieldViolation>, std::marker::PhantomData<fn() -> E>);

impl<E> Default for Violations<E> {
    fn default() -> Self {
        Self(Vec::new(), std::marker::PhantomData)
    }
}

impl<E: From<Vec<FieldViolation>>> Violations<E> {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// What was recorded so far.
    pub fn list(&self) -> &[FieldViolation] {
        &self.0
    }

    /// `Ok(value)` when nothing was recorded, else the service's error for them.
    pub fn finish<T>(self, value: T) -> Result<T, E> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(E::from(self.0))
        }
    }
}

/// `INVALID_ARGUMENT` with a `google.rpc.BadRequest` naming each offending field.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let message = match violations {
        [] => "invalid request".to_owned(),
        [one] => format!("invalid {}: {}", one.field, one.description),
        [first, rest @ ..] => format!(
            "invalid {}: {} (and {} more)",
            first.field,
            first.description,
            rest.len()
        ),
    };
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `INTERNAL` with a generic message and a fresh request id; the cause is logged with
/// the same id so an operator can find it, and never reaches the caller.
pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Status {
    let request_id = uuid::Uuid::now_v7().to_string();
    tracing::error!(%request_id, error = %ErrorChain(cause), "internal error");
    let mut details = ErrorDetails::new();
    details.set_request_info(request_id.clone(), "");
    Status::with_error_details(
        Code::Internal,
        format!("internal error (request id {request_id})"),
        details,
    )
}

/// `UNAVAILABLE` for a dependency (database, broker) that is down; retryable.
pub fn unavailable(what: &str) -> Status {
    Status::unavailable(format!("{what} is unavailable; retry with backoff"))
}

/// Displays an error with its whole source chain: `a: b: c`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field() {
        let status = invalid_argument(&[
            FieldViolation::new("email", "is not an email address"),
            FieldViolation::new("items", "must not be empty"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid email: is not an email address (and 1 more)"
        );
        let details = status.get_error_details();
        let fields: Vec<String> = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(fields, ["email", "items"]);
    }

    #[test]
    fn internal_hides_the_cause() {
        let cause = std::io::Error::other("disk /var/lib/weft/user.db is full");
        let status = internal(&cause);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("disk"), "{}", status.message());
        assert!(status.message().contains("request id"));
        let details = status.get_error_details();
        assert!(details.request_info().is_some());
    }
}
