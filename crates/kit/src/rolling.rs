//! The last minute of a server's RPCs, kept in memory for the operations view: how
//! many were served, how many failed through a fault of the service, and their p50
//! and p99 latency. [`crate::layers::RpcMetricsLayer::recording`] records every RPC
//! of the contracts here as well as in Prometheus' histogram, so the figures can be
//! asked for with a typed call instead of being read back from text meant for
//! Prometheus. No server records yet: that comes with the call that reports them.
//!
//! Sixty one-second slots in a ring, each with counts and a log-scale latency
//! histogram (each bucket 25 % wider than the one before, from 50 µs): recording is
//! a few additions under an uncontended lock, and a quantile is exact to a bucket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds the figures cover.
pub const SECONDS: u64 = 60;
/// Latency buckets: bucket 0 holds up to 50 µs, bucket b up to 50 µs × 1.25^b; the
/// last one everything longer (1.25^64 × 50 µs ≈ 32 min).
const BUCKETS: usize = 65;
const FIRST_US: f64 = 50.0;
const GROWTH: f64 = 1.25;

#[derive(Clone, Copy)]
struct Slot {
    /// The second since the window's start this slot holds; stale when older than
    /// [`SECONDS`].
    second: u64,
    calls: u64,
    faults: u64,
    buckets: [u64; BUCKETS],
}

impl Slot {
    const EMPTY: Slot = Slot {
        second: u64::MAX,
        calls: 0,
        faults: 0,
        buckets: [0; BUCKETS],
    };
}

/// The figures of the last minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastMinute {
    /// RPCs answered.
    pub calls: u64,
    /// Of those, answered with a code that says the service failed
    /// ([`is_fault`]).
    pub faults: u64,
    /// Median latency, milliseconds (0 with no calls).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds (0 with no calls).
    pub p99_ms: f64,
}

impl LastMinute {
    /// Faults per call (0 with no calls).
    pub fn fault_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.faults as f64 / self.calls as f64
        }
    }
}

/// Whether an answer with `code` is the service's failure rather than the caller's
/// (a bad argument, a missing token or record): what an error rate should count.
pub fn is_fault(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::DataLoss
            | tonic::Code::ResourceExhausted
    )
}

/// The last minute of RPCs of one server.
pub struct RollingRpcs {
    start: Instant,
    slots: Mutex<[Slot; SECONDS as usize]>,
}

impl Default for RollingRpcs {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RollingRpcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollingRpcs")
            .field("last_minute", &self.last_minute())
            .finish()
    }
}

impl RollingRpcs {
    /// Empty, its clock starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            slots: Mutex::new([Slot::EMPTY; SECONDS as usize]),
        }
    }

    /// Records one RPC answered now with `code` after `latency`.
    pub fn record(&self, latency: Duration, code: tonic::Code) {
        self.record_at(self.start.elapsed().as_secs(), latency, is_fault(code));
    }

    /// The figures of the last [`SECONDS`] seconds.
    pub fn last_minute(&self) -> LastMinute {
        self.last_minute_at(self.start.elapsed().as_secs())
    }

    fn record_at(&self, second: u64, latency: Duration, fault: bool) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let slot = &mut slots[(second % SECONDS) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::EMPTY
            };
        }
        slot.calls += 1;
        slot.faults += u64::from(fault);
        slot.buckets[bucket(latency)] += 1;
    }

    fn last_minute_at(&self, now: u64) -> LastMinute {
        let mut calls = 0;
        let mut faults = 0;
        let mut buckets = [0u64; BUCKETS];
        if let Ok(slots) = self.slots.lock() {
            for slot in slots
                .iter()
                .filter(|s| s.second <= now && now - s.second < SECONDS)
            {
                calls += slot.calls;
                faults += slot.faults;
                for (sum, n) in buckets.iter_mut().zip(slot.buckets) {
                    *sum += n;
                }
            }
        }
        LastMinute {
            calls,
            faults,
            p50_ms: quantile(&buckets, calls, 0.50),
            p99_ms: quantile(&buckets, calls, 0.99),
        }
    }
}

/// The bucket of a latency.
fn bucket(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    if us <= FIRST_US {
        return 0;
    }
    ((us / FIRST_US).ln() / GROWTH.ln())
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

/// Upper bound of bucket `b`, milliseconds.
fn upper_ms(b: usize) -> f64 {
    FIRST_US * GROWTH.powi(b as i32) / 1000.0
}

/// The `q` quantile of `buckets` holding `total` samples, interpolated inside its
/// bucket; 0 when empty.
fn quantile(buckets: &[u64; BUCKETS], total: u64, q: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).max(1.0);
    let mut seen = 0u64;
    for (b, &n) in buckets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let before = seen as f64;
        seen += n;
        if seen as f64 >= rank {
            let lower = if b == 0 { 0.0 } else { upper_ms(b - 1) };
            let within = (rank - before) / n as f64;
            return lower + within * (upper_ms(b) - lower);
        }
    }
    upper_ms(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_last_minute_counts_calls_faults_and_quantiles() {
        let rpcs = RollingRpcs::new();
        // 99 calls of about 2 ms and one of 1 s, one of them a fault.
        for i in 0..99 {
            rpcs.record_at(10 + i % 5, 2 * MS, i == 0);
        }
        rpcs.record_at(12, 1000 * MS, false);
        let m = rpcs.last_minute_at(20);
        assert_eq!((m.calls, m.faults), (100, 1));
        assert!((m.fault_rate() - 0.01).abs() < 1e-9);
        // Within a bucket's width (25 %) of the truth.
        assert!((1.6..=2.5).contains(&m.p50_ms), "{m:?}");
        assert!((1.6..=2.5).contains(&m.p99_ms), "{m:?}");
        let m = rpcs.last_minute_at(10);
        assert_eq!(m.calls, 20, "only what happened up to now");
    }

    #[test]
    fn calls_older_than_a_minute_drop_out() {
        let rpcs = RollingRpcs::new();
        rpcs.record_at(0, MS, true);
        rpcs.record_at(30, MS, false);
        assert_eq!(rpcs.last_minute_at(59).calls, 2);
        assert_eq!(rpcs.last_minute_at(60).calls, 1);
        assert_eq!(rpcs.last_minute_at(60).faults, 0);
        // A slot reused a minute later starts empty.
        rpcs.record_at(90, MS, false);
        let m = rpcs.last_minute_at(90);
        assert_eq!((m.calls, m.faults), (1, 0));
        assert_eq!(
            rpcs.last_minute_at(200),
            LastMinute {
                calls: 0,
                faults: 0,
                p50_ms: 0.0,
                p99_ms: 0.0
            }
        );
    }

    #[test]
    fn only_the_services_own_failures_are_faults() {
        assert!(is_fault(tonic::Code::Internal));
        assert!(is_fault(tonic::Code::Unavailable));
        assert!(!is_fault(tonic::Code::InvalidArgument));
        assert!(!is_fault(tonic::Code::NotFound));
        assert!(!is_fault(tonic::Code::Unauthenticated));
        assert!(!is_fault(tonic::Code::Ok));
    }

    #[test]
    fn latencies_land_in_growing_buckets() {
        assert_eq!(bucket(Duration::from_micros(10)), 0);
        assert_eq!(bucket(Duration::from_micros(50)), 0);
        assert_eq!(bucket(Duration::from_micros(51)), 1);
        assert_eq!(bucket(Duration::from_secs(100_000)), BUCKETS - 1);
        assert!(upper_ms(bucket(Duration::from_millis(7))) >= 7.0);
    }
}
