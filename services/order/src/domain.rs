//! The order domain: validated lines, exact totals, the status machine, and the errors
//! the service answers with.

use weft_kit::status::FieldViolation;
use weft_proto::order::{OrderItem, OrderStatus};

use crate::money::{self, Currency};

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
#[derive(Debug, Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, OrderError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(OrderError::Invalid(self.0))
        }
    }
}

/// Most lines an order may have.
pub const MAX_ITEMS: usize = 100;
/// Most units of one line.
pub const MAX_QUANTITY: i32 = 10_000;

/// A validated order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Catalogue id.
    pub product_id: String,
    /// Name at ordering time.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// Unit price in minor units.
    pub unit_minor: i64,
}

/// Validates the lines of an order: at least one and at most [`MAX_ITEMS`], each with
/// a product id, a name, a quantity in 1..=[`MAX_QUANTITY`] and a price ≥ 0 in one
/// known currency. Returns the lines, their currency and the exact total.
pub fn parse_lines(items: &[OrderItem], v: &mut Violations) -> Option<(Vec<Line>, Currency, i64)> {
    if items.is_empty() {
        v.add("items", "must not be empty");
        return None;
    }
    if items.len() > MAX_ITEMS {
        v.add(
            "items",
            format!("has {} lines; at most {MAX_ITEMS}", items.len()),
        );
        return None;
    }
    let mut lines = Vec::with_capacity(items.len());
    let mut currency: Option<Currency> = None;
    let mut total: i64 = 0;
    for (i, item) in items.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        let product_id = item.product_id.trim();
        if product_id.is_empty() || product_id.len() > 64 {
            v.add(f("product_id"), "must be 1–64 characters");
        }
        let name = item.name.trim();
        let name_len = name.chars().count();
        if name_len == 0 || name_len > 200 || name.chars().any(char::is_control) {
            v.add(
                f("name"),
                "must be 1–200 characters without control characters",
            );
        }
        if item.quantity <= 0 || item.quantity > MAX_QUANTITY {
            v.add(
                f("quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            );
        }
        let price = match &item.unit_price {
            None => {
                v.add(f("unit_price"), "is required");
                continue;
            }
            Some(p) => p,
        };
        match money::to_minor(price) {
            Err(e) => v.add(f("unit_price"), e.to_string()),
            Ok((c, minor)) => {
                match currency {
                    None => currency = Some(c),
                    Some(first) if first != c => {
                        v.add(
                            f("unit_price.currency_code"),
                            format!("must match the order's currency {}", first.code),
                        );
                    }
                    Some(_) => {}
                }
                match i64::from(item.quantity.max(0))
                    .checked_mul(minor)
                    .and_then(|line| total.checked_add(line))
                {
                    Some(t) => total = t,
                    None => v.add(f("quantity"), "makes the total too large"),
                }
                lines.push(Line {
                    product_id: product_id.to_owned(),
                    name: name.to_owned(),
                    quantity: item.quantity,
                    unit_minor: minor,
                });
            }
        }
    }
    Some((lines, currency?, total))
}

/// The status an action leads to, or why it may not happen.
pub fn transition(from: OrderStatus, action: &'static str) -> Result<OrderStatus, OrderError> {
    use OrderStatus::*;
    let to = match (action, from) {
        ("pay", Pending) => Confirmed,
        ("ship", Confirmed | Processing) => Shipped,
        ("deliver", Shipped) => Delivered,
        ("cancel", Pending | Confirmed | Processing) => Cancelled,
        _ => {
            return Err(OrderError::IllegalTransition {
                action,
                from: from.as_str_name(),
            });
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::common::Money;

    fn item(qty: i32, units: i64, nanos: i32, cur: &str) -> OrderItem {
        OrderItem {
            product_id: "p".into(),
            name: "Thing".into(),
            quantity: qty,
            unit_price: Some(Money {
                currency_code: cur.into(),
                units,
                nanos,
            }),
        }
    }

    #[test]
    fn totals_are_exact() {
        let mut v = Violations::default();
        let (lines, c, total) = parse_lines(
            &[
                item(2, 29, 990_000_000, "USD"),
                item(1, 49, 990_000_000, "USD"),
            ],
            &mut v,
        )
        .unwrap();
        assert!(v.0.is_empty());
        assert_eq!((c.code, total), ("USD", 10_997));
        assert_eq!(lines[0].unit_minor, 2999);
    }

    #[test]
    fn every_bad_line_is_named() {
        let mut v = Violations::default();
        let bad = [
            item(0, 1, 0, "USD"),
            item(-3, 1, 0, "USD"),
            item(1, -1, 0, "USD"),
            item(1, 1, 0, "EUR"),
            item(1, 1, 0, "XXX"),
        ];
        parse_lines(&bad, &mut v);
        let fields: Vec<_> = v.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].quantity",
                "items[1].quantity",
                "items[2].unit_price",
                "items[3].unit_price.currency_code",
                "items[4].unit_price"
            ]
        );
        let mut v = Violations::default();
        assert!(parse_lines(&[], &mut v).is_none());
        let many: Vec<_> = (0..10_000).map(|_| item(1, 1, 0, "USD")).collect();
        let mut v = Violations::default();
        assert!(parse_lines(&many, &mut v).is_none());
        assert_eq!(v.0[0].field, "items");
    }

    #[test]
    fn the_state_machine() {
        use OrderStatus::*;
        assert_eq!(transition(Pending, "pay").unwrap(), Confirmed);
        assert_eq!(transition(Confirmed, "ship").unwrap(), Shipped);
        assert_eq!(transition(Shipped, "deliver").unwrap(), Delivered);
        assert_eq!(transition(Pending, "cancel").unwrap(), Cancelled);
        for (from, action) in [
            (Pending, "ship"),
            (Shipped, "cancel"),
            (Cancelled, "pay"),
            (Delivered, "ship"),
            (Confirmed, "pay"),
        ] {
            assert!(transition(from, action).is_err(), "{from:?} {action}");
        }
    }
}
