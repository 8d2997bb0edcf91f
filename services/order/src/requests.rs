//! Requests parsed at the boundary: each RPC's message becomes the domain's values,
//! or one `INVALID_ARGUMENT` naming every field that is wrong. Ids of stored orders
//! are checked where the order is looked up ([`required_id`]).

use weft_auth::Caller;
use weft_proto::order::{
    CancelOrderRequest, CreateOrderRequest, OrderItem, PayOrderRequest, ShipOrderRequest,
};

use crate::domain::{MAX_ITEMS, MAX_QUANTITY, OrderError, Violations, Wanted};
use crate::money;
use crate::payment::{Card, luhn};

/// `value` as an id, or why `field` is not one.
pub(crate) fn required_id(value: &str, field: &str) -> Result<String, OrderError> {
    let v = value.trim();
    if let Some(problem) = weft_kit::text::Text::ID.problem(v) {
        return Err(OrderError::invalid(field, &problem));
    }
    Ok(v.to_owned())
}

/// The user a request names, or the caller when it names none.
pub(crate) fn user_or_caller(value: &str, caller: &Caller) -> Result<String, OrderError> {
    if value.trim().is_empty() {
        Ok(caller.user_id.clone())
    } else {
        required_id(value, "user_id")
    }
}

/// A `CreateOrder` as its caller sent it: whose order, under which key, for what.
#[derive(Debug)]
pub struct NewOrder {
    /// The customer: the caller.
    pub user_id: String,
    /// The client's idempotency key; empty when it sent none.
    pub key: String,
    /// The lines, before pricing.
    pub wanted: Vec<Wanted>,
}

impl TryFrom<(&Caller, CreateOrderRequest)> for NewOrder {
    type Error = OrderError;

    fn try_from((caller, req): (&Caller, CreateOrderRequest)) -> Result<Self, OrderError> {
        let mut v = Violations::default();
        let user_id = user_or_caller(&req.user_id, caller)?;
        let key = req.idempotency_key.trim().to_owned();
        if key.len() > 128 {
            v.add("idempotency_key", "must be at most 128 characters");
        }
        let wanted = parse_items(&req.items, &mut v);
        if !caller.is(&user_id) {
            // Ordering for someone else looks like ordering for nobody.
            v.add("user_id", "must be your own user id");
        }
        v.finish(Self {
            user_id,
            key,
            wanted,
        })
    }
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

/// A `PayOrder`: which order, and a card that passes its checks (a number of 12 to
/// 19 digits with a valid check digit, a month, an expiry not past, a CVC).
#[derive(Debug)]
pub struct Payment {
    /// The order, as sent.
    pub order_id: String,
    /// The card, digits only.
    pub card: Card,
}

impl TryFrom<PayOrderRequest> for Payment {
    type Error = OrderError;

    fn try_from(req: PayOrderRequest) -> Result<Self, OrderError> {
        let mut v = Violations::default();
        let card = req.card.unwrap_or_default();
        let number: String = card
            .number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if !(12..=19).contains(&number.len())
            || !number.bytes().all(|b| b.is_ascii_digit())
            || !luhn(&number)
        {
            v.add("card.number", "is not a valid card number");
        }
        if !(1..=12).contains(&card.exp_month) {
            v.add("card.exp_month", "must be 1–12");
        }
        let now = year_month_now();
        if card.exp_year < now.0 || (card.exp_year == now.0 && card.exp_month < now.1) {
            v.add("card.exp_year", "the card has expired");
        }
        if !(3..=4).contains(&card.cvc.len()) || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            v.add("card.cvc", "must be 3 or 4 digits");
        }
        v.finish(Self {
            order_id: req.order_id,
            card: Card { number },
        })
    }
}

/// (year, month) now, UTC.
fn year_month_now() -> (i32, i32) {
    use chrono::Datelike as _;
    let today = chrono::Utc::now().date_naive();
    (today.year(), i32::try_from(today.month()).unwrap_or(12))
}

/// A `ShipOrder`: which order, by which carrier, under which tracking number (both
/// go out in the shipping email and text message).
#[derive(Debug)]
pub struct Shipment {
    /// The order, as sent.
    pub order_id: String,
    /// The carrier, trimmed.
    pub carrier: String,
    /// The tracking number: letters, digits or dashes.
    pub tracking_number: String,
}

impl TryFrom<ShipOrderRequest> for Shipment {
    type Error = OrderError;

    fn try_from(req: ShipOrderRequest) -> Result<Self, OrderError> {
        let mut v = Violations::default();
        let carrier = req.carrier.trim().to_owned();
        let tracking = req.tracking_number.trim().to_owned();
        let required_code = weft_kit::text::Text {
            optional: false,
            ..weft_kit::text::Text::CODE
        };
        if let Some(problem) = required_code.problem(&carrier) {
            v.add("carrier", problem);
        }
        if let Some(problem) = required_code.problem(&tracking) {
            v.add("tracking_number", problem);
        } else if !tracking
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            v.add("tracking_number", "must be letters, digits or dashes");
        }
        v.finish(Self {
            order_id: req.order_id,
            carrier,
            tracking_number: tracking,
        })
    }
}

/// A `CancelOrder`: which order, and why (optional, bounded).
#[derive(Debug)]
pub struct Cancellation {
    /// The order, as sent.
    pub order_id: String,
    /// The reason, trimmed; empty when none was given.
    pub reason: String,
}

impl TryFrom<CancelOrderRequest> for Cancellation {
    type Error = OrderError;

    fn try_from(req: CancelOrderRequest) -> Result<Self, OrderError> {
        let reason = req.reason.trim().to_owned();
        if let Some(problem) = weft_kit::text::Text::REASON.problem(&reason) {
            return Err(OrderError::invalid("reason", &problem));
        }
        Ok(Self {
            order_id: req.order_id,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::price_lines;
    use crate::money::Currency;
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
}
