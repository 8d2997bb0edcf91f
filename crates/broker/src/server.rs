//! The network side: the listener, one task per connection reading length-prefixed
//! frames, and the background work (flushing, retention, group session timers).
//!
//! Requests on one connection are served one at a time, in order, as Kafka does (it
//! mutes a connection until its response is sent): a held fetch or join delays only
//! its own connection, and responses never need reordering. A frame that cannot be
//! decoded, an unknown API or an unsupported version closes the connection with a
//! log line — except ApiVersions, which is answered at v0 with the versions this
//! broker speaks, so a newer client can negotiate down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, Body, code};
use crate::config::BrokerArgs;
use crate::error::BrokerError;
use crate::groups::Coordinator;
use crate::offsets::Offsets;
use crate::request;
use crate::shared::{Node, Shared};
use crate::store::{Store, lock};

/// A broker bound to its port, ready to run.
pub struct Broker {
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    flush_interval: Duration,
}

impl Broker {
    /// Opens the data directory and binds the listener (so the port is known, and
    /// taken, before this returns).
    pub async fn bind(args: &BrokerArgs) -> Result<Self, BrokerError> {
        let store = Store::open(&args.data_dir, args.log_config())?;
        let offsets = Offsets::open(&args.data_dir).map_err(|e| BrokerError::Io {
            what: "opening offsets.log".into(),
            source: e,
        })?;
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| BrokerError::Bind {
                addr: args.listen,
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| BrokerError::Bind {
            addr: args.listen,
            source: e,
        })?;
        let node = match &args.advertised {
            Some(a) => parse_advertised(a)?,
            None => Node {
                host: if local.ip().is_unspecified() {
                    "127.0.0.1".to_owned()
                } else {
                    local.ip().to_string()
                },
                port: i32::from(local.port()),
            },
        };
        tracing::info!(
            listen = %local,
            advertised = %format!("{}:{}", node.host, node.port),
            data = %args.data_dir.display(),
            topics = store.topics().len(),
            "broker ready"
        );
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                store,
                groups: Coordinator::new(args.group_config()),
                offsets: Mutex::new(offsets),
                node,
                default_partitions: args.default_partitions,
                max_batch_bytes: args.max_batch_bytes,
                message_timestamp_after_max: args.message_timestamp_after_max,
                max_request_bytes: args.max_request_bytes,
                shutdown: CancellationToken::new(),
            }),
            max_connections: args.max_connections,
            flush_interval: args.flush_interval,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.shared.node.host, self.shared.node.port)
    }

    /// Serves until `shutdown`, then closes every connection, flushes the logs and
    /// the offsets, and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), BrokerError> {
        let shared = self.shared;
        let tasks = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        tasks.spawn(background(shared.clone(), self.flush_interval));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, don't spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = self.max_connections, "too many connections; refusing one");
                continue;
            };
            let shared = shared.clone();
            tasks.spawn(async move {
                connection(stream, peer, &shared).await;
                drop(permit);
            });
        }
        shared.shutdown.cancel();
        tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after 5 s; closing them");
        }
        shared.store.flush();
        if let Err(e) = lock(&shared.offsets).sync() {
            tracing::error!(error = %e, "flushing committed offsets failed");
        }
        tracing::info!("broker stopped");
        Ok(())
    }
}

fn parse_advertised(a: &str) -> Result<Node, BrokerError> {
    let bad = || BrokerError::Config(format!("--advertised {a:?} is not host:port"));
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok(Node {
        host: host.to_owned(),
        port: i32::from(port),
    })
}

/// Flushes, enforces retention and runs the group timers until the broker stops.
async fn background(shared: Arc<Shared>, flush_interval: Duration) {
    let mut flush = tokio::time::interval(flush_interval.max(Duration::from_millis(10)));
    let mut retention = tokio::time::interval(Duration::from_secs(60));
    let mut groups = tokio::time::interval(Duration::from_millis(250));
    for t in [&mut flush, &mut retention, &mut groups] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = flush.tick() => {
                let s = shared.clone();
                // fsync blocks: off the async threads.
                let _ = tokio::task::spawn_blocking(move || {
                    s.store.flush();
                    if let Err(e) = lock(&s.offsets).sync() {
                        tracing::error!(error = %e, "flushing committed offsets failed");
                    }
                }).await;
            }
            _ = retention.tick() => shared.store.enforce_retention(),
            _ = groups.tick() => shared.groups.tick(),
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let host = format!("/{}", peer.ip());
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    loop {
        let frame = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            f = read_frame(&mut rd, shared.max_request_bytes) => f,
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closing a connection");
                break;
            }
        };
        match serve(frame, shared, &host).await {
            Ok(Some(response)) => {
                if wr.write_all(&response).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing a connection");
                break;
            }
        }
    }
}

/// Reads one frame; `None` at a clean end of stream. The frame buffer grows as bytes
/// arrive, so a client that only announces a large frame costs no memory.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    max: usize,
) -> Result<Option<Bytes>, String> {
    let mut len = [0u8; 4];
    match rd.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| format!("negative frame length {len}"))?;
    if len < 8 {
        return Err(format!(
            "frame of {len} bytes is shorter than a request header"
        ));
    }
    if len > max {
        return Err(format!(
            "frame of {len} bytes exceeds the limit of {max} (--max-request-bytes)"
        ));
    }
    let mut buf = BytesMut::with_capacity(len.min(64 * 1024));
    while buf.len() < len {
        let want = (len - buf.len()).min(64 * 1024);
        buf.reserve(want);
        let n = rd
            .take(want as u64)
            .read_buf(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed mid-frame".into());
        }
    }
    Ok(Some(buf.freeze()))
}

/// Serves one frame: the encoded response frame, `None` when none is due, or why
/// the connection must close.
async fn serve(frame: Bytes, shared: &Shared, host: &str) -> Result<Option<BytesMut>, String> {
    let (key, version, correlation_id) = request::peek_header(&frame).map_err(|e| e.to_string())?;
    let Some(api) = request::find(key) else {
        return Err(format!(
            "{} is not served by this broker",
            api::api_name(key)
        ));
    };
    if version < api.min || version > api.max {
        if api.key == ApiKey::ApiVersions {
            let body = api::api_versions(code::UNSUPPORTED_VERSION, 0);
            return frame_response(api.key, 0, correlation_id, body).map(Some);
        }
        return Err(format!(
            "{} v{version} is not served (v{} to v{})",
            api::api_name(key),
            api.min,
            api.max
        ));
    }
    let (header, body) = request::read_header(frame, api).map_err(|e| e.to_string())?;
    let request = request::decode(api, version, body)
        .map_err(|e| format!("{} v{version}: {e}", api::api_name(key)))?;
    match api::handle(shared, request, version, &header.client_id, host).await {
        None => Ok(None),
        Some(body) => frame_response(api.key, version, correlation_id, body).map(Some),
    }
}

/// Prefixes a body with its response header and the frame length.
fn frame_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: Body,
) -> Result<BytesMut, String> {
    let body = body?;
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = key.response_header_version(version);
    let mut out = BytesMut::with_capacity(4 + 8 + body.len());
    out.put_i32(0);
    header
        .encode(&mut out, header_version)
        .map_err(|e| format!("encoding a response header: {e}"))?;
    out.extend_from_slice(&body);
    let len = i32::try_from(out.len() - 4).map_err(|_| "response too large".to_owned())?;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}
