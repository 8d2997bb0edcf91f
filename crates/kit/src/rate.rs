//! Rates written as people write them (`50/s`, `600/min`, `10/h`) and the token
//! bucket quotas they make, for every limiter of weft (the gateway's per-client
//! limits, the notification service's per-recipient limits).

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::Quota;

/// A rate: `count` per `per`, written `50/s`, `600/min`, `10/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many.
    pub count: NonZeroU32,
    /// Per how long.
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a rate like 50/s or 10/min"))?;
        let count = n
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| format!("{n:?} is not a positive whole number"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown rate unit {other:?}; use s, min or h")),
        };
        Ok(Self { count, per })
    }
}

impl Rate {
    /// The quota of this rate with room for `burst` at once (the count when 0).
    pub fn quota(self, burst: u32) -> Quota {
        let period = (self.per / self.count.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(self.count));
        quota.allow_burst(NonZeroU32::new(burst).unwrap_or(self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_units() {
        assert_eq!(
            "50/s".parse::<Rate>().map(|r| r.per),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            "10/h".parse::<Rate>().map(|r| r.per),
            Ok(Duration::from_secs(3600))
        );
        for bad in ["", "5", "0/s", "x/s", "5/week"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
