-- The transactional outbox and the consumer inbox of weft-events.
CREATE TABLE IF NOT EXISTS weft_outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT    NOT NULL UNIQUE,
    topic        TEXT    NOT NULL,
    event_key    TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    headers      TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    sent_at      INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS weft_outbox_unsent ON weft_outbox (seq) WHERE sent_at IS NULL;

CREATE TABLE IF NOT EXISTS weft_inbox (
    consumer_group TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset   INTEGER NOT NULL,
    processed_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
