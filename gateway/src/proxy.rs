//! One routed REST request, past the [`crate::edge`] stack: read and transcode the
//! body, call the service with the allowed metadata and a deadline, and answer with
//! JSON (or a stream). Every failure is a [`GatewayError`] rendered in one place.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use prost::Message as _;
use tonic::codegen::http::uri::PathAndQuery;

use crate::edge::{Edge, Target};
use crate::error::GatewayError;
use crate::policy;
use crate::routes::{Binding, BodyRule};
use crate::state::Gateway;
use crate::stream::{self, Framing};
use crate::transcode;
use crate::upstream::Upstream;

/// The metadata key naming the client a stream is for, which services that sit behind
/// the gateway trust (`--client-ip-header`).
pub const CLIENT_IP: &str = "x-weft-client-ip";

/// The handler of every transcoded route, inside the [`crate::edge`] stack: the
/// request arrives routed, rate-limited and authenticated.
pub async fn handle(State(gw): State<Arc<Gateway>>, request: Request<Body>) -> Response {
    serve(&gw, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve(gw: &Gateway, request: Request<Body>) -> Result<Response, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let edge = parts
        .extensions
        .remove::<Edge>()
        .ok_or_else(|| GatewayError::Internal("the request was not routed".into()))?;
    let (binding, vars) = match edge.target {
        Target::Rpc(binding, vars) => (binding, vars),
        Target::MethodNotAllowed(allowed) => {
            return Err(GatewayError::MethodNotAllowed {
                method: parts.method,
                allowed,
            });
        }
        Target::BadPath(why) => return Err(GatewayError::field("path", why)),
        Target::NotFound | Target::Page | Target::Health => {
            return Err(GatewayError::NotFound {
                method: parts.method,
                path: parts.uri.path().chars().take(256).collect(),
            });
        }
    };
    call(
        gw,
        &binding,
        vars,
        &parts,
        body,
        &edge.request_id,
        edge.client,
    )
    .await
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
    let body = read_body(&parts.headers, body, gw.max_body_bytes, binding).await?;
    let message = transcode::request_message(binding, &vars, parts.uri.query(), &body)?;
    let metadata = policy::metadata(&parts.headers, request_id)?;
    let upstream = gw
        .upstreams
        .get(binding.service())
        .ok_or_else(|| GatewayError::Internal(format!("no upstream for {}", binding.service())))?;
    let path = binding.grpc_path().clone();
    let grpc_request = tonic::Request::from_parts(
        metadata,
        tonic::Extensions::default(),
        Bytes::from(message.encode_to_vec()),
    );

    if binding.streaming() {
        return call_streaming(gw, binding, parts, client, upstream, path, grpc_request).await;
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

/// Opens a server stream for `client` (within the per-client and overall limits)
/// and answers with it.
async fn call_streaming(
    gw: &Gateway,
    binding: &Binding,
    parts: &http::request::Parts,
    client: std::net::IpAddr,
    upstream: &Upstream,
    path: PathAndQuery,
    mut grpc_request: tonic::Request<Bytes>,
) -> Result<Response, GatewayError> {
    // A stream has no deadline unless the client asks for one.
    if parts.headers.contains_key("grpc-timeout") {
        grpc_request.set_timeout(policy::timeout(&parts.headers, Duration::MAX)?);
    }
    let slot =
        gw.client_streams
            .try_open(&client.to_string())
            .ok_or(GatewayError::TooManyStreams {
                max: gw.client_streams.max(),
            })?;
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
    Ok(stream::respond(
        binding.clone(),
        framing,
        response.into_inner(),
        (permit, slot),
        gw.shutdown.clone(),
    ))
}

/// Reads the body (held to `limit` by [`crate::edge::limit_body`]), after checking
/// that it is JSON.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    binding: &Binding,
) -> Result<Bytes, GatewayError> {
    let bytes = body
        .collect()
        .await
        .map_err(|e| {
            if over_limit(&e) {
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

/// Whether a body failed because it grew past the edge's limit.
fn over_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
