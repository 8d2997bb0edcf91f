//! The launcher's restart policy. A child that exits unexpectedly is started again
//! after a pause that grows with its recent crashes (250 ms, doubling up to 4 s).
//! Crashes count within a sliding window (`--restart-window`, 10 min): a child that
//! crashes more than `--max-restarts` (5) times in one window is marked failed, and is
//! tried again only every `--failed-retry` (60 s) while the rest of the mesh goes on
//! serving. Crashes older than the window are forgotten, so occasional crashes over a
//! long life never use the budget up. A child whose absence stalls everyone (the
//! embedded broker) is started again after the first pause every time
//! ([`Restarts::without_backoff`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// The limits of the policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Restarts allowed within one window before the child is marked failed.
    pub max_restarts: u32,
    /// How far back crashes count.
    pub window: Duration,
    /// How often a failed child is tried again.
    pub failed_retry: Duration,
}

/// What to do about a child that just exited unexpectedly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Start it again after `pause`; this is restart `count` of the window.
    Restart {
        /// How long to wait first.
        pause: Duration,
        /// Its crashes within the window, this one included.
        count: u32,
    },
    /// It crashed more often than the window allows: marked failed, tried again
    /// after `retry`.
    Failed {
        /// How long to wait before trying again.
        retry: Duration,
        /// Its crashes within the window, this one included.
        count: u32,
    },
}

impl Next {
    /// How long to wait before starting the child again.
    pub fn wait(self) -> Duration {
        match self {
            Self::Restart { pause, .. } => pause,
            Self::Failed { retry, .. } => retry,
        }
    }
}

/// Each child's recent crashes.
#[derive(Debug)]
pub struct Restarts {
    policy: Policy,
    crashes: HashMap<String, VecDeque<Instant>>,
    flat: HashSet<String>,
}

impl Restarts {
    /// No crash yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            crashes: HashMap::new(),
            flat: HashSet::new(),
        }
    }

    /// `name` is started again after the first pause (250 ms) however often it
    /// crashed; its crashes still count against the window.
    pub fn without_backoff(mut self, name: &str) -> Self {
        self.flat.insert(name.to_owned());
        self
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Records that `name` exited unexpectedly at `now`, and says what to do.
    pub fn crashed(&mut self, name: &str, now: Instant) -> Next {
        let crashes = self.crashes.entry(name.to_owned()).or_default();
        while crashes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.policy.window)
        {
            crashes.pop_front();
        }
        crashes.push_back(now);
        let count = u32::try_from(crashes.len()).unwrap_or(u32::MAX);
        if count > self.policy.max_restarts {
            Next::Failed {
                retry: self.policy.failed_retry,
                count,
            }
        } else {
            let doublings = if self.flat.contains(name) {
                0
            } else {
                (count - 1).min(4)
            };
            Next::Restart {
                pause: Duration::from_millis(250 << doublings),
                count,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_restarts: 5,
        window: Duration::from_secs(600),
        failed_retry: Duration::from_secs(60),
    };

    #[test]
    fn crashes_in_one_window_back_off_then_mark_the_child_failed() {
        let mut r = Restarts::new(POLICY);
        let t0 = Instant::now();
        let pauses: Vec<Next> = (0..7)
            .map(|i| r.crashed("order", t0 + Duration::from_secs(i)))
            .collect();
        let ms = |m| Duration::from_millis(m);
        assert_eq!(
            pauses,
            vec![
                Next::Restart {
                    pause: ms(250),
                    count: 1
                },
                Next::Restart {
                    pause: ms(500),
                    count: 2
                },
                Next::Restart {
                    pause: ms(1000),
                    count: 3
                },
                Next::Restart {
                    pause: ms(2000),
                    count: 4
                },
                Next::Restart {
                    pause: ms(4000),
                    count: 5
                },
                Next::Failed {
                    retry: Duration::from_secs(60),
                    count: 6
                },
                Next::Failed {
                    retry: Duration::from_secs(60),
                    count: 7
                },
            ]
        );
        // Another child has a budget of its own.
        assert_eq!(
            r.crashed("user", t0 + Duration::from_secs(7)),
            Next::Restart {
                pause: ms(250),
                count: 1
            }
        );
    }

    #[test]
    fn crashes_older_than_the_window_are_forgotten() {
        let mut r = Restarts::new(POLICY);
        let t0 = Instant::now();
        // Six crashes an hour apart: each is the only one in its window.
        for hour in 0..6 {
            assert_eq!(
                r.crashed("order", t0 + Duration::from_secs(3600 * hour)),
                Next::Restart {
                    pause: Duration::from_millis(250),
                    count: 1
                },
                "crash {hour}"
            );
        }
    }

    #[test]
    fn a_child_without_backoff_comes_back_at_once_and_still_counts() {
        let mut r = Restarts::new(POLICY).without_backoff("broker");
        let t0 = Instant::now();
        let next: Vec<Next> = (0..6)
            .map(|i| r.crashed("broker", t0 + Duration::from_secs(i)))
            .collect();
        for (i, n) in next[..5].iter().enumerate() {
            assert_eq!(
                *n,
                Next::Restart {
                    pause: Duration::from_millis(250),
                    count: i as u32 + 1
                }
            );
        }
        assert_eq!(
            next[5],
            Next::Failed {
                retry: POLICY.failed_retry,
                count: 6
            }
        );
        // Others still back off.
        r.crashed("order", t0);
        assert_eq!(r.crashed("order", t0).wait(), Duration::from_millis(500));
    }
}
