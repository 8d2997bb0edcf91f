//! Edge policies, each decided in one place: which routes are public, who the client
//! is, how fast it may call, which headers cross to the services, the request id and
//! the deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;
use governor::clock::{Clock as _, DefaultClock};
use http::HeaderMap;
use weft_auth::Verifier;

use crate::error::GatewayError;

/// RPCs anyone may call without an access token: creating an account, logging in,
/// verifying an email address by its link, the public keys, the catalogue and the
/// dashboard's aggregate metrics and windows (the stream carries the event feed only
/// for a staff token, which is passed on when sent). Every other route needs a valid
/// bearer token at the edge (and the service checks it again).
pub const PUBLIC_RPCS: &[&str] = &[
    "weft.user.v1.UserService.SignUp",
    "weft.user.v1.UserService.Login",
    "weft.user.v1.UserService.VerifyEmail",
    "weft.user.v1.UserService.GetJwks",
    "weft.order.v1.OrderService.ListProducts",
    "weft.order.v1.OrderService.GetProduct",
    "weft.analytics.v1.AnalyticsService.GetMetrics",
    "weft.analytics.v1.AnalyticsService.StreamMetrics",
    "weft.analytics.v1.AnalyticsService.ListWindows",
];

/// RPCs under the stricter per-client rate (credential guessing, account spam).
pub const AUTH_RPCS: &[&str] = &[
    "weft.user.v1.UserService.SignUp",
    "weft.user.v1.UserService.Login",
    "weft.user.v1.UserService.VerifyEmail",
    "weft.user.v1.UserService.VerifyPhone",
    "weft.user.v1.UserService.ResendVerification",
];

pub use weft_kit::rate::Rate;

