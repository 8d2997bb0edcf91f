//! What every handler builds its response with: the node id, the encoded body (or
//! why it could not be encoded), and the strings and topic names of
//! `kafka-protocol`'s response types.

use bytes::BytesMut;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Encodable, StrBytes};

/// The node id of this broker.
pub const NODE_ID: i32 = 0;

/// An encoded response body, or the reason it could not be encoded (a bug: the
/// connection is closed).
pub type Body = Result<BytesMut, String>;

/// Encodes `body` at `version`.
pub fn encode<R: Encodable>(body: &R, version: i16) -> Body {
    let mut buf = BytesMut::with_capacity(body.compute_size(version).unwrap_or(256));
    body.encode(&mut buf, version)
        .map_err(|e| format!("encoding v{version}: {e}"))?;
    Ok(buf)
}

/// A string for a response.
pub fn s(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// A topic name for a response.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}
