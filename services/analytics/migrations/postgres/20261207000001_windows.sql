-- Tumbling windows of event time (ce_time): one row per window, figure and
-- dimension. width is the window's length in seconds (60 or 3600), window_start its
-- start in µs since the epoch. A figure is a count in units (nanos 0) or, for
-- revenue, an exact amount: units × 10^9 + nanos, |nanos| < 10^9. Metrics:
-- orders_created, revenue (dimension: currency code), signups (dimension: signup
-- source), emails_sent, sms_sent, late_events (events that came after the window
-- closed). version is events_processed after the transaction that last changed
-- the row: the metric stream sends the windows changed since its last message. A
-- rebuild deletes them with the other projections and replays.
CREATE TABLE IF NOT EXISTS windows (
    width        BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    metric       TEXT NOT NULL,
    dimension    TEXT NOT NULL,
    units        BIGINT NOT NULL,
    nanos        BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    PRIMARY KEY (width, window_start, metric, dimension)
);

CREATE INDEX IF NOT EXISTS windows_by_version ON windows (width, version);
