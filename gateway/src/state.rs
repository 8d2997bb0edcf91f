//! What every request shares: the route table, the upstream services, token
//! verification, rate limits, stream slots and the edge's limits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use weft_auth::Verifier;

use crate::policy::RateLimits;
use crate::routes::Router;
use crate::upstream::Upstreams;

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
