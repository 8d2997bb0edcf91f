//! The product catalogue: what an order line may name, at its price. Prices come from
//! here, never from the client: `CreateOrder` prices every line from the catalogue
//! and refuses a line whose product is unknown or inactive, or whose client-sent price
//! differs.
//!
//! The catalogue is seeded at start-up from a JSON file (`--catalog-seed`; built in:
//! `services/order/catalog.json`, the demo's mug at 29.99 and lamp at 49.99 USD among
//! them): products not there yet are added, those there are left as staff changed
//! them. Staff add and change products through `CreateProduct` / `UpdateProduct`.

use std::collections::HashMap;

use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use weft_events::Database;
use weft_proto::order::Product as ProductMessage;

use crate::error::{OrderError, Violations};
use crate::money::{self, Currency};

/// The seed built into the service.
pub const BUILT_IN_SEED: &str = include_str!("../catalog.json");

/// A product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its id.
    pub product_id: String,
    /// Display name.
    pub name: String,
    /// Currency of the price.
    pub currency: Currency,
    /// Price of one unit, in minor units.
    pub unit_minor: i64,
    /// Whether it can be ordered.
    pub active: bool,
    /// Added (µs since the epoch).
    pub created_at: i64,
    /// Last changed (µs since the epoch).
    pub updated_at: i64,
}

impl Product {
    /// The API view.
    pub fn to_proto(&self) -> ProductMessage {
        ProductMessage {
            product_id: self.product_id.clone(),
            name: self.name.clone(),
            unit_price: Some(money::from_minor(self.currency, self.unit_minor)),
            active: self.active,
            create_time: Some(weft_events::db::timestamp(self.created_at)),
            update_time: Some(weft_events::db::timestamp(self.updated_at)),
        }
    }
}

/// A product id: 1 to 64 of `a-z0-9._-`.
pub fn parse_product_id(raw: &str, field: &str, v: &mut Violations) -> String {
    let id = raw.trim().to_owned();
    if id.is_empty()
        || id.len() > 64
        || !id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
    {
        v.add(field, "must be 1–64 of a-z, 0-9, '.', '_' and '-'");
    }
    id
}

/// A product name (the free-text rule for names).
pub fn parse_name(raw: &str, field: &str, v: &mut Violations) -> String {
    let name = raw.trim().to_owned();
    if let Some(problem) = weft_kit::text::Text::NAME.problem(&name) {
        v.add(field, problem);
    }
    name
}

/// A price: a known currency, zero or more, no finer than its minor unit.
pub fn parse_price(
    price: Option<&weft_proto::common::Money>,
    field: &str,
    v: &mut Violations,
) -> Option<(Currency, i64)> {
    match price.map(money::to_minor) {
        None => {
            v.add(field, "is required");
            None
        }
        Some(Err(e)) => {
            v.add(field, e.to_string());
            None
        }
        Some(Ok(p)) => Some(p),
    }
}

const COLUMNS: &str = "product_id, name, currency, unit_minor, active, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<Product, OrderError> {
    let code: String = row.try_get("currency")?;
    let currency = Currency::from_code(&code).ok_or_else(|| {
        OrderError::Internal(anyhow::anyhow!(
            "stored product has unknown currency {code:?}"
        ))
    })?;
    Ok(Product {
        product_id: row.try_get("product_id")?,
        name: row.try_get("name")?,
        currency,
        unit_minor: row.try_get("unit_minor")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The products named by `ids` that exist, by id.
pub async fn by_ids(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<HashMap<String, Product>, OrderError> {
    let select = format!("SELECT {COLUMNS} FROM products");
    let rows = weft_events::sql::fetch_in(conn, &select, "product_id", ids).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let p = from_row(&row)?;
        out.insert(p.product_id.clone(), p);
    }
    Ok(out)
}

/// One product.
pub async fn get(db: &Database, id: &str) -> Result<Option<Product>, OrderError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_id = $1"
    ))
    .bind(id.to_owned())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Up to `limit` products with ids after `after`, by id.
pub async fn page(
    db: &Database,
    after: &str,
    limit: i64,
    include_inactive: bool,
) -> Result<Vec<Product>, OrderError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM products WHERE product_id > $1 AND (active = 1 OR $2 = 1) \
         ORDER BY product_id LIMIT $3"
    ))
    .bind(after.to_owned())
    .bind(i64::from(include_inactive))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Adds `p`; `false` when its id is taken.
