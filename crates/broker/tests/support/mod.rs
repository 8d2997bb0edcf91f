//! A broker on a free port in this test process, and raw protocol helpers.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use kafka_protocol::messages::RequestHeader;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use weft_broker::{Broker, BrokerArgs};

/// A running broker; stopped (cleanly) on [`Running::stop`] or drop.
pub struct Running {
    pub bootstrap: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the broker and waits until it has flushed and released its directory.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts a broker with data in `dir` on a free port.
pub async fn start(dir: &Path) -> Running {
    start_with(dir, |_| {}).await
}

/// Starts a broker with data in `dir`, its flags changed by `tweak`.
pub async fn start_with(dir: &Path, tweak: impl FnOnce(&mut BrokerArgs)) -> Running {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "weft_broker=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut args = BrokerArgs::new(([127, 0, 0, 1], 0).into(), dir);
    args.group_initial_rebalance_delay = Duration::ZERO;
    tweak(&mut args);
    let broker = Broker::bind(&args).await.expect("broker starts");
    let bootstrap = broker.bootstrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        broker.run(token).await.expect("broker runs");
    });
    Running {
        bootstrap,
        stop,
        task: Some(task),
    }
}

/// A raw Kafka protocol connection.
pub struct Raw {
    stream: TcpStream,
    correlation: i32,
}

impl Raw {
    pub async fn connect(bootstrap: &str) -> Self {
        Self {
            stream: TcpStream::connect(bootstrap).await.expect("connect"),
            correlation: 0,
        }
    }

    /// Sends raw bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends `req` at `version` and reads its response.
    pub async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encode header");
        req.encode(&mut body, version).expect("encode request");
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.send_bytes(&frame).await;
        let mut response = self.read_frame().await.expect("a response");
        let response_header_version = R::Response::header_version(version);
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut response,
            response_header_version,
        )
        .expect("response header");
        assert_eq!(header.correlation_id, self.correlation);
        R::Response::decode(&mut response, version).expect("response body")
    }

    /// The next response frame, or `None` when the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut len)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no answer and no close within 10 s"),
        }
        let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut buf).await.ok()?;
        Some(buf.into())
    }

    /// Whether the broker closed the connection (reads EOF within 10 s).
    pub async fn closed(&mut self) -> bool {
        self.read_frame().await.is_none()
    }
}
