//! The embedded broker (weft-broker) as a test runs it: in a thread of the test
//! process, on a free port, with its data in a temporary directory.

use std::net::SocketAddr;
use std::time::Duration;

/// The embedded broker (weft-broker) on a free port, running in a thread of the
/// test process with data in a temporary directory; stopped on drop.
pub struct Broker {
    addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker on a port of its own choosing.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Self::run(0, dir.path());
        broker.dir = Some(dir);
        broker
    }

    /// Starts a broker on `port` (for tests that hand the address out before the
    /// broker exists).
    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Self::run(port, dir.path());
        broker.dir = Some(dir);
        broker
    }

    /// Starts a broker on `port` with its data in `dir`, which outlives it (for
    /// restart tests).
    pub fn start_in(port: u16, dir: &std::path::Path) -> Self {
        Self::run(port, dir)
    }

    fn run(port: u16, dir: &std::path::Path) -> Self {
        let mut args = weft_broker::BrokerArgs::new(([127, 0, 0, 1], port).into(), dir);
        args.group_initial_rebalance_delay = Duration::ZERO;
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("test-broker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("broker runtime");
                runtime.block_on(async move {
                    match weft_broker::Broker::bind(&args).await {
                        Ok(broker) => {
                            let _ = tx.send(Ok(broker.local_addr()));
                            if let Err(e) = broker.run(token).await {
                                eprintln!("test broker stopped with an error: {e}");
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .expect("broker thread");
        let addr = match rx.recv() {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => panic!("the test broker did not start: {e}"),
            Err(_) => panic!("the test broker thread died while starting"),
        };
        Self {
            addr,
            stop,
            thread: Some(thread),
            dir: None,
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the broker and waits until it has flushed and released its data
    /// directory.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shut_down();
    }
}
