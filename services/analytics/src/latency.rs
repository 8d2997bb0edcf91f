//! The latency histogram: log-scale buckets (each 25 % wider than the one before),
//! so a few hundred bytes cover microseconds to days with quantiles within a bucket's
//! width, and counts add exactly (no sampling) under replays and restarts.

/// Growth factor between bucket bounds.
const GROWTH: f64 = 1.25;
/// The last bucket (1.25^120 ms ≈ 13 years) takes everything longer.
pub const MAX_BUCKET: i64 = 120;

/// The bucket of a latency of `micros`: bucket 0 holds up to 1 ms, bucket `b` holds
/// (1.25^(b-1), 1.25^b] ms.
pub fn bucket(micros: i64) -> i64 {
    let ms = micros.max(0) as f64 / 1000.0;
    if ms <= 1.0 {
        return 0;
    }
    (ms.ln() / GROWTH.ln()).ceil().clamp(0.0, MAX_BUCKET as f64) as i64
}

/// Upper bound of bucket `b`, milliseconds.
fn upper_ms(b: i64) -> f64 {
    GROWTH.powi(b as i32)
}

/// Lower bound of bucket `b`, milliseconds.
fn lower_ms(b: i64) -> f64 {
    if b == 0 { 0.0 } else { upper_ms(b - 1) }
}

/// The `q` quantile (0..=1) of the histogram `buckets` (bucket, count), sorted by
/// bucket, interpolated linearly inside the bucket that holds it and capped at
/// `max_ms`. Zero for an empty histogram.
pub fn quantile(buckets: &[(i64, i64)], q: f64, max_ms: f64) -> f64 {
    let total: i64 = buckets.iter().map(|(_, c)| *c).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut seen = 0i64;
    for (b, count) in buckets {
        if *count <= 0 {
            continue;
        }
        let before = seen as f64;
        seen += count;
        if seen as f64 >= rank {
            let within = (rank - before) / *count as f64;
            let value = lower_ms(*b) + within * (upper_ms(*b) - lower_ms(*b));
            return value.min(max_ms);
        }
    }
    max_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_a_quarter() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(1_250), 1);
        assert_eq!(bucket(1_251), 2);
        assert_eq!(bucket(-5), 0);
        assert_eq!(bucket(i64::MAX), MAX_BUCKET);
    }

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        // 99 samples of 10 ms and one of 1 s. 10 ms falls in the bucket
        // (1.25^10, 1.25^11] = (9.31, 11.64] ms: quantiles are exact to a bucket.
        let mut h = vec![(bucket(10_000), 99), (bucket(1_000_000), 1)];
        h.sort();
        let ten = 9.3..=11.7;
        let p50 = quantile(&h, 0.5, 1000.0);
        assert!(ten.contains(&p50), "{p50}");
        let p99 = quantile(&h, 0.99, 1000.0);
        assert!(ten.contains(&p99), "{p99}");
        assert!(p50 <= p99);
        let p100 = quantile(&h, 1.0, 1000.0);
        assert!((800.0..=1000.0).contains(&p100), "{p100}");
        assert_eq!(quantile(&[], 0.5, 0.0), 0.0);
    }
}
