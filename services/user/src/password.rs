//! Password hashing (argon2id, OWASP parameters: 19 MiB, 2 passes) off the async
//! threads, and the per-account limit on failed logins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString, rand_core::OsRng,
};

/// Hashes `password` into a PHC string.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await?
}

/// Whether `password` matches the PHC string `phc`.
pub async fn verify(password: String, phc: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// Counts failed logins per account within a window.
#[derive(Debug)]
pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl LoginLimiter {
    /// At most `max` failures per account within `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `account` is locked.
    pub fn check(&self, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else {
            return Ok(());
        };
        let Some(list) = map.get_mut(account) else {
            return Ok(());
        };
        list.retain(|t| now.duration_since(*t) < self.window);
        if list.len() >= self.max {
            let oldest = list.first().copied().unwrap_or(now);
            return Err(self.window.saturating_sub(now.duration_since(oldest)));
        }
        Ok(())
    }

    /// Records a failed login.
    pub fn failed(&self, account: &str) {
        if let Ok(mut map) = self.failures.lock() {
            if map.len() > 100_000 {
                // Bound memory under a credential-stuffing flood: forget the oldest view.
                map.clear();
            }
            map.entry(account.to_owned())
                .or_default()
                .push(Instant::now());
        }
    }

    /// Forgets failures after a successful login.
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_unlocks_on_success() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
            l.failed("a");
        }
        let retry = l.check("a").unwrap_err();
        assert!(retry > Duration::from_secs(50));
        assert!(l.check("b").is_ok(), "other accounts are unaffected");
        l.succeeded("a");
        assert!(l.check("a").is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash("correct horse 42".into()).await.unwrap_or_default();
        let b = hash("correct horse 42".into()).await.unwrap_or_default();
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "salted");
        assert!(
            verify("correct horse 42".into(), a.clone())
                .await
                .unwrap_or(false)
        );
        assert!(!verify("wrong horse 42".into(), a).await.unwrap_or(true));
    }
}
