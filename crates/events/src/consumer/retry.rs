//! Waiting between attempts: jittered exponential backoff, cut short by shutdown.

use std::time::Duration;

use rand::Rng as _;
use tokio_util::sync::CancellationToken;

/// Exponential backoff with jitter: about 100 ms × 2^(attempt-1), capped at 30 s, each
/// wait drawn between half and all of that.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let ceiling = (100u64 << exp).min(30_000);
    let millis = rand::rng().random_range(ceiling / 2..=ceiling);
    Duration::from_millis(millis)
}

/// Sleeps for [`backoff`]`(attempt)`; `false` when `shutdown` came first.
pub async fn pause(attempt: u32, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(backoff(attempt)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..40 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(30), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{attempt}: {d:?}");
        }
        assert!(
            backoff(10) >= Duration::from_secs(15),
            "the cap is reached by attempt 10"
        );
    }
}
