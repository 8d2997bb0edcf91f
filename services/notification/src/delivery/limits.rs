//! How many messages one recipient may get: a token bucket per address, so the mesh
//! cannot be used to bomb a third party's inbox or phone.

/// How many messages each recipient may get: a token bucket per address.
pub struct RecipientLimits {
    limiter: governor::DefaultKeyedRateLimiter<String>,
}

impl RecipientLimits {
    /// `rate` per recipient, all of it at once at most.
    pub fn new(rate: weft_kit::rate::Rate) -> Self {
        Self {
            limiter: governor::DefaultKeyedRateLimiter::keyed(rate.quota(rate.count.get())),
        }
    }

    /// Counts one message to `recipient`; `false` when it is over its limit.
    pub fn allow(&self, recipient: &str) -> bool {
        let key = recipient.trim().to_lowercase();
        let ok = self.limiter.check_key(&key).is_ok();
        if self.limiter.len() > 100_000 {
            self.limiter.retain_recent();
        }
        ok
    }
}
