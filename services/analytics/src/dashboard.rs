//! The live dashboard over HTTP, until the gateway serves it: the page at `/`, and
//! the routes it uses under the same paths the gateway's transcoder gives them
//! (`GET /v1/analytics/metrics`, `GET /v1/analytics/events`,
//! `GET /v1/analytics/metrics:stream` as Server-Sent Events), with proto3 JSON
//! bodies, so the page works unchanged behind either.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt as _;
use prost::Message;
use prost_reflect::DynamicMessage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::AnalyticsApi;

const PAGE: &str = include_str!("../dashboard/index.html");

/// `msg` (of proto type `name`) as proto3 canonical JSON.
pub fn proto_json(msg: &impl Message, name: &str) -> String {
    let Some(desc) = weft_proto::descriptor_pool().get_message_by_name(name) else {
        return "{}".to_owned();
    };
    DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())
        .ok()
        .and_then(|m| serde_json::to_string(&m).ok())
        .unwrap_or_else(|| "{}".to_owned())
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn status_json(status: &tonic::Status) -> Response {
    let code = status.code() as i32;
    let body = serde_json::json!({ "code": code, "message": status.message() });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

async fn metrics(State(api): State<AnalyticsApi>) -> Response {
    match api.snapshot().await {
        Ok(m) => json(proto_json(&m, "weft.analytics.v1.GetMetricsResponse")),
        Err(s) => status_json(&s),
    }
}

async fn events(State(api): State<AnalyticsApi>) -> Response {
    match api.recent(0).await {
        Ok(r) => json(proto_json(&r, "weft.analytics.v1.ListRecentEventsResponse")),
        Err(s) => status_json(&s),
    }
}

async fn stream(State(api): State<AnalyticsApi>) -> impl IntoResponse {
    let events =
        api.updates().map(|item| {
            Ok::<_, Infallible>(match item {
            Ok(update) => Event::default()
                .data(proto_json(&update, "weft.analytics.v1.StreamMetricsResponse")),
            Err(status) => Event::default().event("error").data(
                serde_json::json!({ "code": status.code() as i32, "message": status.message() })
                    .to_string(),
            ),
        })
        });
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

/// The dashboard's HTTP server, bound.
pub struct DashboardServer {
    listener: TcpListener,
}

impl DashboardServer {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` (which also ends the open metric streams).
    pub async fn serve(
        self,
        api: AnalyticsApi,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/", get(page))
            .route("/dashboard", get(page))
            .route("/v1/analytics/metrics", get(metrics))
            .route("/v1/analytics/events", get(events))
            .route("/v1/analytics/metrics:stream", get(stream))
            .with_state(api);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}
