//! The gateway's edge: one named stack of layers that every request passes, whether
//! it is transcoded, one of the gateway's own pages, or matches nothing.
//!
//! Outermost first ([`around`]):
//! 1. [`route`]: matches the request once, against the gateway's own pages and then
//!    the route table, and puts the [`Edge`] it found into the request.
//! 2. [`observe`]: the request id, the trace span (a child of the caller's
//!    `traceparent`, named after the route template), and the metrics by route and
//!    status; every response carries `x-request-id`.
//! 3. [`limit_rate`]: the client's rate, and the sign-up and login rate; unknown paths
//!    count too (scanners), health checks do not.
//! 4. [`authenticate`]: an access token for every RPC that is not public.
//! 5. [`limit_body`]: the body's size, before any of it is read.
//!
//! Inside them, [`crate::proxy`] transcodes and calls the service, and the pages answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, Request, header};
use tower::ServiceBuilder;
use tracing::Instrument as _;

use crate::error::GatewayError;
use crate::policy;
use crate::routes::{Binding, Routed};
use crate::state::Gateway;
use crate::template::Bindings;

/// The gateway's own pages, which answer GET only.
pub const PAGES: &[&str] = &["/openapi.json", "/", "/dashboard", "/verify"];

/// The gateway's liveness page, exempt from rate limits.
pub const HEALTH: &str = "/healthz";

/// The label of every request that matched no route.
static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));

/// What [`route`] found for a request.
#[derive(Clone)]
pub enum Target {
    /// A transcoded route: its binding and the values its path variables took.
    Rpc(Arc<Binding>, Bindings),
    /// One of the gateway's own pages.
    Page,
    /// The health page.
    Health,
    /// The path exists, but not for this method; the methods that exist.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
    /// The path could not be read (bad percent-encoding); why.
    BadPath(String),
}

/// The edge's findings about one request, in its extensions.
#[derive(Clone)]
pub struct Edge {
    /// What the request is for.
    pub target: Target,
    /// The client, as the trusted proxy header or the peer names it.
    pub client: IpAddr,
    /// The route label: `POST /v1/users`, `GET /dashboard`, or `unmatched`. A template,
    /// never the raw path, so metric series stay bounded.
    pub label: Arc<str>,
    /// The request id, the caller's when it is well-formed, else a new one.
    pub request_id: String,
}

impl Edge {
    /// The RPC's full name, when the request is for one.
    pub fn rpc(&self) -> Option<&str> {
        match &self.target {
            Target::Rpc(binding, _) => Some(binding.rpc.full_name()),
            _ => None,
        }
    }
}

/// `router` inside the edge stack, outermost first: route, observe, rate limit,
/// authenticate, body limit. The stack covers every route and the fallback.
pub fn around(router: axum::Router, gw: &Arc<Gateway>) -> axum::Router {
    router.layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(gw.clone(), route))
            .layer(axum::middleware::from_fn(observe))
            .layer(from_fn_with_state(gw.clone(), limit_rate))
            .layer(from_fn_with_state(gw.clone(), authenticate))
            .layer(from_fn_with_state(gw.clone(), limit_body)),
    )
}

/// Matches the request once and records the [`Edge`].
pub async fn route(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let get = request.method() == Method::GET;
    let unmatched = || Arc::clone(&UNMATCHED);
    let page_label = || {
        // The pages answer GET only (anything else is a 405), so the label stays
        // bounded whatever method a client makes up.
        if get {
            format!("GET {path}").into()
        } else {
            unmatched()
        }
    };
    let (target, label) = if path == HEALTH {
        (Target::Health, page_label())
    } else if PAGES.contains(&path) {
        (Target::Page, page_label())
    } else {
        match gw.router.route(request.method(), path) {
            Ok(Routed::Found(binding, vars)) => {
                let label = Arc::clone(binding.label());
                (Target::Rpc(binding, vars), label)
            }
            Ok(Routed::MethodNotAllowed(allowed)) => {
                (Target::MethodNotAllowed(allowed), unmatched())
            }
            Ok(Routed::NotFound) => (Target::NotFound, unmatched()),
            Err(e) => (Target::BadPath(e.to_string()), unmatched()),
        }
    };
    let edge = Edge {
        target,
        client: policy::client_ip(request.headers(), peer, gw.client_ip_header.as_deref()),
        label,
        request_id: policy::request_id(request.headers()),
    };
    request.extensions_mut().insert(edge);
    next.run(request).await
}

/// The edge recorded by [`route`]; a request that did not pass it is a bug of the
/// stack's assembly, answered as an internal error.
fn edge_of(request: &Request<Body>) -> Result<&Edge, GatewayError> {
    request
        .extensions()
        .get::<Edge>()
        .ok_or_else(|| GatewayError::Internal("the request was not routed".into()))
}

/// The request's span, metrics and `x-request-id`.
pub async fn observe(request: Request<Body>, next: Next) -> Response {
    let started = Instant::now();
    let Ok((label, request_id)) =
        edge_of(&request).map(|edge| (Arc::clone(&edge.label), edge.request_id.clone()))
    else {
        return next.run(request).await;
    };
    let span = tracing::info_span!(
        "http",
        otel.kind = "server",
        method = %request.method(),
        route = %label,
        status = tracing::field::Empty,
        %request_id,
    );
    weft_kit::telemetry::set_parent_from(
        &span,
        &weft_kit::telemetry::HeaderCarrier(request.headers()),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    // Named in traces after the route (`POST /v1/users`).
    weft_kit::telemetry::rename(&span, label.to_string());
    span.record("status", response.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let labels = [
        ("route", label),
        ("status", Arc::from(response.status().as_str())),
    ];
    metrics::counter!("gateway_requests_total", &labels).increment(1);
    metrics::histogram!("gateway_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The client's rates: every request but a health check counts.
pub async fn limit_rate(
    State(gw): State<Arc<Gateway>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let checked = edge_of(&request).and_then(|edge| match edge.target {
        Target::Health => Ok(()),
        _ => gw.limits.check(edge.client, edge.rpc()),
    });
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// An access token for every RPC that is not public. The services verify it again;
/// the edge turns a missing or bad one away before any body is read.
pub async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let checked = edge_of(&request).and_then(|edge| match edge.rpc() {
        Some(rpc) if !policy::PUBLIC_RPCS.contains(&rpc) => {
            policy::authenticate(&gw.verifier, request.headers())
        }
        _ => Ok(()),
    });
    match checked {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// A body declared larger than the limit is refused at once; one that turns out
/// larger fails when it is read past the limit.
pub async fn limit_body(
    State(gw): State<Arc<Gateway>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let limit = gw.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return GatewayError::BodyTooLarge { limit }.into_response();
    }
    let (parts, body) = request.into_parts();
    let body = Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}
