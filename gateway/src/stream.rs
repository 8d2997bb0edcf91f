//! Server-streaming RPCs over HTTP: Server-Sent Events when the client accepts
//! `text/event-stream` (one `data:` event per message, `event: error` with a
//! `google.rpc.Status` if the stream fails, comments as keep-alives), otherwise
//! newline-delimited JSON (`{"result": …}` per message, `{"error": …}` last on
//! failure), as grpc-gateway writes it. The stream ends with the RPC or at shutdown.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::error::status_json;
use crate::routes::Binding;
use crate::transcode::response_json;

/// How often an idle event stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The framing of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`.
    Sse,
    /// `application/x-ndjson`.
    Ndjson,
}

impl Framing {
    /// SSE if the client accepts it, else NDJSON.
    pub fn from_accept(headers: &HeaderMap) -> Self {
        let sse = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/event-stream"));
        if sse { Self::Sse } else { Self::Ndjson }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Sse => "text/event-stream",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn message(self, json: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(json.len() + 16);
        match self {
            Self::Sse => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
            Self::Ndjson => {
                out.extend_from_slice(b"{\"result\":");
                out.extend_from_slice(json);
                out.extend_from_slice(b"}\n");
            }
        }
        Bytes::from(out)
    }

    fn error(self, status: &tonic::Status) -> Bytes {
        let json = status_json(status);
        let mut out = Vec::with_capacity(json.len() + 24);
        match self {
            Self::Sse => {
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
            }
            Self::Ndjson => {
                out.extend_from_slice(b"{\"error\":");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"}\n");
            }
        }
        Bytes::from(out)
    }
}

struct State {
    messages: tonic::Streaming<Bytes>,
    binding: Binding,
    framing: Framing,
    shutdown: CancellationToken,
    keep_alive: tokio::time::Interval,
    done: bool,
    /// The gateway's and the client's stream slots, freed when the stream ends.
    _permit: (OwnedSemaphorePermit, weft_kit::slots::Slot),
}

/// The HTTP response that relays `messages`; `permit` is held while it streams.
pub fn respond(
    binding: Binding,
    framing: Framing,
    messages: tonic::Streaming<Bytes>,
    permit: (OwnedSemaphorePermit, weft_kit::slots::Slot),
    shutdown: CancellationToken,
) -> Response {
    let mut keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        messages,
        binding,
        framing,
        shutdown,
        keep_alive,
        done: false,
        _permit: permit,
    };
    let body = futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        let chunk = next_chunk(&mut s).await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering proxies (nginx and the like) to pass events through at once.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn next_chunk(s: &mut State) -> Option<Bytes> {
    loop {
        tokio::select! {
            _ = s.shutdown.cancelled() => return None,
            message = s.messages.message() => {
                return match message {
                    Ok(Some(bytes)) => match response_json(&s.binding, &bytes) {
                        Ok(json) => Some(s.framing.message(&json)),
                        Err(e) => {
                            s.done = true;
                            Some(s.framing.error(&e.to_status().1))
                        }
                    },
                    Ok(None) => None,
                    Err(status) => {
                        s.done = true;
                        // A broken connection's status says where it failed: log it,
                        // send a generic one.
                        let status = match std::error::Error::source(&status) {
                            Some(cause) => {
                                tracing::warn!(error = %cause, "upstream stream broke");
                                tonic::Status::unavailable("the stream from the service broke; reconnect")
                            }
                            None => status,
                        };
                        Some(s.framing.error(&status))
                    }
                };
            }
            _ = s.keep_alive.tick() => {
                if s.framing == Framing::Sse {
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    }
}
