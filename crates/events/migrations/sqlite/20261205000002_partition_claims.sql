-- Which member of a consumer group holds each partition, fenced: a replica claims a
-- partition when the group assigns it (`epoch` grows by one at every claim) and every
-- transaction that commits records of the partition checks that the epoch is still
-- its own, so a member that lost the partition (a pause, a network cut) commits
-- nothing more. `holder` is the replica id, empty after a rewind released it.
CREATE TABLE IF NOT EXISTS weft_partition_claims (
    consumer_group  TEXT   NOT NULL,
    topic           TEXT   NOT NULL,
    kafka_partition BIGINT NOT NULL,
    epoch           BIGINT NOT NULL,
    holder          TEXT   NOT NULL,
    claimed_at      BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- The deployment this database belongs to: a random id made once. Members of one
-- consumer group must share it, so two meshes with their own databases cannot split
-- one group's partitions between them on a shared cluster.
CREATE TABLE IF NOT EXISTS weft_deployment (
    singleton  BIGINT NOT NULL PRIMARY KEY,
    id         TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
