//! Idempotent producers: the sequence check that lets a producer retry without
//! duplicating or reordering records.
//!
//! Each partition remembers, per producer id, its epoch and the sequence numbers of
//! its last five batches (librdkafka keeps at most five in flight). A batch is
//! appended when it continues the sequence, answered with its first offset when it
//! repeats one of those five (a retry whose first attempt was written), and refused
//! otherwise. The state is rebuilt from the log's batch headers on start-up, so it
//! survives a restart as the records do.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;

/// Batches remembered per producer and partition.
const REMEMBERED: usize = 5;

/// What to do with a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// A retry of a batch already written at this base offset: answer with it.
    Duplicate(i64),
    /// Refuse it with this Kafka error code.
    Refuse(i16),
}

/// Kafka error codes the check answers with.
pub mod code {
    /// A sequence number that does not continue the producer's sequence.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// An epoch older than the producer's current one.
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// A producer this partition has no state for, continuing a sequence.
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
}

#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    /// (first sequence, last sequence, base offset), oldest first.
    recent: VecDeque<(i32, i32, i64)>,
}

/// The producers of one partition.
#[derive(Debug, Default, Clone)]
pub struct Producers {
    by_id: HashMap<i64, Producer>,
}

fn last_sequence(h: &BatchHeader) -> i32 {
    // Sequences wrap from i32::MAX to 0.
    ((i64::from(h.base_sequence) + i64::from(h.records_count) - 1) % (i64::from(i32::MAX) + 1))
        as i32
}

impl Producers {
    /// Decides what to do with batch `h`.
    pub fn check(&self, h: &BatchHeader) -> Check {
        if !h.is_idempotent() {
            return Check::Append;
        }
        let Some(p) = self.by_id.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::Refuse(code::UNKNOWN_PRODUCER_ID)
            };
        };
        if h.producer_epoch < p.epoch {
            return Check::Refuse(code::INVALID_PRODUCER_EPOCH);
        }
        if h.producer_epoch > p.epoch {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::Refuse(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        let last = last_sequence(h);
        if let Some(&(_, _, offset)) = p
            .recent
            .iter()
            .find(|(first, l, _)| *first == h.base_sequence && *l == last)
        {
            return Check::Duplicate(offset);
        }
        let expected = p
            .recent
            .back()
            .map_or(0, |&(_, l, _)| if l == i32::MAX { 0 } else { l + 1 });
        if h.base_sequence == expected {
            Check::Append
        } else {
            Check::Refuse(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        }
    }

    /// Records that batch `h` was written at `base_offset`.
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if !h.is_idempotent() {
            return;
        }
        let p = self.by_id.entry(h.producer_id).or_insert(Producer {
            epoch: h.producer_epoch,
            recent: VecDeque::with_capacity(REMEMBERED),
        });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.recent.clear();
        }
        if p.recent.len() == REMEMBERED {
            p.recent.pop_front();
        }
        p.recent
            .push_back((h.base_sequence, last_sequence(h), base_offset));
    }

    /// How many producers this partition remembers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn a_sequence_continues_repeats_are_answered_and_gaps_refused() {
        let mut p = Producers::default();
        assert_eq!(p.check(&h(1, 0, 0, 3)), Check::Append);
        p.record(&h(1, 0, 0, 3), 10);
        assert_eq!(p.check(&h(1, 0, 0, 3)), Check::Duplicate(10));
        assert_eq!(
            p.check(&h(1, 0, 4, 1)),
            Check::Refuse(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(p.check(&h(1, 0, 3, 2)), Check::Append);
        p.record(&h(1, 0, 3, 2), 13);
        assert_eq!(p.check(&h(1, 0, 3, 2)), Check::Duplicate(13));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut p = Producers::default();
        for i in 0..7 {
            p.record(&h(1, 0, i, 1), i64::from(i));
        }
        assert_eq!(p.check(&h(1, 0, 6, 1)), Check::Duplicate(6));
        assert_eq!(p.check(&h(1, 0, 2, 1)), Check::Duplicate(2));
        assert_eq!(
            p.check(&h(1, 0, 1, 1)),
            Check::Refuse(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
    }

    #[test]
    fn epochs_fence_old_producers_and_a_new_epoch_starts_at_zero() {
        let mut p = Producers::default();
        p.record(&h(1, 1, 0, 1), 0);
        assert_eq!(
            p.check(&h(1, 0, 1, 1)),
            Check::Refuse(code::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            p.check(&h(1, 2, 5, 1)),
            Check::Refuse(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(p.check(&h(1, 2, 0, 1)), Check::Append);
        assert_eq!(
            p.check(&h(9, 0, 3, 1)),
            Check::Refuse(code::UNKNOWN_PRODUCER_ID)
        );
        assert_eq!(p.check(&h(-1, -1, -1, 1)), Check::Append);
    }

    #[test]
    fn sequences_wrap_at_the_largest_int() {
        let mut p = Producers::default();
        p.record(&h(1, 0, i32::MAX - 1, 2), 0);
        assert_eq!(p.check(&h(1, 0, 0, 1)), Check::Append);
    }
}
