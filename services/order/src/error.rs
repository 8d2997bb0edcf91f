//! The errors the order service answers with, and the collector of a request's
//! invalid fields.

use tonic::Status;
use tonic_types::StatusExt as _;
use weft_kit::status::FieldViolation;

/// What can go wrong in the order service; mapped to a gRPC status once, by its
/// `From` impl below.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The request is invalid; every offending field is named.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// No such order (or not the caller's).
    #[error("order not found")]
    NotFound,
    /// No such product.
    #[error("product not found")]
    ProductNotFound,
    /// A product with that id exists.
    #[error("a product with this id exists")]
    ProductExists,
    /// The caller may see it but not do this.
    #[error("{0}")]
    Denied(&'static str),
    /// The order's status does not allow the action.
    #[error("cannot {action} an order that is {from}")]
    IllegalTransition {
        /// What was asked.
        action: &'static str,
        /// The current status name.
        from: &'static str,
    },
    /// The card was declined; the order stays pending.
    #[error("payment declined: {0}")]
    Declined(String),
    /// The payment provider failed for now.
    #[error("payment provider unavailable")]
    PaymentUnavailable,
    /// An idempotency key the caller already used for an order of other items.
    #[error(
        "idempotency_key {key:?} was already used for order {order_id}, which has other items; a retry must send the same items, and a new order needs a new key"
    )]
    KeyReused {
        /// The key.
        key: String,
        /// The order created with it.
        order_id: String,
    },
    /// A dependency failed; the cause is logged, not sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OrderError {
    /// One invalid field.
    pub fn invalid(field: &str, description: &str) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<weft_events::EventsError> for OrderError {
    fn from(e: weft_events::EventsError) -> Self {
        Self::Internal(e.into())
    }
}

/// Collects field violations while parsing a request.
pub type Violations = weft_kit::status::Violations<OrderError>;

impl From<Vec<FieldViolation>> for OrderError {
    fn from(list: Vec<FieldViolation>) -> Self {
        Self::Invalid(list)
    }
}

/// The single mapping of [`OrderError`] to a gRPC status.
impl From<OrderError> for Status {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(v) => weft_kit::status::invalid_argument(&v),
            OrderError::NotFound => Status::not_found("order not found"),
            OrderError::ProductNotFound => Status::not_found("product not found"),
            OrderError::ProductExists => Status::already_exists("a product with this id exists"),
            e @ OrderError::KeyReused { .. } => Status::already_exists(e.to_string()),
            OrderError::Denied(why) => Status::permission_denied(why),
            e @ OrderError::IllegalTransition { .. } => {
                let mut d = tonic_types::ErrorDetails::new();
                d.add_precondition_failure_violation("STATUS", "order", e.to_string());
                Status::with_error_details(tonic::Code::FailedPrecondition, e.to_string(), d)
            }
            OrderError::Declined(reason) => {
                let mut d = tonic_types::ErrorDetails::new();
                d.set_error_info(
                    "PAYMENT_DECLINED",
                    "weft.order",
                    [("reason".to_owned(), reason.clone())],
                );
                Status::with_error_details(
                    tonic::Code::FailedPrecondition,
                    format!("payment declined: {reason}"),
                    d,
                )
            }
            OrderError::PaymentUnavailable => {
                Status::unavailable("the payment provider is unavailable; retry later")
            }
            OrderError::Internal(err) => weft_kit::status::internal(err.as_ref()),
        }
    }
}
