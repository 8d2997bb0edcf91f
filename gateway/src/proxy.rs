//! One REST request, end to end: rate limit, route, authenticate, read and transcode
//! the body, call the service with the allowed metadata and a deadline, and answer
//! with JSON (or a stream). Every failure is a [`GatewayError`] rendered in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::uri::PathAndQuery;
use tracing::Instrument as _;
use weft_auth::Verifier;

use crate::error::GatewayError;
use crate::policy::{self, RateLimits};
use crate::routes::{Binding, BodyRule, Routed, Router};
use crate::stream::{self, Framing};
use crate::transcode;
use crate::upstream::Upstreams;

/// The metadata key naming the client a stream is for, which services that sit behind
/// the gateway trust (`--client-ip-header`).
pub const CLIENT_IP: &str = "x-weft-client-ip";

/// Everything a request needs, shared by all requests.
pub struct Gateway {
    /// The route table.
    pub router: Router,
    /// The services.
    pub upstreams: Upstreams,
    /// Access-token verification.
    pub verifier: Arc<Verifier>,
    /// Per-client rate limits.
    pub limits: RateLimits,
    /// Open streams.
    pub streams: Arc<Semaphore>,
    /// Open streams per client.
    pub client_streams: weft_kit::slots::PerClient,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest unary request.
    pub request_timeout: Duration,
    /// Header naming the client address, set by a trusted proxy.
    pub client_ip_header: Option<String>,
    /// Ends open streams at shutdown.
    pub shutdown: CancellationToken,
}

/// The handler of every transcoded route.
pub async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let started = Instant::now();
    let request_id = policy::request_id(request.headers());
    let span = tracing::info_span!(
        "http",
        otel.kind = "server",
        method = %request.method(),
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        %request_id,
    );
    weft_kit::telemetry::set_parent_from(
        &span,
        &weft_kit::telemetry::HeaderCarrier(request.headers()),
    );
    let (route, mut response) = async {
        let (route, result) = serve(&gw, peer, request, &request_id).await;
        (route, result.unwrap_or_else(IntoResponse::into_response))
    }
    .instrument(span.clone())
    .await;
    span.record("route", route.as_str());
    // Named in traces after the route once it is known (`POST /v1/users`).
    weft_kit::telemetry::rename(&span, route.clone());
    span.record("status", response.status().as_u16());
    finish(&mut response, &request_id, route, started);
    response
}

/// Around the gateway's own pages (OpenAPI, dashboard, health): the same request id
/// and metrics as transcoded routes, and, where `limited`, the client's rate.
pub async fn own_page(
    State((gw, limited)): State<(Arc<Gateway>, bool)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let request_id = policy::request_id(request.headers());
    // The pages are a fixed few paths and answer GET only (anything else is a 405),
    // so the label stays bounded whatever method a client makes up.
    let route = if request.method() == Method::GET {
        format!("GET {}", request.uri().path())
    } else {
        "unmatched".to_owned()
    };
    let client = policy::client_ip(request.headers(), peer, gw.client_ip_header.as_deref());
    let mut response = match limited.then(|| gw.limits.check(client, None)) {
        Some(Err(over)) => over.into_response(),
        _ => next.run(request).await,
    };
    finish(&mut response, &request_id, route, started);
    response
}

