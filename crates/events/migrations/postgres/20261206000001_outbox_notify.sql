-- Every transaction that adds outbox rows notifies `weft_outbox` when it commits
-- (PostgreSQL delivers notifications at commit, one per transaction and channel), so
-- the replica holding the relay lease publishes rows another replica wrote at once
-- instead of at its next poll.
CREATE OR REPLACE FUNCTION weft_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('weft_outbox', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS weft_outbox_notify ON weft_outbox;
CREATE TRIGGER weft_outbox_notify
    AFTER INSERT ON weft_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION weft_outbox_notify();
