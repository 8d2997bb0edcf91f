//! Every error the gateway answers with, and the one place it becomes HTTP: a status
//! code and a JSON `google.rpc.Status` body (`code`, `message`, `details` with
//! `@type`). Errors from a service keep their gRPC code, message and details and take
//! the HTTP status of grpc-gateway's table ([`http_status`]); errors of the gateway's
//! own (routing, parsing, policies) name their HTTP status themselves.

use std::sync::LazyLock;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

/// The HTTP status for a gRPC code, as grpc-gateway maps it
/// (`runtime.HTTPStatusFromCode`).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        // grpc-gateway's "client closed request".
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No route has this path.
    #[error("no route for {method} {path}")]
    NotFound {
        /// The method.
        method: Method,
        /// The path.
        path: String,
    },
    /// The path exists for other methods only.
    #[error("{method} is not allowed here; allowed: {}", list(allowed))]
    MethodNotAllowed {
        /// The method asked for.
        method: Method,
        /// The methods the path has.
        allowed: Vec<Method>,
    },
    /// The request does not fit the RPC (path, query, body); one violation per field.
    #[error("{}", violations_message(.0))]
    BadRequest(Vec<weft_kit::status::FieldViolation>),
    /// The body is not JSON, or not JSON of the request's shape.
    #[error("malformed JSON body: {0}")]
    BadJson(String),
    /// The body is larger than allowed.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("unsupported content type {0:?}; send application/json")]
    UnsupportedMediaType(String),
    /// No or a bad access token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Too many requests from this client.
    #[error("too many requests; retry in {}s", retry_secs(*.retry_after))]
    RateLimited {
        /// When a request will be let through again.
        retry_after: Duration,
        /// Which limit, for the details.
        limit: &'static str,
    },
    /// The client has as many streams open as it may.
    #[error("this client has {max} streams open already; close one first")]
    TooManyStreams {
        /// The most one client may hold.
        max: usize,
    },
    /// The gateway is at its concurrency limit.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
    /// The service's circuit is open after repeated failures.
    #[error("the {service} service is unavailable; retry in {}s", retry_secs(*.retry_after))]
    CircuitOpen {
        /// Full name of the gRPC service.
        service: String,
        /// When the circuit lets a trial request through.
        retry_after: Duration,
    },
    /// The request's deadline passed.
    #[error("the request did not complete within {0:?}")]
    Timeout(Duration),
    /// The service answered with an error status.
    #[error("{}", .0.message())]
    Upstream(tonic::Status),
    /// A failure of the gateway itself; the cause is logged, not sent.
    #[error("internal error")]
    Internal(String),
}

fn list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn violations_message(v: &[weft_kit::status::FieldViolation]) -> String {
    weft_kit::status::invalid_argument(v).message().to_owned()
}

fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl GatewayError {
    /// A single bad field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::BadRequest(vec![weft_kit::status::FieldViolation::new(
            field,
            description,
        )])
    }

    /// The HTTP status and the gRPC status (with details) that describe this error.
    pub fn to_status(&self) -> (StatusCode, tonic::Status) {
        let msg = self.to_string();
        match self {
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, tonic::Status::not_found(msg)),
            Self::MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                tonic::Status::unimplemented(msg),
            ),
            Self::BadRequest(v) => (
                StatusCode::BAD_REQUEST,
                weft_kit::status::invalid_argument(v),
            ),
            Self::BadJson(_) => (
                StatusCode::BAD_REQUEST,
                tonic::Status::invalid_argument(msg),
            ),
            Self::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Status::resource_exhausted(msg),
            ),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Status::invalid_argument(msg),
            ),
            Self::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                tonic::Status::unauthenticated(msg),
            ),
            Self::RateLimited { retry_after, limit } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(*retry_after));
                details.add_quota_failure_violation(*limit, "too many requests from this client");
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    tonic::Status::with_error_details(Code::ResourceExhausted, msg, details),
                )
            }
            Self::TooManyStreams { .. } => {
                let mut details = ErrorDetails::new();
                details.add_quota_failure_violation(
                    "streams-per-client",
                    "too many open streams from this client",
                );
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    tonic::Status::with_error_details(Code::ResourceExhausted, msg, details),
                )
            }
            Self::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Status::unavailable(msg),
            ),
            Self::CircuitOpen { retry_after, .. } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(*retry_after));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    tonic::Status::with_error_details(Code::Unavailable, msg, details),
                )
            }
            Self::Timeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                tonic::Status::deadline_exceeded(msg),
            ),
            Self::Upstream(s) => (http_status(s.code()), s.clone()),
            Self::Internal(cause) => {
                let status = weft_kit::status::internal(&std::io::Error::other(cause.clone()));
                (StatusCode::INTERNAL_SERVER_ERROR, status)
            }
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::CircuitOpen { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (http, status) = self.to_status();
        let mut response = (
            http,
            [(header::CONTENT_TYPE, "application/json")],
            status_json(&status),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&retry_secs(after).to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        if let Self::MethodNotAllowed { allowed, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&list(allowed))
        {
            headers.insert(header::ALLOW, v);
        }
        // The unread rest of the body is still on the connection: close it, so the
        // client does not send its next request after those bytes.
        if matches!(self, Self::BodyTooLarge { .. }) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::Unauthenticated(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weft\""),
            );
        }
        response
    }
}

/// The `google.rpc` types (Status and the error details), for rendering details.
static RPC_TYPES: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(tonic_types::pb::FILE_DESCRIPTOR_SET).ok());

/// A gRPC status as a JSON `google.rpc.Status`. Details of types the gateway does not
/// know are dropped (and logged) rather than failing the response.
pub fn status_json(status: &tonic::Status) -> Bytes {
    let fallback = || {
        serde_json::json!({
            "code": status.code() as i32,
            "message": status.message(),
            "details": [],
        })
    };
    let rendered = RPC_TYPES.as_ref().and_then(|pool| {
        let desc = pool.get_message_by_name("google.rpc.Status")?;
        let mut msg = if status.details().is_empty() {
            DynamicMessage::new(desc.clone())
        } else {
            DynamicMessage::decode(desc.clone(), status.details()).ok()?
        };
        // The status line is the truth; details bytes may disagree.
        msg.set_field_by_name("code", prost_reflect::Value::I32(status.code() as i32));
        msg.set_field_by_name(
            "message",
            prost_reflect::Value::String(status.message().to_owned()),
        );
        let options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
        match msg.serialize_with_options(serde_json::value::Serializer, &options) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot render error details; sending without them");
                None
            }
        }
    });
    Bytes::from(
        serde_json::to_vec(&rendered.unwrap_or_else(fallback)).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grpc_gateway_table() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn details_render_with_their_type() {
        let status = weft_kit::status::invalid_argument(&[weft_kit::status::FieldViolation::new(
            "items",
            "must not be empty",
        )]);
        let json: serde_json::Value = serde_json::from_slice(&status_json(&status)).unwrap();
        assert_eq!(json["code"], 3);
        assert_eq!(json["message"], "invalid items: must not be empty");
        assert_eq!(
            json["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(json["details"][0]["fieldViolations"][0]["field"], "items");
    }

    #[test]
    fn a_plain_status_has_empty_details() {
        let json: serde_json::Value =
            serde_json::from_slice(&status_json(&tonic::Status::not_found("no such order")))
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": 5, "message": "no such order", "details": []})
        );
    }
}
