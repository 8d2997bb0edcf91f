//! How many long-lived things (open streams) one client may hold at once: a counter
//! per key, taken when a stream opens and given back when its [`Slot`] drops. The
//! gateway keys Server-Sent Events streams by client address; the analytics service
//! keys `StreamMetrics` by user, or by address for anonymous callers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open slots per key, at most `max` each.
#[derive(Clone)]
pub struct PerClient {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open slot; dropping it frees it.
pub struct Slot {
    key: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl PerClient {
    /// At most `max` slots per key (at least one).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Arc::default(),
        }
    }

    /// The most slots one key may hold.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for `key`, or `None` when it holds `max` already.
    pub fn try_open(&self, key: &str) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key.to_owned()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot {
            key: key.to_owned(),
            open: self.open.clone(),
        })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_them_back_on_drop() {
        let caps = PerClient::new(2);
        let a = caps.try_open("10.0.0.1");
        let b = caps.try_open("10.0.0.1");
        assert!(a.is_some() && b.is_some());
        assert!(caps.try_open("10.0.0.1").is_none());
        assert!(
            caps.try_open("10.0.0.2").is_some(),
            "other clients unaffected"
        );
        drop(a);
        assert_eq!(caps.held("10.0.0.1"), 1);
        assert!(caps.try_open("10.0.0.1").is_some());
        drop(b);
    }
}