/// Every response carries the request id and is counted by route and status.
fn finish(response: &mut Response, request_id: &str, route: String, started: Instant) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    let labels = [
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("gateway_requests_total", &labels).increment(1);
    metrics::histogram!("gateway_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
}

/// Serves one request; also returns the route label for metrics (the template, never
/// the raw path, so labels stay bounded).
async fn serve(
    gw: &Gateway,
    peer: SocketAddr,
    request: Request<Body>,
    request_id: &str,
) -> (String, Result<Response, GatewayError>) {
    let (parts, body) = request.into_parts();
    let routed = gw.router.route(&parts.method, parts.uri.path());
    // Every request counts against its client's rate, unknown paths too (scanners).
    let client = policy::client_ip(&parts.headers, peer, gw.client_ip_header.as_deref());
    let rpc = match &routed {
        Ok(Routed::Found(b, _)) => Some(b.rpc.full_name()),
        _ => None,
    };
    if let Err(limited) = gw.limits.check(client, rpc) {
        let label = match &routed {
            Ok(Routed::Found(b, _)) => format!("{} {}", b.method, b.template),
            _ => "unmatched".to_owned(),
        };
        return (label, Err(limited));
    }
    let (binding, vars) = match routed {
        Ok(Routed::Found(b, vars)) => (b, vars),
        Ok(Routed::MethodNotAllowed(allowed)) => {
            return (
                "unmatched".into(),
                Err(GatewayError::MethodNotAllowed {
                    method: parts.method,
                    allowed,
                }),
            );
        }
        Ok(Routed::NotFound) => {
            let path = parts.uri.path().chars().take(256).collect();
            return (
                "unmatched".into(),
                Err(GatewayError::NotFound {
                    method: parts.method,
                    path,
                }),
            );
        }
        Err(e) => {
            return (
                "unmatched".into(),
                Err(GatewayError::field("path", e.to_string())),
            );
        }
    };
    let route = format!("{} {}", binding.method, binding.template);
    let result = call(gw, binding, vars, &parts, body, request_id, client).await;
    (route, result)
}

async fn call(
    gw: &Gateway,
    binding: &Binding,
    vars: crate::template::Bindings,
    parts: &http::request::Parts,
    body: Body,
    request_id: &str,
    client: std::net::IpAddr,
) -> Result<Response, GatewayError> {
    let rpc = binding.rpc.full_name();
    if !policy::PUBLIC_RPCS.contains(&rpc) {
        policy::authenticate(&gw.verifier, &parts.headers)?;
    }
    let body = read_body(&parts.headers, body, gw.max_body_bytes, binding).await?;
    let message = transcode::request_message(binding, &vars, parts.uri.query(), &body)?;
    let metadata = policy::metadata(&parts.headers, request_id)?;
    let upstream = gw
        .upstreams
        .get(&binding.service())
        .ok_or_else(|| GatewayError::Internal(format!("no upstream for {}", binding.service())))?;
    let path = PathAndQuery::from_maybe_shared(binding.grpc_path())
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut grpc_request = tonic::Request::from_parts(
        metadata,
        tonic::Extensions::default(),
        Bytes::from(message.encode_to_vec()),
    );

    if binding.streaming() {
        // A stream has no deadline unless the client asks for one.
        if parts.headers.contains_key("grpc-timeout") {
            grpc_request.set_timeout(policy::timeout(&parts.headers, Duration::MAX)?);
        }
        let slot = gw.client_streams.try_open(&client.to_string()).ok_or(
            GatewayError::TooManyStreams {
                max: gw.client_streams.max(),
            },
        )?;
        let permit = gw
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::Overloaded)?;
        // The services see who the stream is for (the gateway is the peer of all).
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(client.to_string()) {
            grpc_request.metadata_mut().insert(CLIENT_IP, v);
        }
        let framing = Framing::from_accept(&parts.headers);
        let response = upstream.server_streaming(path, grpc_request).await?;
        return Ok(stream::respond(
            binding.clone(),
            framing,
            response.into_inner(),
            (permit, slot),
            gw.shutdown.clone(),
        ));
    }

    let deadline = policy::timeout(&parts.headers, gw.request_timeout)?;
    let response = upstream.unary(path, grpc_request, deadline).await?;
    let json = transcode::response_json(binding, response.get_ref())?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json,
    )
        .into_response())
}

/// Reads the body within `limit`, after checking that it is JSON.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    binding: &Binding,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                GatewayError::BodyTooLarge { limit }
            } else {
                GatewayError::BadJson(format!("the body could not be read: {e}"))
            }
        })?
        .to_bytes();
    if !bytes.is_empty() && !matches!(binding.body, BodyRule::None) {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(GatewayError::UnsupportedMediaType(
                content_type.chars().take(100).collect(),
            ));
        }
    }
    Ok(bytes)
}
