//! Fault flags an operator turns on and off at runtime (`weft fault set
//! payment-failure=0.2`, `weft fault clear`), to watch the mesh cope: a JSON object in
//! `<data dir>/faults.json` that every service of the mesh reads again when it
//! changes (checked at most twice a second, where a flag is consulted). No file, or
//! an unreadable one, means no faults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The flags, their values and what they do.
pub const FLAGS: [(&str, &str, &str); 4] = [
    (
        "payment-failure",
        "a probability 0–1",
        "that a charge fails as if the payment provider were down (PayOrder UNAVAILABLE)",
    ),
    (
        "slow-consumer",
        "milliseconds",
        "added before each record a consumer applies",
    ),
    (
        "notification-down",
        "1",
        "every email and text message fails transiently (retried with backoff)",
    ),
    (
        "consumer-pause",
        "a consumer group, e.g. weft-analytics",
        "that stops fetching until the flag is cleared",
    ),
];

/// The file of the flags in a data dir.
pub fn file_in(data_dir: &Path) -> PathBuf {
    data_dir.join("faults.json")
}

/// What is wrong with `name=value`, or `None`.
pub fn problem(name: &str, value: &str) -> Option<String> {
    let ok = match name {
        "payment-failure" => value.parse::<f64>().is_ok_and(|p| (0.0..=1.0).contains(&p)),
        "slow-consumer" => value.parse::<u64>().is_ok_and(|ms| ms <= 60_000),
        "notification-down" => value == "1",
        "consumer-pause" => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => {
            return Some(format!(
                "unknown fault {name:?}; the faults are {}",
                FLAGS.map(|(n, _, _)| n).join(", ")
            ));
        }
    };
    (!ok).then(|| {
        let (_, wants, _) = FLAGS
            .iter()
            .find(|(n, _, _)| *n == name)
            .copied()
            .unwrap_or_default();
        format!("{name} takes {wants}, not {value:?}")
    })
}

/// The flags set in `data_dir` now.
pub fn read(data_dir: &Path) -> BTreeMap<String, String> {
    read_file(&file_in(data_dir))
}

fn read_file(file: &Path) -> BTreeMap<String, String> {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Replaces the flags of `data_dir` (written atomically: a file renamed into place).
pub fn write(data_dir: &Path, flags: &BTreeMap<String, String>) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join("faults.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(flags).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, file_in(data_dir))
}

struct Watched {
    file: PathBuf,
    checked: Instant,
    modified: Option<SystemTime>,
    flags: BTreeMap<String, String>,
}

static WATCHED: OnceLock<Mutex<Watched>> = OnceLock::new();

/// Makes this process follow the flags of `data_dir` (once, at start-up).
pub fn follow(data_dir: &Path) {
    let file = file_in(data_dir);
    let flags = read_file(&file);
    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    let _ = WATCHED.set(Mutex::new(Watched {
        file,
        checked: Instant::now(),
        modified,
        flags,
    }));
}

/// The value of flag `name`, if it is on.
pub fn get(name: &str) -> Option<String> {
    let watched = WATCHED.get()?;
    let mut w = watched.lock().unwrap_or_else(|e| e.into_inner());
    if w.checked.elapsed() >= Duration::from_millis(500) {
        w.checked = Instant::now();
        let modified = std::fs::metadata(&w.file).and_then(|m| m.modified()).ok();
        if modified != w.modified {
            w.modified = modified;
            w.flags = read_file(&w.file);
            if !w.flags.is_empty() {
                tracing::warn!(flags = ?w.flags, "fault flags are on");
            }
        }
    }
    w.flags.get(name).cloned()
}

/// Whether an event with the probability in flag `name` happens this time.
pub fn chance(name: &str) -> bool {
    get(name)
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(|p| p > 0.0 && (p >= 1.0 || coin() < p))
}

/// The duration in milliseconds of flag `name`.
pub fn millis(name: &str) -> Option<Duration> {
    get(name)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// A number in [0, 1) from the clock and a counter: good enough to pick which calls
/// fail, without a random number generator in the kit.
fn coin() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = N.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ u64::from(nanos);
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_flag() {
        assert_eq!(problem("payment-failure", "0.2"), None);
        assert!(problem("payment-failure", "2").is_some());
        assert!(problem("slow-consumer", "abc").is_some());
        assert_eq!(problem("notification-down", "1"), None);
        assert!(problem("consumer-pause", "a b").is_some());
        assert!(problem("disk-full", "1").unwrap().contains("unknown fault"));
    }

    #[test]
    fn the_coin_is_fair_enough() {
        let heads = (0..10_000).filter(|_| coin() < 0.2).count();
        assert!((1_500..2_500).contains(&heads), "{heads}");
    }
}