pub async fn insert(conn: &mut AnyConnection, p: &Product) -> Result<bool, OrderError> {
    let done = sqlx::query(
        "INSERT INTO products (product_id, name, currency, unit_minor, active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(p.product_id.clone())
    .bind(p.name.clone())
    .bind(p.currency.code)
    .bind(p.unit_minor)
    .bind(i64::from(p.active))
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Writes the changeable fields of `p`.
pub async fn update(conn: &mut AnyConnection, p: &Product) -> Result<(), OrderError> {
    sqlx::query(
        "UPDATE products SET name = $1, currency = $2, unit_minor = $3, active = $4, updated_at = $5 \
         WHERE product_id = $6",
    )
    .bind(p.name.clone())
    .bind(p.currency.code)
    .bind(p.unit_minor)
    .bind(i64::from(p.active))
    .bind(p.updated_at)
    .bind(p.product_id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// A product as the seed file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seeded {
    product_id: String,
    name: String,
    currency: String,
    /// Decimal, e.g. `"29.99"`.
    price: String,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

/// Parses a seed file: every product checked as `CreateProduct` checks it.
pub fn parse_seed(json: &str) -> Result<Vec<Product>, String> {
    let seeded: Vec<Seeded> =
        serde_json::from_str(json).map_err(|e| format!("the catalogue seed is not valid: {e}"))?;
    let now = weft_events::db::now_micros();
    let mut out = Vec::with_capacity(seeded.len());
    for (i, s) in seeded.into_iter().enumerate() {
        let mut v = Violations::default();
        let product_id = parse_product_id(&s.product_id, "product_id", &mut v);
        let name = parse_name(&s.name, "name", &mut v);
        let currency = Currency::from_code(&s.currency);
        let minor = currency.and_then(|c| money::parse_decimal(c, &s.price));
        if let Err(OrderError::Invalid(list)) = v.finish(()) {
            let what: Vec<String> = list
                .iter()
                .map(|f| format!("{} {}", f.field, f.description))
                .collect();
            return Err(format!("seed product {i}: {}", what.join("; ")));
        }
        let (Some(currency), Some(unit_minor)) = (currency, minor) else {
            return Err(format!(
                "seed product {i} ({product_id}): price {:?} {:?} is not an amount of a known currency",
                s.price, s.currency
            ));
        };
        out.push(Product {
            product_id,
            name,
            currency,
            unit_minor,
            active: s.active,
            created_at: now,
            updated_at: now,
        });
    }
    Ok(out)
}

/// Adds the seed's products that are not in the catalogue yet; how many.
pub async fn seed(db: &Database, products: &[Product]) -> Result<usize, OrderError> {
    let mut tx = db.begin().await?;
    let mut added = 0;
    for p in products {
        if insert(&mut tx, p).await? {
            added += 1;
        }
    }
    tx.commit().await?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_seed_has_the_demo_products_at_their_prices() {
        let products = parse_seed(BUILT_IN_SEED).unwrap_or_else(|e| panic!("{e}"));
        let price = |id: &str| {
            products
                .iter()
                .find(|p| p.product_id == id)
                .map(|p| (p.currency.code, p.unit_minor))
        };
        assert_eq!(price("mug"), Some(("USD", 2999)));
        assert_eq!(price("lamp"), Some(("USD", 4999)));
    }

    #[test]
    fn a_bad_seed_says_which_product_and_why() {
        for (bad, says) in [
            ("not json", "not valid"),
            (
                r#"[{"product_id":"Mug!","name":"Mug","currency":"USD","price":"1"}]"#,
                "product 0",
            ),
            (
                r#"[{"product_id":"mug","name":"Mug","currency":"XXX","price":"1"}]"#,
                "known currency",
            ),
            (
                r#"[{"product_id":"mug","name":"Mug","currency":"USD","price":"1.999"}]"#,
                "known currency",
            ),
            (
                r#"[{"product_id":"mug","name":"Mug","currency":"USD","price":"1","x":1}]"#,
                "not valid",
            ),
        ] {
            let e = parse_seed(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
