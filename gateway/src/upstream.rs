//! The gRPC side of the gateway: one lazily connected channel per service (connect
//! timeout, TCP and HTTP/2 keepalive), a pass-through codec (the request is already
//! encoded from a dynamic message, the response is decoded by the transcoder), and a
//! circuit breaker per service.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::breaker::{Breaker, BreakerConfig};
use crate::error::GatewayError;

/// Encodes and decodes messages as the bytes they already are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// The encoder and decoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// How the gateway talks to the services.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Longest a TCP connect may take.
    pub connect_timeout: Duration,
    /// Largest response message accepted.
    pub max_message_bytes: usize,
    /// The circuit breaker of each service.
    pub breaker: BreakerConfig,
}

/// One service's channel and breaker.
#[derive(Debug, Clone)]
pub struct Upstream {
    channel: Channel,
    breaker: Breaker,
    service: String,
    max_message_bytes: usize,
}

/// Every service the routes call, by full gRPC service name.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    by_service: HashMap<String, Upstream>,
}

/// Why an upstream could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("bad upstream URL {url:?} for {service}: {reason}")]
pub struct UpstreamError {
    service: String,
    url: String,
    reason: String,
}

impl Upstreams {
    /// Channels to `urls` (service full name → `http://host:port`, or a comma-separated
    /// list of a service's replicas, balanced). Nothing connects until the first call.
    pub fn new(
        urls: &HashMap<String, String>,
        config: &UpstreamConfig,
    ) -> Result<Self, UpstreamError> {
        let mut by_service = HashMap::new();
        for (service, url) in urls {
            let bad = |reason: String| UpstreamError {
                service: service.clone(),
                url: url.clone(),
                reason,
            };
            let endpoints = url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| {
                    Endpoint::from_shared(u.to_owned()).map(|e| {
                        e.connect_timeout(config.connect_timeout)
                            .tcp_keepalive(Some(Duration::from_secs(30)))
                            .http2_keep_alive_interval(Duration::from_secs(30))
                            .keep_alive_timeout(Duration::from_secs(10))
                            .keep_alive_while_idle(true)
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            let channel = match endpoints.as_slice() {
                [] => return Err(bad("no address".to_owned())),
                [one] => one.connect_lazy(),
                // Replicas: each call goes to the less loaded of two picked at random.
                _ => Channel::balance_list(endpoints.into_iter()),
            };
            by_service.insert(
                service.clone(),
                Upstream {
                    channel,
                    breaker: Breaker::new(config.breaker.clone()),
                    service: service.clone(),
                    max_message_bytes: config.max_message_bytes,
                },
            );
        }
        Ok(Self { by_service })
    }

    /// The upstream of a service.
    pub fn get(&self, service: &str) -> Option<&Upstream> {
        self.by_service.get(service)
    }

    /// Whether every service in `services` has an upstream; the first one missing.
    pub fn missing<'a>(&self, services: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        services
            .into_iter()
            .find(|s| !self.by_service.contains_key(*s))
    }
}

/// Whether a status means the service could not be reached (what trips a breaker).
fn unreachable(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable
        || (status.code() == tonic::Code::Unknown && std::error::Error::source(status).is_some())
}

impl Upstream {
    fn client(&self) -> tonic::client::Grpc<Channel> {
        tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    fn admit(&self) -> Result<(), GatewayError> {
        self.breaker
            .admit()
            .map_err(|retry_after| GatewayError::CircuitOpen {
                service: self.service.clone(),
                retry_after,
            })
    }

    fn record<T>(&self, result: &Result<T, Status>) {
        match result {
            Err(s) if unreachable(s) => self.breaker.failure(),
            _ => self.breaker.success(),
        }
    }

    fn cannot_reach(&self) -> Status {
        Status::unavailable(format!(
            "the {} service cannot be reached; retry with backoff",
            self.service
        ))
    }

    /// A status made by the transport (its source is the connection error) says
    /// where and how the connection failed: logged here, replaced for the caller.
    fn hide_transport(&self, status: Status) -> GatewayError {
        match std::error::Error::source(&status) {
            Some(cause) => {
                tracing::warn!(service = %self.service, error = %cause, "upstream transport failure");
                GatewayError::Upstream(self.cannot_reach())
            }
            None => GatewayError::Upstream(status),
        }
    }

    /// One unary call within `deadline` (also sent as `grpc-timeout`). A call that
    /// fails at its deadline is a timeout, whichever side noticed first, and does not
    /// count against the breaker: the service was slow, not down.
    pub async fn unary(
        &self,
        path: PathAndQuery,
        mut request: tonic::Request<Bytes>,
        deadline: Duration,
    ) -> Result<tonic::Response<Bytes>, GatewayError> {
        self.admit()?;
        request.set_timeout(deadline);
        let started = std::time::Instant::now();
        let mut client = self.client();
        let call = async {
            match client.ready().await {
                Ok(()) => client.unary(request, path, RawCodec).await,
                Err(_) => Err(self.cannot_reach()),
            }
        };
        // A timeout leaves the breaker as it is: neither a failure nor proof that
        // the service is back (a half-open trial that times out expires by itself).
        let Ok(result) = tokio::time::timeout(deadline, call).await else {
            return Err(GatewayError::Timeout(deadline));
        };
        if let Err(status) = &result
            && started.elapsed() + Duration::from_millis(20) >= deadline
            && matches!(
                status.code(),
                tonic::Code::Cancelled
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unavailable
                    | tonic::Code::Unknown
            )
        {
            return Err(GatewayError::Timeout(deadline));
        }
        self.record(&result);
        result.map_err(|s| self.hide_transport(s))
    }

    /// One server-streaming call; the stream yields encoded messages.
    pub async fn server_streaming(
        &self,
        path: PathAndQuery,
        request: tonic::Request<Bytes>,
    ) -> Result<tonic::Response<tonic::Streaming<Bytes>>, GatewayError> {
        self.admit()?;
        let mut client = self.client();
        let result = match client.ready().await {
            Ok(()) => client.server_streaming(request, path, RawCodec).await,
            Err(_) => Err(self.cannot_reach()),
        };
        self.record(&result);
        result.map_err(|s| self.hide_transport(s))
    }
}
