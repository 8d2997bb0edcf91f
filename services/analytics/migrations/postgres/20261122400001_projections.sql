-- The analytics projections. Every table is derived from events only, so a rebuild
-- deletes them all and replays the topics; each record's offset commits with its
-- change (weft_consumer_offsets).

-- Named totals: signups, orders_created, emails_sent, sms_sent, events_processed,
-- latency_max_us, updated_at.
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS signups_by_source (
    source TEXT PRIMARY KEY,
    count  BIGINT NOT NULL
);

-- Revenue per currency, exact: whole units and nanos (normalised, same sign).
CREATE TABLE IF NOT EXISTS revenue (
    currency TEXT PRIMARY KEY,
    units    BIGINT NOT NULL,
    nanos    BIGINT NOT NULL
);

-- Orders created per hour of the event's time (µs since the epoch, hour start).
CREATE TABLE IF NOT EXISTS orders_per_hour (
    hour_start BIGINT PRIMARY KEY,
    count      BIGINT NOT NULL
);

-- Histogram of event-to-processing latency: bucket b holds samples up to 1.25^b ms.
CREATE TABLE IF NOT EXISTS latency_buckets (
    bucket BIGINT PRIMARY KEY,
    count  BIGINT NOT NULL
);

-- The last 50 events; seq is the value of events_processed when it was applied.
CREATE TABLE IF NOT EXISTS recent_events (
    seq            BIGINT PRIMARY KEY,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    topic          TEXT NOT NULL,
    subject        TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    occurred_at    BIGINT NOT NULL,
    processed_at   BIGINT NOT NULL,
    summary        TEXT NOT NULL
);
