CREATE TABLE IF NOT EXISTS orders (
    order_id        TEXT    PRIMARY KEY,
    user_id         TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    currency        TEXT    NOT NULL,
    total_minor     INTEGER NOT NULL,
    carrier         TEXT    NOT NULL DEFAULT '',
    tracking_number TEXT    NOT NULL DEFAULT '',
    payment_id      TEXT    NOT NULL DEFAULT '',
    card_last4      TEXT    NOT NULL DEFAULT '',
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- A retried create with the same key finds the first order.
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency ON orders (user_id, idempotency_key);
-- At most one welcome order per user, whatever the inbox says.
CREATE UNIQUE INDEX IF NOT EXISTS orders_one_welcome ON orders (user_id) WHERE kind = 2;
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_at, order_id);

CREATE TABLE IF NOT EXISTS order_items (
    order_id   TEXT    NOT NULL,
    line_no    INTEGER NOT NULL,
    product_id TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_minor INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
