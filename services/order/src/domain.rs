//! The order domain: the order and its validated lines, exact totals, and the status
//! machine every change of status goes through (the welcome order's too).

use weft_proto::order::{OrderKind, OrderStatus};

pub use crate::error::{OrderError, Violations};
use crate::money::{self, Currency};

/// Most lines an order may have.
pub const MAX_ITEMS: usize = 100;
/// Most units of one line.
pub const MAX_QUANTITY: i32 = 10_000;

/// A validated order line, priced from the catalogue.
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

/// An order with its lines, as stored.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    /// Id (UUID v7).
    pub order_id: String,
    /// Customer.
    pub user_id: String,
    /// Status.
    pub status: OrderStatus,
    /// Kind.
    pub kind: OrderKind,
    /// Currency.
    pub currency: Currency,
    /// Exact total in minor units.
    pub total_minor: i64,
    /// Carrier once shipped.
    pub carrier: String,
    /// Tracking number once shipped.
    pub tracking_number: String,
    /// Provider payment id once paid.
    pub payment_id: String,
    /// Last four card digits once paid.
    pub card_last4: String,
    /// Client idempotency key.
    pub idempotency_key: Option<String>,
    /// Created, µs.
    pub created_at: i64,
    /// Updated, µs.
    pub updated_at: i64,
    /// The lines.
    pub lines: Vec<Line>,
}

/// Product id of the welcome package.
pub const WELCOME_PRODUCT: &str = "welcome-package";

impl OrderRecord {
    /// A new pending order of `user_id` for the priced `lines` (their `currency` and
    /// exact `total_minor`), made now.
    pub fn pending(
        user_id: String,
        idempotency_key: Option<String>,
        (lines, currency, total_minor): (Vec<Line>, Currency, i64),
    ) -> Self {
        let now = weft_events::db::now_micros();
        Self {
            order_id: uuid::Uuid::now_v7().to_string(),
            user_id,
            status: OrderStatus::Pending,
            kind: OrderKind::Regular,
            currency,
            total_minor,
            carrier: String::new(),
            tracking_number: String::new(),
            payment_id: String::new(),
            card_last4: String::new(),
            idempotency_key,
            created_at: now,
            updated_at: now,
            lines,
        }
    }

    /// The free welcome order of a new user: one "Welcome Package" in USD, confirmed
    /// by the state machine's pay step with no charge (the house pays).
    pub fn welcome(user_id: &str) -> Result<Self, OrderError> {
        let usd = Currency::from_code("USD")
            .ok_or_else(|| OrderError::Internal(anyhow::anyhow!("USD is not a known currency")))?;
        let line = Line {
            product_id: WELCOME_PRODUCT.into(),
            name: "Welcome Package".into(),
            quantity: 1,
            unit_minor: 0,
        };
        let mut order = Self::pending(user_id.to_owned(), None, (vec![line], usd, 0));
        order.kind = OrderKind::Welcome;
        order.status = transition(order.status, Action::Pay)?;
        Ok(order)
    }
}

/// Whether an existing order's lines are what `wanted` asks for: the same products
/// in the same quantities, in any order (prices are the catalogue's, which may have
/// moved since).
pub fn same_items(lines: &[Line], wanted: &[Wanted]) -> bool {
    let mut have: Vec<(&str, i32)> = lines
        .iter()
        .map(|l| (l.product_id.as_str(), l.quantity))
        .collect();
    let mut want: Vec<(&str, i32)> = wanted
        .iter()
        .map(|w| (w.product_id.as_str(), w.quantity))
        .collect();
    have.sort_unstable();
    want.sort_unstable();
    have == want
}

/// What a line asks for, before the catalogue prices it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Catalogue id.
    pub product_id: String,
    /// Units.
    pub quantity: i32,
    /// The price the client expects, when it sent one.
    pub expected: Option<(Currency, i64)>,
}

