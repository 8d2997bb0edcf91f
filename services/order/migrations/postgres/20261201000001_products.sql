-- The catalogue: an order line names a product and is priced from here.
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    currency   TEXT    NOT NULL,
    unit_minor BIGINT NOT NULL,
    active     BIGINT NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
