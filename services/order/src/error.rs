//! The errors the order service answers with, and the collector of a request's
//! invalid fields.

use weft_kit::status::FieldViolation;

/// What can go wrong in the order service; mapped to a gRPC status once, in
/// [`crate::service::status`].
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
