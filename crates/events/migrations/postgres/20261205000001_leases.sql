-- Leases: work one replica at a time may do on a database several replicas share
-- (the outbox relay, ...). `token` grows by one at every change of holder and fences
-- a former holder's writes; `expires_at` is in microseconds since the epoch.
CREATE TABLE IF NOT EXISTS weft_leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    token      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
