//! What every weft listener does with a connection before its protocol sees it, and
//! how the HTTP/1 servers (the gateway, the admin ports) serve theirs:
//!
//! - **a cap per client address**: a client holding `--max-connections-per-client`
//!   connections has its next one closed at once (`connections_refused_total`);
//! - **Nagle's algorithm off**: a small write that follows another unacknowledged one
//!   is not held for the peer's delayed ACK;
//! - **a deadline for slow clients**: HTTP/1 request headers (and the next request on
//!   an idle keep-alive connection) within `--header-timeout`, through hyper's own
//!   header timer; on the gRPC ports, the HTTP/2 connection preface within the same
//!   time (`connections_timed_out_total`);
//! - **a lingering close** (HTTP/1): when the server closes a connection whose client
//!   may still be sending (an early 401, 413 or 429 to a large body), it shuts its
//!   write side and reads what still comes for a bounded time before closing, so the
//!   client reads the answer instead of a reset.
//!
//! `connections_open` counts the connections each listener holds.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::flags::positive_duration;
use crate::slots::{PerClient, Slot};

/// Bytes a gRPC client sends first: the HTTP/2 preface (24 bytes) and the header of
/// its SETTINGS frame (9 bytes).
const HTTP2_OPENING: usize = 24 + 9;
/// A lingering close ends when the client closes, after this long without a byte,
/// after [`LINGER_MAX`] in all, or after [`LINGER_BYTES`].
const LINGER_IDLE: Duration = Duration::from_secs(2);
const LINGER_MAX: Duration = Duration::from_secs(30);
const LINGER_BYTES: usize = 64 << 20;

/// How many connections one client may hold, and how slow it may be.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Connections one client address may hold open at once; more are closed at
    /// once. Behind a proxy the proxy is the client: allow for its connection pool.
    #[arg(long, env = "WEFT_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: u32,
    /// Longest a client may take to send a request's headers (HTTP/1; also how long
    /// an idle keep-alive connection is kept) or to open its connection (HTTP/2).
    #[arg(long, env = "WEFT_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
}

