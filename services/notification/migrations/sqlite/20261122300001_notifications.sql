-- What the notification service knows of each user: where to reach them.
CREATE TABLE IF NOT EXISTS contacts (
    user_id    TEXT    PRIMARY KEY,
    email      TEXT    NOT NULL DEFAULT '',
    name       TEXT    NOT NULL DEFAULT '',
    phone      TEXT    NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
);

-- The records that triggered notifications, kept whole so that one given up on
-- later can still go to the dead-letter topic as it arrived.
CREATE TABLE IF NOT EXISTS triggers (
    event_id        TEXT    PRIMARY KEY,
    event_type      TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL,
    event_key       TEXT,
    headers         TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    created_at      INTEGER NOT NULL
);

-- One row per message: planned by the consumer, delivered by the delivery worker.
CREATE TABLE IF NOT EXISTS notifications (
    notification_id  TEXT    PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    channel          INTEGER NOT NULL,
    template         TEXT    NOT NULL,
    trigger_event_id TEXT    NOT NULL,
    context          TEXT    NOT NULL,
    recipient        TEXT    NOT NULL DEFAULT '',
    subject          TEXT    NOT NULL DEFAULT '',
    status           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    -- Exactly one message per (event, template, channel), however often it arrives.
    UNIQUE (trigger_event_id, template, channel)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS notifications_by_user ON notifications (user_id, created_at, notification_id);