/// Per-client rate limits: one for every route, a stricter one for sign-up and login.
pub struct RateLimits {
    general: DefaultKeyedRateLimiter<IpAddr>,
    auth: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limits at `rate` (burst `burst`) and `auth_rate` (burst `auth_burst`).
    pub fn new(rate: Rate, burst: u32, auth_rate: Rate, auth_burst: u32) -> Self {
        Self {
            general: DefaultKeyedRateLimiter::keyed(rate.quota(burst)),
            auth: DefaultKeyedRateLimiter::keyed(auth_rate.quota(auth_burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `client`; `RateLimited` when it is over a limit.
    pub fn check(&self, client: IpAddr, rpc: Option<&str>) -> Result<(), GatewayError> {
        let over = |limiter: &DefaultKeyedRateLimiter<IpAddr>, limit| {
            limiter
                .check_key(&client)
                .map_err(|not_until| GatewayError::RateLimited {
                    retry_after: not_until.wait_time_from(self.clock.now()),
                    limit,
                })
        };
        over(&self.general, "requests per client")?;
        if rpc.is_some_and(|r| AUTH_RPCS.contains(&r)) {
            over(&self.auth, "sign-up and login requests per client")?;
        }
        Ok(())
    }

    /// Forgets clients whose buckets are full again, so memory follows the active
    /// clients, not every client ever seen.
    pub fn forget_idle(&self) {
        self.general.retain_recent();
        self.auth.retain_recent();
        self.general.shrink_to_fit();
        self.auth.shrink_to_fit();
    }
}

/// The client's address: from `trusted_header` when a proxy in front sets it (and it
/// parses), else the TCP peer.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted_header: Option<&str>) -> IpAddr {
    trusted_header
        .and_then(|h| headers.get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}

/// The request id: the client's `x-request-id` when it is a sane token (1–128 of
/// `[A-Za-z0-9._:-]`), else a fresh UUID v7.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// Checks the bearer token of a non-public route.
pub fn authenticate(verifier: &Arc<Verifier>, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(GatewayError::Unauthenticated(
            "this route needs an access token (authorization: Bearer …)",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| GatewayError::Unauthenticated("the authorization header is not ASCII"))?;
    verifier
        .verify_bearer(value)
        .map(|_| ())
        .map_err(|e| match e {
            weft_auth::AuthError::Invalid(why) => GatewayError::Unauthenticated(why),
            _ => GatewayError::Unauthenticated("invalid access token"),
        })
}

/// The gRPC metadata of the call: the allow-list only. `authorization` as sent,
/// the trace context of the gateway's own span (child of the caller's; the caller's
/// own when no tracer runs), `baggage` and `tracestate` as sent (bounded to the W3C
/// limit), and the request id. Nothing else the client sent crosses.
pub fn metadata(
    headers: &HeaderMap,
    request_id: &str,
) -> Result<tonic::metadata::MetadataMap, GatewayError> {
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = tonic::metadata::MetadataValue::try_from(v.as_bytes())
            .map_err(|_| GatewayError::Unauthenticated("the authorization header is not ASCII"))?;
        md.insert("authorization", v);
    }
    weft_kit::telemetry::inject_current(&mut weft_kit::telemetry::MetadataInjector(&mut md));
    for name in ["traceparent", "tracestate", "baggage"] {
        if md.contains_key(name) {
            continue;
        }
        let value = headers
            .get(name)
            .filter(|v| v.len() <= 8192)
            .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok());
        if let Some(v) = value {
            md.insert(name, v);
        }
    }
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(request_id) {
        md.insert("x-request-id", v);
    }
    Ok(md)
}

/// The deadline of a request: the client's `grpc-timeout` header (gRPC syntax, e.g.
/// `500m`, `10S`) capped by `max`, or `max`.
pub fn timeout(headers: &HeaderMap, max: Duration) -> Result<Duration, GatewayError> {
    let Some(v) = headers.get("grpc-timeout") else {
        return Ok(max);
    };
    let bad = || {
        GatewayError::field(
            "grpc-timeout",
            "must be 1 to 8 digits and a unit H, M, S, m (ms), u (µs) or n (ns)",
        )
    };
    // The services' own parser (weft-kit), with a zero refused: over REST a deadline
    // that has already passed is a mistake to name, not an RPC to start.
    let d = v
        .to_str()
        .ok()
        .and_then(weft_kit::layers::parse_grpc_timeout)
        .filter(|d| !d.is_zero())
        .ok_or_else(bad)?;
    Ok(d.min(max))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("50/s".parse::<Rate>().unwrap().per, Duration::from_secs(1));
        assert_eq!("10/min".parse::<Rate>().unwrap().count.get(), 10);
        for bad in ["", "0/s", "x/s", "5/day", "5"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn timeouts_parse_and_cap() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            m
        };
        let max = Duration::from_secs(30);
        assert_eq!(timeout(&HeaderMap::new(), max).unwrap(), max);
        assert_eq!(
            timeout(&h("250m"), max).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(timeout(&h("1H"), max).unwrap(), max);
        for bad in ["", "5", "m", "123456789S", "5s", "-1S", "0S", "1.5S"] {
            assert!(timeout(&h(bad), max).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_request_ids_are_replaced() {
        let id = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("x-request-id", v.parse().unwrap());
            request_id(&m)
        };
        assert_eq!(id("abc-123.x:y_z"), "abc-123.x:y_z");
        assert_ne!(id("a b"), "a b");
        assert_ne!(id("<script>"), "<script>");
        assert_ne!(id(&"x".repeat(129)), "x".repeat(129));
    }

    #[test]
    fn the_strict_limit_applies_to_signup_only() {
        let limits = RateLimits::new("1000/s".parse().unwrap(), 1000, "1/h".parse().unwrap(), 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let signup = Some("weft.user.v1.UserService.SignUp");
        assert!(limits.check(ip, signup).is_ok());
        assert!(limits.check(ip, signup).is_ok());
        let Err(GatewayError::RateLimited { retry_after, .. }) = limits.check(ip, signup) else {
            panic!("third sign-up should be limited");
        };
        assert!(retry_after > Duration::from_secs(60));
        assert!(
            limits
                .check(ip, Some("weft.order.v1.OrderService.GetOrder"))
                .is_ok()
        );
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.check(other, signup).is_ok(), "per client");
    }
}