impl Default for ConnArgs {
    fn default() -> Self {
        Self {
            max_connections_per_client: 256,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A bound listener that admits connections under [`ConnArgs`].
pub struct Listener {
    tcp: TcpListener,
    name: &'static str,
    clients: PerClient,
    header_timeout: Duration,
    /// Bytes that must arrive within the header timeout before the protocol takes
    /// over; 0 when the protocol keeps its own time (HTTP/1).
    opening: usize,
}

impl Listener {
    /// An HTTP/1 listener: hyper times the headers ([`serve_http`]). `name` labels
    /// its metrics.
    pub fn http1(tcp: TcpListener, name: &'static str, args: &ConnArgs) -> Self {
        Self::new(tcp, name, args, 0)
    }

    /// An HTTP/2 (gRPC) listener: the connection preface must arrive within the
    /// header timeout.
    pub fn http2(tcp: TcpListener, name: &'static str, args: &ConnArgs) -> Self {
        Self::new(tcp, name, args, HTTP2_OPENING)
    }

    fn new(tcp: TcpListener, name: &'static str, args: &ConnArgs, opening: usize) -> Self {
        Self {
            tcp,
            name,
            clients: PerClient::new(args.max_connections_per_client as usize),
            header_timeout: args.header_timeout,
            opening,
        }
    }

    /// The next admitted connection. Connections over their client's cap are closed
    /// here; accept errors (out of file descriptors) pause the loop briefly.
    pub async fn accept(&self) -> (Conn, SocketAddr) {
        loop {
            let (stream, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(listener = self.name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.clients.try_open(&peer.ip().to_string()) else {
                metrics::counter!("connections_refused_total", "listener" => self.name)
                    .increment(1);
                tracing::debug!(listener = self.name, %peer, "over the client's connection cap; closed");
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "setting TCP_NODELAY on a connection failed");
            }
            let opening = (self.opening > 0).then(|| Opening {
                left: self.opening,
                deadline: Box::pin(tokio::time::sleep(self.header_timeout)),
            });
            metrics::gauge!("connections_open", "listener" => self.name).increment(1.0);
            return (
                Conn {
                    stream,
                    opening,
                    name: self.name,
                    _slot: slot,
                },
                peer,
            );
        }
    }

    /// Admitted connections as a stream, for tonic's `serve_with_incoming`.
    pub fn incoming(self) -> impl futures::Stream<Item = io::Result<Conn>> {
        futures::stream::unfold(self, |listener| async move {
            let (conn, _) = listener.accept().await;
            Some((Ok(conn), listener))
        })
    }
}

/// An admitted connection: it holds its client's slot until dropped.
pub struct Conn {
    stream: TcpStream,
    opening: Option<Opening>,
    name: &'static str,
    _slot: Slot,
}

/// The bytes still owed before the deadline of a connection's opening.
struct Opening {
    left: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        metrics::gauge!("connections_open", "listener" => self.name).decrement(1.0);
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Some(opening) = &mut this.opening {
                    let n = buf.filled().len() - before;
                    if n == 0 || n >= opening.left {
                        this.opening = None;
                    } else {
                        opening.left -= n;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let late = this
                    .opening
                    .as_mut()
                    .is_some_and(|o| o.deadline.as_mut().poll(cx).is_ready());
                if !late {
                    return Poll::Pending;
                }
                this.opening = None;
                metrics::counter!("connections_timed_out_total", "listener" => this.name)
                    .increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client did not open its connection within the header timeout",
                )))
            }
            ready => ready,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// Serves `app` over HTTP/1.1 on `listener` until `stop`: then the port closes, idle
/// connections close, and this returns once the requests in flight have answered
/// (the caller bounds that wait). Handlers see the peer as
/// `axum::extract::ConnectInfo<SocketAddr>`.
pub async fn serve_http(listener: Listener, app: axum::Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (conn, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        connections.spawn(serve_connection(
            conn,
            peer,
            app.clone(),
            listener.header_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// One HTTP/1 connection, from its first request to its (lingering) close.
async fn serve_connection(
    conn: Conn,
    peer: SocketAddr,
    app: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    use tower::ServiceExt as _;
    let name = conn.name;
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            Box::pin(app.clone().oneshot(req))
        });
    let mut http = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(conn), service);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut stopping = false;
    let served = std::future::poll_fn(|cx| {
        if !stopping && stopped.as_mut().poll(cx).is_ready() {
            stopping = true;
            Pin::new(&mut http).graceful_shutdown();
        }
        http.poll_without_shutdown(cx)
    })
    .await;
    match served {
        Ok(()) => linger(http.into_parts().io.into_inner(), &stop).await,
        Err(e) if e.is_timeout() => {
            metrics::counter!("connections_timed_out_total", "listener" => name).increment(1);
            tracing::debug!(%peer, "no request headers within the header timeout; closed");
        }
        Err(e) => tracing::debug!(%peer, error = %e, "HTTP connection ended with an error"),
    }
}

/// Closes `conn` the way that lets its client read the last answer: the write side
/// first, then what the client still sends is read and dropped (see the module's
/// bounds) before the socket closes. Closing with unread bytes would send a reset,
/// and the client's network stack would drop the answer it had not read yet.
async fn linger(mut conn: Conn, stop: &CancellationToken) {
    if conn.stream.shutdown().await.is_err() {
        return;
    }
    let end = tokio::time::Instant::now() + LINGER_MAX;
    let mut buf = [0u8; 16 * 1024];
    let mut read = 0usize;
    while read < LINGER_BYTES {
        let next = tokio::time::timeout(LINGER_IDLE, conn.stream.read(&mut buf));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(end) => return,
            n = next => match n {
                Ok(Ok(n)) if n > 0 => read += n,
                _ => return,
            },
        }
    }
}

/// A listener bound on `addr` now, and the address it got (the port, when `addr`
/// asked for port 0).
pub async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), crate::KitError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| crate::KitError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| crate::KitError::Bind { addr, source })?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admitted_connections_have_nagle_off_and_count_against_their_client() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = Listener::http1(
            tcp,
            "test",
            &ConnArgs {
                max_connections_per_client: 1,
                ..ConnArgs::default()
            },
        );
        let _first = TcpStream::connect(addr).await.unwrap();
        let (conn, peer) = listener.accept().await;
        assert!(conn.stream.nodelay().unwrap(), "TCP_NODELAY is set");
        assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
        // Over the cap: closed by accept, which admits the client again once its
        // first connection has gone.
        let mut second = TcpStream::connect(addr).await.unwrap();
        let accepting = tokio::spawn(async move { listener.accept().await.1 });
        let mut buf = [0u8; 1];
        assert_eq!(
            second.read(&mut buf).await.unwrap_or(0),
            0,
            "closed at once"
        );
        drop(conn);
        let third = TcpStream::connect(addr).await.unwrap();
        let admitted = accepting.await.unwrap();
        assert_eq!(admitted, third.local_addr().unwrap());
    }
}
