//! Assembling the gateway: the descriptor pool and route table, the upstream channels,
//! the token verifier kept fresh from the user service, the HTTP server with its
//! layers (concurrency limit with shedding, CORS, compression), and the admin server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::error_handling::HandleErrorLayer;
use axum::response::{Html, IntoResponse};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use prost_reflect::DescriptorPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate as _};
use tower_http::cors::{AllowOrigin, CorsLayer};
use weft_auth::{TokenConfig, Verifier};
use weft_kit::admin::AdminServer;
use weft_kit::conn::{Listener, serve_http};
use weft_kit::host::Tasks;

use crate::breaker::BreakerConfig;
use crate::config::Config;
use crate::edge;
use crate::error::GatewayError;
use crate::policy::RateLimits;
use crate::proxy;
use crate::routes::Router;
use crate::state::Gateway;
use crate::upstream::{UpstreamConfig, Upstreams};

const DASHBOARD: &str = include_str!("../dashboard/index.html");
/// Where the verification emails' links lead: a button that posts the token to
/// `VerifyEmail` (a GET alone verifies nothing, so link scanners do not).
const VERIFY: &str = include_str!("../dashboard/verify.html");

/// A built, bound, not yet serving gateway.
pub struct App {
    listener: TcpListener,
    http_addr: SocketAddr,
    admin: AdminServer,
    gateway: Arc<Gateway>,
    openapi: Bytes,
    config: Config,
}

impl App {
    /// Reads the descriptors, builds the routes and upstreams, binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = match &config.descriptor_set {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading the descriptor set {}", path.display()))?;
                DescriptorPool::decode(bytes.as_slice())
                    .with_context(|| format!("decoding the descriptor set {}", path.display()))?
            }
            None => weft_proto::descriptor_pool().clone(),
        };
        let router = Router::from_pool(&pool).context("building the REST routes")?;
        let upstreams = Upstreams::new(
            &config.upstream_urls(),
            &UpstreamConfig {
                connect_timeout: config.connect_timeout,
                max_message_bytes: config.max_message_bytes,
                breaker: BreakerConfig {
                    failures: config.breaker_failures.max(1),
                    open_for: config.breaker_open_for,
                },
            },
        )?;
        let services: Vec<String> = router
            .bindings()
            .iter()
            .map(|b| b.service().to_owned())
            .collect();
        if let Some(missing) = upstreams.missing(services.iter().map(String::as_str)) {
            anyhow::bail!(
                "no upstream URL for {missing}; pass --upstream {missing}=http://host:port"
            );
        }
        let openapi = Bytes::from(serde_json::to_vec(&crate::openapi::document(&router))?);
        let (listener, http_addr) = weft_kit::conn::listen(config.http_addr).await?;
        let admin = AdminServer::bind(config.admin_addr).await?;
        let gateway = Arc::new(Gateway {
            router,
            upstreams,
            verifier: Arc::new(Verifier::new(&TokenConfig::default())),
            limits: RateLimits::new(
                config.rate_limit,
                config.rate_burst,
                config.auth_rate_limit,
                config.auth_rate_burst,
            ),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            client_streams: weft_kit::slots::PerClient::new(config.max_streams_per_client as usize),
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            client_ip_header: config.client_ip_header.clone(),
            shutdown: CancellationToken::new(),
        });
        Ok(Self {
            listener,
            http_addr,
            admin,
            gateway,
            openapi,
            config,
        })
    }

    /// Where the REST server listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// Serves until `shutdown`, then drains open requests and streams.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let gw = self.gateway.clone();
        let grace = self.config.shutdown_grace;
        let mut tasks = Tasks::new(&shutdown, grace);
        let stop = shutdown.clone();
        tasks.spawn(
            "token keys",
            self.config
                .jwks
                .refresh(gw.verifier.clone(), async move { stop.cancelled().await }),
        );
        let ready = Arc::new(AtomicBool::new(false));
        tasks.spawn(
            "housekeeping",
            housekeeping(gw.clone(), ready.clone(), shutdown.clone()),
        );
        tasks.spawn("admin server", self.admin.serve(ready, shutdown.clone()));

        let app = http_app(gw.clone(), self.openapi, &self.config);
        // Open streams would hold the drain forever: they end when it begins.
        let streams_end = gw.shutdown.clone();
        let drain = shutdown.clone();
        tasks.spawn("stream closer", async move {
            drain.cancelled().await;
            streams_end.cancel();
        });
        let listener = Listener::http1(self.listener, "http", &self.config.conn);
        let server = serve_http(listener, app, shutdown.clone());
        tracing::info!(addr = %self.http_addr, "gateway listening");
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => {}
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "drain grace period over; dropping open requests");
            }
        }
        let drained = tasks.drain().await;
        tracing::info!("gateway stopped");
        drained
    }
}

/// Ready while token keys are loaded; idle rate-limit state is dropped now and then.
async fn housekeeping(gw: Arc<Gateway>, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut rounds = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        ready.store(gw.verifier.key_count() > 0, Ordering::SeqCst);
        rounds += 1;
        if rounds.is_multiple_of(600) {
            gw.limits.forget_idle();
        }
    }
    ready.store(false, Ordering::SeqCst);
}

/// The HTTP routes (the gateway's own pages, then every transcoded route) and the
/// layers around them, outermost first: CORS, compression, load shedding over a
/// concurrency limit, then the [`edge`] stack.
fn http_app(gw: Arc<Gateway>, openapi: Bytes, config: &Config) -> axum::Router {
    let only_get = || {
        axum::routing::MethodRouter::new().fallback(|method: Method| async move {
            GatewayError::MethodNotAllowed {
                method,
                allowed: vec![Method::GET],
            }
            .into_response()
        })
    };
    let openapi_doc = move || {
        let doc = openapi.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
    };
    let page = || async { ([(header::CACHE_CONTROL, "no-cache")], Html(DASHBOARD)) };
    let verify_page = || async {
        (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            Html(VERIFY),
        )
    };
    let compression = CompressionLayer::new().compress_when(
        DefaultPredicate::new().and(NotForContentType::const_new("application/x-ndjson")),
    );
    let pages = axum::Router::new()
        .route("/openapi.json", only_get().get(openapi_doc))
        .route("/", only_get().get(page))
        .route("/dashboard", only_get().get(page))
        .route("/verify", only_get().get(verify_page))
        .route(edge::HEALTH, only_get().get(|| async { "ok\n" }));
    let app = pages.fallback(proxy::handle).with_state(gw.clone());
    // The edge covers every route, the pages and the fallback alike.
    edge::around(app, &gw).layer(
        ServiceBuilder::new()
            .layer(cors(&config.cors_origins))
            .layer(compression)
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                GatewayError::Overloaded.into_response()
            }))
            .load_shed()
            .concurrency_limit(config.max_concurrent_requests),
    )
}

fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
            HeaderName::from_static("baggage"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
