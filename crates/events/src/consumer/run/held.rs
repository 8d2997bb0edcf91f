//! What a running member holds: the claimed epoch of each of its partitions, the
//! partitions a rewind replays and how far, and the next offset of each (shared with
//! the lag reporter). Dropping a partition forgets all three at once.

use std::collections::HashMap;

use crate::consumer::claims::Partition;
use crate::consumer::dispatch::Record;
use crate::consumer::group::Positions;

/// What this member holds.
#[derive(Default)]
pub(super) struct Held {
    /// The claimed epoch of each partition.
    pub(super) epochs: HashMap<Partition, i64>,
    /// Partitions replayed by a rewind, up to the end they had when it began.
    pub(super) replay_until: HashMap<Partition, i64>,
    /// The next offset of each partition (shared with the lag reporter).
    pub(super) positions: Positions,
}

impl Held {
    pub(super) fn drop_partition(&mut self, p: &Partition) {
        self.epochs.remove(p);
        self.replay_until.remove(p);
        self.positions().remove(p);
    }

    pub(super) fn positions(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, i64>> {
        self.positions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn replaying(&self, r: &Record) -> bool {
        self.replay_until
            .get(&(r.topic.clone(), r.partition))
            .is_some_and(|end| r.offset < *end)
    }
}
