//! The orders and order_items tables.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use weft_events::Database;
use weft_proto::order::{OrderKind, OrderStatus};

use crate::domain::{Line, OrderError, OrderRecord};
use crate::money::Currency;

const COLUMNS: &str = "order_id, user_id, status, kind, currency, total_minor, carrier, tracking_number, \
                       payment_id, card_last4, idempotency_key, created_at, updated_at";

fn from_row(row: &AnyRow) -> Result<OrderRecord, OrderError> {
    let currency: String = row.try_get("currency")?;
    let status = i32::try_from(row.try_get::<i64, _>("status")?).unwrap_or_default();
    let kind = i32::try_from(row.try_get::<i64, _>("kind")?).unwrap_or_default();
    Ok(OrderRecord {
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        status: OrderStatus::try_from(status).unwrap_or(OrderStatus::Unspecified),
        kind: OrderKind::try_from(kind).unwrap_or(OrderKind::Unspecified),
        currency: Currency::from_code(&currency)
            .ok_or_else(|| anyhow::anyhow!("stored order has unknown currency {currency:?}"))?,
        total_minor: row.try_get("total_minor")?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        payment_id: row.try_get("payment_id")?,
        card_last4: row.try_get("card_last4")?,
        idempotency_key: row.try_get("idempotency_key")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        lines: Vec::new(),
    })
}

/// Inserts an order and its lines. `Ok(false)` when a unique key (idempotency key,
/// one welcome order per user) says it exists already.
pub async fn insert(conn: &mut AnyConnection, o: &OrderRecord) -> Result<bool, OrderError> {
    insert_all(conn, &[o]).await
}

/// Inserts `orders` and their lines, a statement for each run of a power of two of
/// orders and of lines (a handful of statement texts stay prepared). `Ok(false)` when
/// a unique key (idempotency key, one welcome order per user) says one of them exists
/// already: then none of them is inserted, though on PostgreSQL the transaction is
/// spoilt and must be rolled back.
pub async fn insert_all(
    conn: &mut AnyConnection,
    orders: &[&OrderRecord],
) -> Result<bool, OrderError> {
    for run in weft_events::sql::pow2_chunks(orders, 64) {
        let sql = format!(
            "INSERT INTO orders ({COLUMNS}) VALUES {}",
            weft_events::sql::values(conn, run.len(), 13)
        );
        let mut insert = sqlx::query(&sql);
        for o in run {
            insert = insert
                .bind(o.order_id.clone())
                .bind(o.user_id.clone())
                .bind(o.status as i64)
                .bind(o.kind as i64)
                .bind(o.currency.code)
                .bind(o.total_minor)
                .bind(o.carrier.clone())
                .bind(o.tracking_number.clone())
                .bind(o.payment_id.clone())
                .bind(o.card_last4.clone())
                .bind(o.idempotency_key.clone())
                .bind(o.created_at)
                .bind(o.updated_at);
        }
        match insert.execute(&mut *conn).await {
            Ok(_) => {}
            Err(e) if weft_events::db::is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
    let lines: Vec<(&str, i64, &Line)> = orders
        .iter()
        .flat_map(|o| {
            (0i64..)
                .zip(&o.lines)
                .map(|(no, line)| (o.order_id.as_str(), no, line))
        })
        .collect();
    for run in weft_events::sql::pow2_chunks(&lines, 64) {
        let sql = format!(
            "INSERT INTO order_items (order_id, line_no, product_id, name, quantity, unit_minor) VALUES {}",
            weft_events::sql::values(conn, run.len(), 6)
        );
        let mut insert = sqlx::query(&sql);
        for (order_id, line_no, line) in run {
            insert = insert
                .bind(order_id.to_string())
                .bind(*line_no)
                .bind(line.product_id.clone())
                .bind(line.name.clone())
                .bind(i64::from(line.quantity))
                .bind(line.unit_minor);
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(true)
}

/// Saves the mutable fields of `o` if it is still in status `expected` (an optimistic
/// check: a concurrent change makes this a no-op returning `false`).
pub async fn update(
    conn: &mut AnyConnection,
    o: &OrderRecord,
    expected: OrderStatus,
) -> Result<bool, OrderError> {
    let r = sqlx::query(
        "UPDATE orders SET status = $1, carrier = $2, tracking_number = $3, payment_id = $4, card_last4 = $5, \
         updated_at = $6 WHERE order_id = $7 AND status = $8",
    )
    .bind(o.status as i64)
    .bind(o.carrier.clone())
    .bind(o.tracking_number.clone())
    .bind(o.payment_id.clone())
    .bind(o.card_last4.clone())
    .bind(o.updated_at)
    .bind(o.order_id.clone())
    .bind(expected as i64)
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

async fn lines(conn: &mut AnyConnection, order_id: &str) -> Result<Vec<Line>, OrderError> {
    let rows = sqlx::query(
        "SELECT product_id, name, quantity, unit_minor FROM order_items WHERE order_id = $1 ORDER BY line_no",
    )
    .bind(order_id.to_owned())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Line {
                product_id: r.try_get("product_id")?,
                name: r.try_get("name")?,
                quantity: i32::try_from(r.try_get::<i64, _>("quantity")?).unwrap_or_default(),
                unit_minor: r.try_get("unit_minor")?,
            })
        })
        .collect()
}

/// The order `order_id` with its lines.
pub async fn by_id(
    conn: &mut AnyConnection,
    order_id: &str,
) -> Result<Option<OrderRecord>, OrderError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1"))
        .bind(order_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut o = from_row(&row)?;
    o.lines = lines(conn, order_id).await?;
    Ok(Some(o))
}

/// The order a user created with `key`.
pub async fn by_idempotency_key(
    conn: &mut AnyConnection,
    user_id: &str,
    key: &str,
) -> Result<Option<OrderRecord>, OrderError> {
    let id: Option<String> =
        sqlx::query("SELECT order_id FROM orders WHERE user_id = $1 AND idempotency_key = $2")
            .bind(user_id.to_owned())
            .bind(key.to_owned())
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get("order_id"))
            .transpose()?;
    match id {
        Some(id) => by_id(conn, &id).await,
        None => Ok(None),
    }
}

/// Whether `user_id` has a welcome order.
pub async fn has_welcome(conn: &mut AnyConnection, user_id: &str) -> Result<bool, OrderError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE user_id = $1 AND kind = $2")
        .bind(user_id.to_owned())
        .bind(OrderKind::Welcome as i64)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// A page of a user's orders, newest first, after the cursor `(created_at, order_id)`.
pub async fn page(
    db: &Database,
    user_id: &str,
    after: Option<(i64, String)>,
    size: i64,
) -> Result<Vec<OrderRecord>, OrderError> {
    let (at, id) = after.unwrap_or((i64::MAX, String::new()));
    let mut conn = db.pool().acquire().await?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM orders WHERE user_id = $1 AND (created_at < $2 OR (created_at = $3 AND order_id < $4)) \
         ORDER BY created_at DESC, order_id DESC LIMIT $5"
    ))
    .bind(user_id.to_owned())
    .bind(at)
    .bind(at)
    .bind(id)
    .bind(size)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut o = from_row(row)?;
        o.lines = lines(&mut conn, &o.order_id).await?;
        out.push(o);
    }
    Ok(out)
}
