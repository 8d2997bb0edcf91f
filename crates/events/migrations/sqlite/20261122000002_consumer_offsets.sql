-- Offsets of consumers that keep them in their own database, committed in the same
-- transaction as the effects of the records they cover (see Consumer::offsets_in_database).
CREATE TABLE IF NOT EXISTS weft_consumer_offsets (
    consumer_group  TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset     INTEGER  NOT NULL,
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);
