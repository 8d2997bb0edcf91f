-- The catalogue: an order line names a product and is priced from here.
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    unit_minor INTEGER NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
