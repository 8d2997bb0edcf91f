//! The order domain: validated lines, exact totals and the status machine.

use weft_proto::order::{OrderItem, OrderStatus};

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

/// Checks the lines of an order before pricing: at least one and at most
/// [`MAX_ITEMS`], each with a product id, a quantity in 1..=[`MAX_QUANTITY`] and, when
/// sent, a well-formed price.
pub fn parse_items(items: &[OrderItem], v: &mut Violations) -> Vec<Wanted> {
    if items.is_empty() {
        v.add("items", "must not be empty");
        return Vec::new();
    }
    if items.len() > MAX_ITEMS {
        v.add(
            "items",
            format!("has {} lines; at most {MAX_ITEMS}", items.len()),
        );
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let f = |name: &str| format!("items[{i}].{name}");
            let product_id =
                crate::catalog::parse_product_id(&item.product_id, &f("product_id"), v);
            // The line's name is the catalogue's; one the client sends must still be text.
            if !item.name.trim().is_empty() {
                crate::catalog::parse_name(&item.name, &f("name"), v);
            }
            if item.quantity <= 0 || item.quantity > MAX_QUANTITY {
                v.add(
                    f("quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                );
            }
            let expected = item
                .unit_price
                .as_ref()
                .and_then(|p| match money::to_minor(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        v.add(f("unit_price"), e.to_string());
                        None
                    }
                });
            Wanted {
                product_id,
                quantity: item.quantity,
                expected,
            }
        })
        .collect()
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
        let Some(p) = catalogue.get(&w.product_id) else {
            v.add(
                f("product_id"),
                format!("{:?} is not in the catalogue", w.product_id),
            );
            continue;
        };
        if !p.active {
            v.add(
                f("product_id"),
                format!("{:?} is not available", w.product_id),
            );
            continue;
        }
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
    use weft_proto::common::Money;

    fn item(id: &str, qty: i32, price: Option<(i64, i32, &str)>) -> OrderItem {
        OrderItem {
            product_id: id.into(),
            name: String::new(),
            quantity: qty,
            unit_price: price.map(|(units, nanos, cur)| Money {
                currency_code: cur.into(),
                units,
                nanos,
            }),
        }
    }

    fn catalogue() -> std::collections::HashMap<String, crate::catalog::Product> {
        let usd = Currency::from_code("USD").unwrap();
        let eur = Currency::from_code("EUR").unwrap();
        [
            ("mug", usd, 2999, true),
            ("lamp", usd, 4999, true),
            ("old", usd, 100, false),
            ("tea", eur, 500, true),
        ]
        .into_iter()
        .map(|(id, c, minor, active)| {
            (
                id.to_owned(),
                crate::catalog::Product {
                    product_id: id.into(),
                    name: id.to_uppercase(),
                    currency: c,
                    unit_minor: minor,
                    active,
                    created_at: 0,
                    updated_at: 0,
                },
            )
        })
        .collect()
    }

    #[test]
    fn totals_are_exact_and_come_from_the_catalogue() {
        let mut v = Violations::default();
        let wanted = parse_items(
            &[
                item("mug", 2, Some((29, 990_000_000, "USD"))),
                item("lamp", 1, None),
            ],
            &mut v,
        );
        let (lines, c, total) = price_lines(&wanted, &catalogue(), &mut v).unwrap();
        assert!(v.list().is_empty(), "{:?}", v.list());
        assert_eq!((c.code, total), ("USD", 10_997));
        assert_eq!((lines[0].unit_minor, lines[0].name.as_str()), (2999, "MUG"));
    }

    #[test]
    fn every_bad_line_is_named() {
        let mut v = Violations::default();
        let bad = [
            item("mug", 0, None),
            item("mug", -3, None),
            item("mug", 1, Some((0, 0, "USD"))),
            item("tea", 1, None),
            item("nope", 1, None),
            item("old", 1, None),
            item("mug", 1, Some((1, 0, "XXX"))),
            item("Bad Id!", 1, None),
        ];
        let wanted = parse_items(&bad, &mut v);
        price_lines(&wanted, &catalogue(), &mut v);
        let fields: Vec<_> = v.list().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].quantity",
                "items[1].quantity",
                "items[6].unit_price",
                "items[7].product_id",
                "items[2].unit_price",
                "items[3].product_id",
                "items[4].product_id",
                "items[5].product_id",
                "items[7].product_id",
            ]
        );
        let mut v = Violations::default();
        assert!(parse_items(&[], &mut v).is_empty());
        let many: Vec<_> = (0..10_000).map(|_| item("mug", 1, None)).collect();
        let mut v = Violations::default();
        assert!(parse_items(&many, &mut v).is_empty());
        assert_eq!(v.list()[0].field, "items");
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