/// Prices `wanted` from `catalogue`: each product must exist and be active, all in
/// one currency, and a price the client sent must be the catalogue's. Returns the
/// lines, their currency and the exact total.
pub fn price_lines(
    wanted: &[Wanted],
    catalogue: &std::collections::HashMap<String, crate::catalog::Product>,
    v: &mut Violations,
) -> Option<(Vec<Line>, Currency, i64)> {
    let mut lines = Vec::with_capacity(wanted.len());
    let mut currency: Option<Currency> = None;
    let mut total: i64 = 0;
    for (i, w) in wanted.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        let Some(p) = orderable(w, catalogue, &f("product_id"), v) else {
            continue;
        };
        if let Some((c, minor)) = w.expected
            && (c != p.currency || minor != p.unit_minor)
        {
            v.add(
                f("unit_price"),
                format!(
                    "is {} in the catalogue, not {}",
                    money::display(p.currency, p.unit_minor),
                    money::display(c, minor)
                ),
            );
        }
        match currency {
            None => currency = Some(p.currency),
            Some(first) if first != p.currency => v.add(
                f("product_id"),
                format!(
                    "is priced in {}; the order is in {}",
                    p.currency.code, first.code
                ),
            ),
            Some(_) => {}
        }
        match i64::from(w.quantity.max(0))
            .checked_mul(p.unit_minor)
            .and_then(|line| total.checked_add(line))
        {
            Some(t) => total = t,
            None => v.add(f("quantity"), "makes the total too large"),
        }
        lines.push(Line {
            product_id: p.product_id.clone(),
            name: p.name.clone(),
            quantity: w.quantity,
            unit_minor: p.unit_minor,
        });
    }
    Some((lines, currency?, total))
}

/// The product `w` asks for, when the catalogue has it and it is available; else
/// why not, against `field`.
fn orderable<'c>(
    w: &Wanted,
    catalogue: &'c std::collections::HashMap<String, crate::catalog::Product>,
    field: &str,
    v: &mut Violations,
) -> Option<&'c crate::catalog::Product> {
    let Some(p) = catalogue.get(&w.product_id) else {
        v.add(field, format!("{:?} is not in the catalogue", w.product_id));
        return None;
    };
    if !p.active {
        v.add(field, format!("{:?} is not available", w.product_id));
        return None;
    }
    Some(p)
}

/// What a caller wants to do with an order of `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GetOrder, ListOrders.
    Read,
    /// PayOrder.
    Pay,
    /// CancelOrder.
    Cancel,
    /// ShipOrder.
    Ship,
    /// DeliverOrder.
    Deliver,
}

impl Action {
    /// The action's word in errors: `pay`, `ship`, ….
    pub fn verb(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Pay => "pay",
            Self::Cancel => "cancel",
            Self::Ship => "ship",
            Self::Deliver => "deliver",
        }
    }
}

/// The status an action leads to, or why it may not happen.
pub fn transition(from: OrderStatus, action: Action) -> Result<OrderStatus, OrderError> {
    use OrderStatus::*;
    let to = match (action, from) {
        (Action::Pay, Pending) => Confirmed,
        (Action::Ship, Confirmed | Processing) => Shipped,
        (Action::Deliver, Shipped) => Delivered,
        (Action::Cancel, Pending | Confirmed | Processing) => Cancelled,
        _ => {
            return Err(OrderError::IllegalTransition {
                action: action.verb(),
                from: from.as_str_name(),
            });
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_order_is_free_and_confirmed_through_the_state_machine() {
        let order = OrderRecord::welcome("u-1").unwrap();
        assert_eq!(order.status, OrderStatus::Confirmed);
        assert_eq!(order.kind, OrderKind::Welcome);
        assert_eq!((order.currency.code, order.total_minor), ("USD", 0));
        assert_eq!(order.lines.len(), 1);
        assert_eq!(order.lines[0].product_id, WELCOME_PRODUCT);
        assert_eq!(order.created_at, order.updated_at);
    }

    #[test]
    fn the_state_machine() {
        use OrderStatus::*;
        assert_eq!(transition(Pending, Action::Pay).unwrap(), Confirmed);
        assert_eq!(transition(Confirmed, Action::Ship).unwrap(), Shipped);
        assert_eq!(transition(Shipped, Action::Deliver).unwrap(), Delivered);
        assert_eq!(transition(Pending, Action::Cancel).unwrap(), Cancelled);
        for (from, action) in [
            (Pending, Action::Ship),
            (Shipped, Action::Cancel),
            (Cancelled, Action::Pay),
            (Delivered, Action::Ship),
            (Confirmed, Action::Pay),
            (Pending, Action::Read),
        ] {
            assert!(transition(from, action).is_err(), "{from:?} {action:?}");
        }
    }
}
