-- The transactional outbox and the consumer inbox of weft-events.
CREATE TABLE IF NOT EXISTS weft_outbox (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     TEXT    NOT NULL UNIQUE,
    topic        TEXT    NOT NULL,
    event_key    TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    headers      TEXT    NOT NULL,
    payload      BYTEA   NOT NULL,
    created_at   BIGINT  NOT NULL,
    sent_at      BIGINT,
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
    kafka_offset   BIGINT  NOT NULL,
    processed_at   BIGINT  NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
