//! The tower layers every weft gRPC server runs, composed in [`crate::grpc`]:
//! [`RpcMetricsLayer`] (duration by method and code), [`ShedLayer`] (bounded
//! concurrency; excess is refused at once, never queued) and [`DeadlineLayer`] (the
//! client's `grpc-timeout`, capped by the server's own limit, answered with
//! `DEADLINE_EXCEEDED`).
//!
//! Written here rather than taken from tower because the stock layers answer with
//! transport errors that tonic turns into `CANCELLED` or a per-connection message; a
//! gRPC client deserves `DEADLINE_EXCEEDED` and `RESOURCE_EXHAUSTED`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::Status;
use tower::{Layer, Service};

use crate::rolling::RollingRpcs;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Paths never shed nor timed: health checks must answer under load.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// Parses a `grpc-timeout` header value (`1-8 digits` + `H|M|S|m|u|n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Ends an RPC with `DEADLINE_EXCEEDED` when the shorter of the client's
/// `grpc-timeout` and the server's limit runs out before the response starts.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    /// RPCs run at most `limit`.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let client = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let limit = client.map_or(self.limit, |c| c.min(self.limit));
        let exempt = is_exempt(req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            if exempt {
                return fut.await;
            }
            match tokio::time::timeout(limit, fut).await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "deadline of {} ms exceeded",
                    limit.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

/// Serves at most `max` RPCs at once and refuses the rest at once with
/// `RESOURCE_EXHAUSTED`, so an overloaded server fails fast instead of queueing.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl ShedLayer {
    /// At most `max` RPCs in flight.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// The service of [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Shed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if is_exempt(req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::counter!("rpc_server_admitted_total").increment(1);
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let result = fut.await;
                    drop(permit);
                    result
                })
            }
            Err(_) => {
                metrics::counter!("rpc_server_shed_total").increment(1);
                Box::pin(async {
                    Ok(
                        Status::resource_exhausted("server is overloaded; retry with backoff")
                            .into_http(),
                    )
                })
            }
        }
    }
}

/// Records `rpc_server_duration_seconds{method,code}` for every RPC.
///
/// The code is read from the response headers: tonic sends every error of a unary
/// RPC as a trailers-only response, so headers carry `grpc-status`; a response that
/// starts without it is counted as `OK`. For streaming RPCs the duration is the time
/// to the first response headers.
///
/// With [`Self::recording`], each RPC of the contracts is also recorded in a
/// [`RollingRpcs`]: the last minute, for the operations view.
#[derive(Debug, Clone)]
pub struct RpcMetricsLayer {
    known: Arc<HashSet<String>>,
    rolling: Option<Arc<RollingRpcs>>,
}

impl RpcMetricsLayer {
    /// Labels RPCs by the methods of the encoded `FileDescriptorSet` `contracts`, and
    /// of health and reflection; any other path is `unknown`, so that requests to
    /// made-up paths cannot create metric series without end.
    pub fn new(contracts: &[u8]) -> Result<Self, prost::DecodeError> {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(contracts)?;
        let mut known: HashSet<String> = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let service = service.name();
                    let method = method.name();
                    known.insert(if package.is_empty() {
                        format!("/{service}/{method}")
                    } else {
                        format!("/{package}.{service}/{method}")
                    });
                }
            }
        }
        Ok(Self {
            known: Arc::new(known),
            rolling: None,
        })
    }

    /// Records the RPCs of the contracts in `rolling` too.
    pub fn recording(mut self, rolling: Arc<RollingRpcs>) -> Self {
        self.rolling = Some(rolling);
        self
    }

    /// The `method` label of an RPC: its path when it names a known method, else
    /// `unknown`.
    pub fn label(&self, path: &str) -> String {
        if self.known.contains(path) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        }
    }
}

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            labels: self.clone(),
        }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
    labels: RpcMetricsLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = self.labels.label(req.uri().path());
        // Health checks and reflection are the platform's, not the service's work.
        let rolling = match &self.labels.rolling {
            Some(r) if method.starts_with("/weft.") => Some(r.clone()),
            _ => None,
        };
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            let elapsed = start.elapsed();
            if let Some(rolling) = rolling {
                rolling.record(elapsed, code);
            }
            metrics::histogram!(
                "rpc_server_duration_seconds",
                "method" => method,
                "code" => format!("{code:?}")
            )
            .record(elapsed.as_secs_f64());
            result
        })
    }
}

/// The span of one incoming RPC, a child of the caller's trace context.
pub fn rpc_span<B>(req: &Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        // The operation's name in a trace viewer: `weft.user.v1.UserService/SignUp`.
        otel.name = %req.uri().path().trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %req.uri().path(),
    );
    crate::telemetry::set_parent_from(&span, &crate::telemetry::HeaderCarrier(req.headers()));
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_parses_every_unit() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
    }

    #[test]
    fn rpc_metrics_label_the_contracts_methods_and_nothing_else() {
        let labels = RpcMetricsLayer::new(weft_proto::DESCRIPTOR_SET).unwrap();
        for known in [
            "/weft.user.v1.UserService/SignUp",
            "/weft.order.v1.OrderService/CreateOrder",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(labels.label(known), known);
        }
        for made_up in ["/weft.user.v1.UserService/Nope", "/x/y", "", "/"] {
            assert_eq!(labels.label(made_up), "unknown", "{made_up:?}");
        }
    }

    #[tokio::test]
    async fn the_contracts_rpcs_are_recorded_in_the_last_minute() {
        use tower::ServiceExt as _;
        let rolling = Arc::new(RollingRpcs::new());
        let layer = RpcMetricsLayer::new(weft_proto::DESCRIPTOR_SET)
            .unwrap()
            .recording(rolling.clone());
        // Answers with the grpc-status the request's `x-code` header names.
        let inner = tower::service_fn(|req: Request<()>| async move {
            let mut resp = Response::new(());
            if let Some(code) = req.headers().get("x-code").cloned() {
                resp.headers_mut().insert("grpc-status", code);
            }
            Ok::<_, std::convert::Infallible>(resp)
        });
        let service = layer.layer(inner);
        for (path, code) in [
            ("/weft.order.v1.OrderService/GetOrder", None),
            ("/weft.order.v1.OrderService/GetOrder", Some("5")),
            ("/weft.order.v1.OrderService/CreateOrder", Some("13")),
            ("/grpc.health.v1.Health/Check", None),
            ("/made/up", None),
        ] {
            let mut req = Request::builder().uri(path);
            if let Some(code) = code {
                req = req.header("x-code", code);
            }
            service
                .clone()
                .oneshot(req.body(()).unwrap())
                .await
                .unwrap();
        }
        let m = rolling.last_minute();
        // NOT_FOUND is the caller's; INTERNAL the service's. Health checks and
        // unknown paths are not the service's RPCs.
        assert_eq!((m.calls, m.faults), (3, 1), "{m:?}");
        assert!(m.p99_ms > 0.0 && m.p99_ms < 1000.0, "{m:?}");
    }

    #[test]
    fn contracts_that_do_not_decode_are_refused() {
        assert!(RpcMetricsLayer::new(b"\xff\xff not a descriptor set").is_err());
    }

    #[test]
    fn grpc_timeout_rejects_garbage() {
        for bad in ["", "S", "10", "123456789S", "-1S", "1.5S", "10x", "1 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
