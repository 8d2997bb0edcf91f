//! Why the broker does not start.

use std::net::SocketAddr;

use crate::store;

/// Errors that stop the broker from starting.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The data directory cannot be used.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A file could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A flag is wrong.
    #[error("{0}")]
    Config(String),
}
