//! A circuit breaker per upstream service: after `failures` consecutive calls that
//! could not reach the service it opens, and calls fail fast (503 with `Retry-After`)
//! for `open_for`; then one trial call is let through (half-open): success closes it,
//! failure opens it again. Written here because it is a few lines over a mutex and
//! the well-kept tower middlewares have no breaker.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When a breaker opens and for how long.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive unreachable calls that open the circuit.
    pub failures: u32,
    /// How long it stays open before a trial call.
    pub open_for: Duration,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_started: Instant },
}

/// One service's breaker; clones share the state.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: Arc<Mutex<State>>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Arc::new(Mutex::new(State::Closed { failures: 0 })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go ahead; `Err(retry_after)` while open.
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => {
                *state = State::HalfOpen { trial_started: now };
                Ok(())
            }
            State::Open { until } => Err(until - now),
            // One trial at a time; a trial that never reports back (its caller went
            // away) is given up after another open period.
            State::HalfOpen { trial_started } if now - trial_started > self.config.open_for => {
                *state = State::HalfOpen { trial_started: now };
                Ok(())
            }
            State::HalfOpen { .. } => Err(self.config.open_for),
        }
    }

    /// The service answered (whatever the answer).
    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// The service could not be reached.
    pub fn failure(&self) {
        self.failure_at(Instant::now());
    }

    fn failure_at(&self, now: Instant) {
        let mut state = self.lock();
        let open = State::Open {
            until: now + self.config.open_for,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.config.failures => State::Closed {
                failures: failures + 1,
            },
            State::Closed { .. } | State::HalfOpen { .. } => {
                tracing::warn!(open_for = ?self.config.open_for, "circuit opened");
                open
            }
            State::Open { until } => State::Open { until },
        };
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }

    fn is_open_at(&self, now: Instant) -> bool {
        matches!(*self.lock(), State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(10);

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            open_for: OPEN_FOR,
        })
    }

    /// `t(n)` is `n` tenths of the open period after `t0`: a clock the test controls.
    fn clock() -> impl Fn(u32) -> Instant {
        let t0 = Instant::now();
        move |tenths| t0 + OPEN_FOR / 10 * tenths
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers_after_a_trial() {
        let (b, t) = (breaker(), clock());
        for _ in 0..2 {
            assert!(b.admit_at(t(0)).is_ok());
            b.failure_at(t(0));
        }
        b.success();
        for _ in 0..3 {
            assert!(b.admit_at(t(0)).is_ok());
            b.failure_at(t(0));
        }
        assert!(b.is_open_at(t(0)));
        assert_eq!(b.admit_at(t(4)), Err(OPEN_FOR / 10 * 6), "open: fail fast");
        assert!(b.admit_at(t(10)).is_ok(), "half-open: one trial");
        assert!(!b.is_open_at(t(10)));
        assert!(b.admit_at(t(10)).is_err(), "only one trial at a time");
        b.failure_at(t(11));
        assert!(b.admit_at(t(12)).is_err(), "a failed trial opens it again");
        assert!(b.is_open_at(t(20)));
        assert!(b.admit_at(t(21)).is_ok());
        b.success();
        assert!(
            b.admit_at(t(21)).is_ok() && b.admit_at(t(21)).is_ok(),
            "closed again"
        );
    }

    #[test]
    fn a_trial_that_never_reports_back_is_given_up_after_an_open_period() {
        let (b, t) = (breaker(), clock());
        for _ in 0..3 {
            b.failure_at(t(0));
        }
        assert!(b.admit_at(t(10)).is_ok(), "the trial");
        assert!(b.admit_at(t(15)).is_err(), "still waiting for the trial");
        assert!(
            b.admit_at(t(21)).is_ok(),
            "a new trial once the first is overdue"
        );
    }

    #[test]
    fn failures_while_open_do_not_extend_the_open_period() {
        let (b, t) = (breaker(), clock());
        for _ in 0..3 {
            b.failure_at(t(0));
        }
        b.failure_at(t(5));
        assert!(b.admit_at(t(10)).is_ok());
    }
}
