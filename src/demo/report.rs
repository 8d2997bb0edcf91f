//! What `weft demo --load` counts and prints: each operation's latencies and each
//! kind of failure, one progress line a second (the rate of successes in that second
//! and the latest latencies' p50 and p99) and a summary at the end, like k6's.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::mix::Op;

/// The outcomes of the load so far.
#[derive(Default)]
pub(super) struct Tally {
    latencies: BTreeMap<Op, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
}

/// The `q` quantile (0–1) of sorted durations; zero for none.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

impl Tally {
    /// The tally behind `shared`, even if a task panicked holding it.
    pub(super) fn lock(shared: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
        shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a success of `op` that took `latency`.
    pub(super) fn ok(&mut self, op: Op, latency: Duration) {
        self.latencies.entry(op).or_default().push(latency);
    }

    /// Counts a failure described as `what`.
    pub(super) fn failed(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }

    fn ok_count(&self) -> usize {
        self.latencies.values().map(Vec::len).sum()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Prints the summary of a load that sent `sent` requests in `elapsed` when
    /// `rate` a second were asked.
    pub(super) fn print_summary(&self, sent: u64, elapsed: Duration, rate: f64) {
        let ok = self.ok_count();
        let errors = self.error_count();
        println!(
            "summary: {sent} requests in {elapsed:.1?} ({:.0}/s of {rate:.0}/s asked), {ok} ok, {errors} failed",
            sent as f64 / elapsed.as_secs_f64()
        );
        for (op, lat) in &self.latencies {
            let mut lat = lat.clone();
            lat.sort();
            println!(
                "  {:<7} {:>7} ok   p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
                op.name(),
                lat.len(),
                quantile(&lat, 0.5),
                quantile(&lat, 0.9),
                quantile(&lat, 0.99),
                lat.last().copied().unwrap_or_default()
            );
        }
        for (what, n) in &self.errors {
            println!("  failed: {what} × {n}");
        }
    }
}

/// The progress lines: one for each second of the load.
pub(super) struct Progress {
    next_report: Duration,
    reported_ok: usize,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            next_report: Duration::from_secs(1),
            reported_ok: 0,
        }
    }

    /// Prints the line of the second that `elapsed` completes, if one does.
    pub(super) fn print_due(&mut self, elapsed: Duration, shared: &Mutex<Tally>) {
        if elapsed < self.next_report {
            return;
        }
        let tally = Tally::lock(shared);
        let ok = tally.ok_count();
        let errors = tally.error_count();
        let mut recent: Vec<Duration> = tally
            .latencies
            .values()
            .flat_map(|v| v.iter().rev().take(500).copied())
            .collect();
        recent.sort();
        println!(
            "  {:>4} s  {:>6.0} ok/s  ok {ok:>7}  errors {errors:>5}  p50 {:>7.1?}  p99 {:>7.1?}",
            self.next_report.as_secs(),
            (ok - self.reported_ok) as f64,
            quantile(&recent, 0.5),
            quantile(&recent, 0.99)
        );
        self.reported_ok = ok;
        self.next_report += Duration::from_secs(1);
    }
}
