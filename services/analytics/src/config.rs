//! Who the analytics service is ([`IDENTITY`]) and its settings: flags or environment
//! variables, with defaults that run it in the embedded mesh.

use std::time::Duration;

use clap::Parser;

/// Who the analytics service is: its names, health service and event version.
pub const IDENTITY: weft_kit::host::Identity = weft_kit::host::Identity {
    name: "analytics",
    service: "weft.analytics.v1.AnalyticsService",
    version: env!("CARGO_PKG_VERSION"),
    ports: weft_kit::host::Ports::new(5054, 9104),
};

/// The analytics service.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "weft-analytics",
    version,
    about = "weft analytics service: exact projections of every event, and a metric stream"
)]
pub struct Config {
    /// Data, server limits, Kafka, pruning and telemetry.
    #[command(flatten)]
    pub common: weft_events::ServiceArgs,
    /// Token keys.
    #[command(flatten)]
    pub jwks: weft_auth::JwksArgs,
    /// Name under which the inbox and offsets are kept.
    #[arg(long, env = "WEFT_CONSUMER_GROUP", default_value = "weft-analytics")]
    pub consumer_group: String,
    /// Consumer behaviour shared by every consuming service.
    #[command(flatten)]
    pub consumer: weft_events::consumer::offsets::ConsumerArgs,
    /// `StreamMetrics` streams one client may hold open at once (a signed-in user, or
    /// an address for anonymous callers); more are refused with `RESOURCE_EXHAUSTED`.
    #[arg(long, env = "WEFT_MAX_STREAMS_PER_CLIENT", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_client: u32,
    /// A metadata key naming the client's address, set by what sits in front (the
    /// gateway sends `x-weft-client-ip`; Envoy can set it from the peer). Only set it
    /// where clients cannot reach the service without passing that proxy. Without
    /// it, the peer address is the client.
    #[arg(long, env = "WEFT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// How late an event (by its `ce_time`) may arrive and still count in its
    /// one-minute and one-hour windows; a later one is counted as late there. At
    /// most 1h.
    #[arg(long, env = "WEFT_WINDOW_LATENESS", default_value = "5m",
          value_parser = |t: &str| within(t, Duration::ZERO, HOUR))]
    pub window_lateness: Duration,
    /// How long one-minute windows are kept (by window start). At least 2h.
    #[arg(long, env = "WEFT_MINUTE_WINDOW_RETENTION", default_value = "2d",
          value_parser = |t: &str| within(t, 2 * HOUR, Duration::MAX))]
    pub minute_window_retention: Duration,
    /// How long one-hour windows are kept (by window start). At least 2d.
    #[arg(long, env = "WEFT_HOUR_WINDOW_RETENTION", default_value = "90d",
          value_parser = |t: &str| within(t, 48 * HOUR, Duration::MAX))]
    pub hour_window_retention: Duration,
}

const HOUR: Duration = Duration::from_secs(3_600);

/// A duration from `min` to `max`: the window flags are bounded so that a window is
/// pruned only well after it closed.
fn within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < min {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(min)
        ));
    }
    if d > max {
        return Err(format!(
            "must be at most {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(flags: &[&str]) -> Result<Config, String> {
        Config::try_parse_from(std::iter::once("weft-analytics").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn window_flags_have_defaults_and_bounds() {
        let c = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.window_lateness, Duration::from_secs(300));
        assert_eq!(c.minute_window_retention, 48 * HOUR);
        assert_eq!(c.hour_window_retention, 90 * 24 * HOUR);
        let c = parse(&["--window-lateness", "0s", "--minute-window-retention", "2h"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.window_lateness, c.minute_window_retention),
            (Duration::ZERO, 2 * HOUR)
        );
        for (flags, says) in [
            (["--window-lateness", "61m"], "at most 1h"),
            (["--window-lateness", "soon"], "soon"),
            (["--minute-window-retention", "1h"], "at least 2h"),
            (["--hour-window-retention", "1day"], "at least 2days"),
        ] {
            let err = parse(&flags).expect_err(&format!("{flags:?} is refused"));
            assert!(err.contains(says), "{flags:?}: {err}");
        }
    }
}
