//! The CloudEvents 1.0 binary-mode envelope of a weft event on Kafka: the record
//! value is the protobuf payload, the attributes travel as `ce_*` headers, and the
//! W3C trace context as `traceparent`/`tracestate`/`baggage` headers.
//!
//! The same facts are inside the payload as `EventMetadata` (field 1 of every event)
//! so an event stays self-describing once it leaves the topic.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use weft_proto::common::EventMetadata;

use crate::catalog::DomainEvent;

/// CloudEvents spec version weft speaks.
pub const SPEC_VERSION: &str = "1.0";
/// Content type of every weft event payload.
pub const CONTENT_TYPE: &str = "application/protobuf";

/// Header names of the Kafka protocol binding of CloudEvents, plus weft's extensions.
pub mod header {
    /// `specversion`.
    pub const SPEC_VERSION: &str = "ce_specversion";
    /// `id`: the event id.
    pub const ID: &str = "ce_id";
    /// `source`: `/weft/<service>`.
    pub const SOURCE: &str = "ce_source";
    /// `type`: the full proto name.
    pub const TYPE: &str = "ce_type";
    /// `time`: RFC 3339.
    pub const TIME: &str = "ce_time";
    /// `subject`: the aggregate id (also the record key).
    pub const SUBJECT: &str = "ce_subject";
    /// Extension `correlationid`.
    pub const CORRELATION_ID: &str = "ce_correlationid";
    /// Extension `causationid`.
    pub const CAUSATION_ID: &str = "ce_causationid";
    /// `datacontenttype` in binary mode.
    pub const CONTENT_TYPE: &str = "content-type";
    /// Trace-context headers copied between metadata and Kafka headers.
    pub const TRACE: [&str; 3] = ["traceparent", "tracestate", "baggage"];
    /// Every header an envelope reads.
    pub const ALL: [&str; 12] = [
        SPEC_VERSION,
        ID,
        SOURCE,
        TYPE,
        TIME,
        SUBJECT,
        CORRELATION_ID,
        CAUSATION_ID,
        CONTENT_TYPE,
        TRACE[0],
        TRACE[1],
        TRACE[2],
    ];
}

/// Why a record's headers are not a valid weft envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// A required header is absent or empty.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header is not UTF-8.
    #[error("header {0} is not UTF-8")]
    NotUtf8(String),
    /// The spec version is not 1.0.
    #[error("unsupported CloudEvents specversion {0:?}")]
    SpecVersion(String),
    /// The payload is not protobuf.
    #[error("unsupported content-type {0:?}; expected application/protobuf")]
    ContentType(String),
    /// The event has no `EventMetadata`.
    #[error("event has no metadata")]
    NoMetadata,
    /// A header holds control characters or is too long to be stored (the inbox
    /// and the outbox keep these values).
    #[error("header {0} holds control characters or is over {MAX_HEADER_CHARS} characters")]
    Unsafe(String),
}

/// Longest header value an envelope accepts.
pub const MAX_HEADER_CHARS: usize = 512;

/// Who caused the events about to be written: carried from a request or an event to
/// every event it leads to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// Shared by every event of one user action.
    pub correlation_id: String,
    /// The event (or request) that directly caused the new events.
    pub causation_id: String,
}

impl EventContext {
    /// A new user action: fresh correlation id, no cause.
    pub fn root() -> Self {
        Self {
            correlation_id: uuid::Uuid::now_v7().to_string(),
            causation_id: String::new(),
        }
    }

    /// The context of a gRPC request: [`Self::from_correlation_header`] of its
    /// `x-correlation-id` metadata.
    pub fn of_request<T>(req: &tonic::Request<T>) -> Self {
        let header = req.metadata().get("x-correlation-id");
        Self::from_correlation_header(header.and_then(|v| v.to_str().ok()))
    }

    /// The context of a request: its `x-correlation-id` when it carries a usable one
    /// (1–128 visible ASCII characters), else a fresh root.
    pub fn from_correlation_header(value: Option<&str>) -> Self {
        match value.map(str::trim) {
            Some(v)
                if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Self {
                    correlation_id: v.to_owned(),
                    causation_id: String::new(),
                }
            }
            _ => Self::root(),
        }
    }

    /// A reaction to `cause`: same correlation, caused by its event id.
    pub fn caused_by(cause: &EventMetadata) -> Self {
        let correlation_id = if cause.correlation_id.is_empty() {
            cause.event_id.clone()
        } else {
            cause.correlation_id.clone()
        };
        Self {
            correlation_id,
            causation_id: cause.event_id.clone(),
        }
    }

    /// Fresh metadata for a new event emitted by `service` at `version`, with the
    /// current span's trace context in its headers.
    pub fn metadata(&self, service: &str, version: &str) -> EventMetadata {
        let mut carrier = weft_kit::telemetry::MapCarrier::default();
        weft_kit::telemetry::inject_current(&mut carrier);
        let now = Utc::now();
        EventMetadata {
            event_id: uuid::Uuid::now_v7().to_string(),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            source_service: service.to_owned(),
            source_version: version.to_owned(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: i32::try_from(now.timestamp_subsec_nanos()).unwrap_or(0),
            }),
            headers: carrier
                .0
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        }
    }
}

/// The CloudEvents attributes of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce_id`.
    pub id: String,
    /// `ce_type`.
    pub event_type: String,
    /// `ce_source`.
    pub source: String,
    /// `ce_time`, RFC 3339.
    pub time: String,
    /// `ce_subject`: the aggregate id.
    pub subject: String,
    /// `ce_correlationid`.
    pub correlation_id: String,
    /// `ce_causationid` (empty for a root event).
    pub causation_id: String,
    /// `traceparent`, `tracestate`, `baggage` when present.
    pub trace: BTreeMap<String, String>,
}

impl Envelope {
    /// The envelope of `event`, from its metadata.
    pub fn of<E: DomainEvent>(event: &E) -> Result<Self, EnvelopeError> {
        let meta = event.metadata().ok_or(EnvelopeError::NoMetadata)?;
        if meta.event_id.is_empty() {
            return Err(EnvelopeError::Missing(header::ID));
        }
        let time = meta
            .occurred_at
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
            .unwrap_or_else(Utc::now)
            .to_rfc3339_opts(SecondsFormat::Micros, true);
        Ok(Self {
            id: meta.event_id.clone(),
            event_type: E::TYPE.to_owned(),
            source: format!("/weft/{}", meta.source_service),
            time,
            subject: event.key().to_owned(),
            correlation_id: meta.correlation_id.clone(),
            causation_id: meta.causation_id.clone(),
            trace: header::TRACE
                .iter()
                .filter_map(|k| meta.headers.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect(),
        })
    }

    /// The Kafka headers of this envelope, in a stable order.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            (header::SPEC_VERSION.to_owned(), SPEC_VERSION.to_owned()),
            (header::ID.to_owned(), self.id.clone()),
            (header::SOURCE.to_owned(), self.source.clone()),
            (header::TYPE.to_owned(), self.event_type.clone()),
            (header::TIME.to_owned(), self.time.clone()),
            (header::SUBJECT.to_owned(), self.subject.clone()),
            (header::CONTENT_TYPE.to_owned(), CONTENT_TYPE.to_owned()),
            (
                header::CORRELATION_ID.to_owned(),
                self.correlation_id.clone(),
            ),
        ];
        if !self.causation_id.is_empty() {
            h.push((header::CAUSATION_ID.to_owned(), self.causation_id.clone()));
        }
        h.extend(self.trace.iter().map(|(k, v)| (k.clone(), v.clone())));
        h
    }

    /// Reads an envelope from Kafka headers; unknown headers are ignored.
    pub fn from_headers<'a>(
        headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Self, EnvelopeError> {
        let mut map = BTreeMap::new();
        for (name, value) in headers {
            let Some(value) = value else { continue };
            let value =
                std::str::from_utf8(value).map_err(|_| EnvelopeError::NotUtf8(name.to_owned()))?;
            if value.chars().count() > MAX_HEADER_CHARS || value.chars().any(char::is_control) {
                if header::ALL.contains(&name) {
                    return Err(EnvelopeError::Unsafe(name.to_owned()));
                }
                // Another header's value is not kept: it does not matter.
                continue;
            }
            map.insert(name.to_owned(), value.to_owned());
        }
        let mut take = |name: &'static str| -> Result<String, EnvelopeError> {
            map.remove(name)
                .filter(|v| !v.is_empty())
                .ok_or(EnvelopeError::Missing(name))
        };
        let spec = take(header::SPEC_VERSION)?;
        if spec != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(spec));
        }
        let content_type = take(header::CONTENT_TYPE)?;
        if content_type != CONTENT_TYPE {
            return Err(EnvelopeError::ContentType(content_type));
        }
        let id = take(header::ID)?;
        let event_type = take(header::TYPE)?;
        let source = take(header::SOURCE)?;
        let time = take(header::TIME)?;
        let subject = take(header::SUBJECT).unwrap_or_default();
        let correlation_id = take(header::CORRELATION_ID).unwrap_or_default();
        let causation_id = take(header::CAUSATION_ID).unwrap_or_default();
        let trace = header::TRACE
            .iter()
            .filter_map(|k| map.remove(*k).map(|v| ((*k).to_owned(), v)))
            .collect();
        Ok(Self {
            id,
            event_type,
            source,
            time,
            subject,
            correlation_id,
            causation_id,
            trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proto::user::UserSignedUp;

    fn signup() -> UserSignedUp {
        let ctx = EventContext::root();
        let mut meta = ctx.metadata("user", "0.1.0");
        meta.headers.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        UserSignedUp {
            metadata: Some(meta),
            user_id: "u-1".into(),
            email: "a@example.com".into(),
            ..Default::default()
        }
    }

    #[test]
    fn control_characters_and_oversize_values_are_refused() {
        let env = Envelope::of(&signup()).unwrap_or_else(|e| panic!("{e}"));
        for (name, bad) in [
            (header::ID, "id\0".to_owned()),
            (header::SUBJECT, "u\n1".to_owned()),
            (header::CORRELATION_ID, "c".repeat(MAX_HEADER_CHARS + 1)),
        ] {
            let mut headers = env.headers();
            match headers.iter_mut().find(|(k, _)| k == name) {
                Some(h) => h.1 = bad,
                None => headers.push((name.to_owned(), bad)),
            }
            let err = Envelope::from_headers(
                headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
            )
            .expect_err(name);
            assert!(
                matches!(err, EnvelopeError::Unsafe(ref n) if n == name),
                "{err}"
            );
        }
        // A header the envelope does not read may hold anything.
        let mut headers = env.headers();
        headers.push(("x-other".into(), "a\0b".into()));
        assert!(
            Envelope::from_headers(
                headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_bytes())))
            )
            .is_ok()
        );
    }

    #[test]
    fn headers_round_trip() {
        let event = signup();
        let env = Envelope::of(&event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.event_type, "weft.user.v1.UserSignedUp");
        assert_eq!(env.subject, "u-1");
        assert_eq!(env.source, "/weft/user");
        let headers = env.headers();
        let back = Envelope::from_headers(
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, env);
        assert!(back.trace.contains_key("traceparent"));
    }

    #[test]
    fn rejects_missing_type_and_wrong_spec() {
        let env = Envelope::of(&signup()).unwrap_or_else(|e| panic!("{e}"));
        let without_type: Vec<_> = env
            .headers()
            .into_iter()
            .filter(|(k, _)| k != header::TYPE)
            .collect();
        let err = Envelope::from_headers(
            without_type
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        );
        assert_eq!(err, Err(EnvelopeError::Missing(header::TYPE)));

        let wrong_spec: Vec<_> = env
            .headers()
            .into_iter()
            .map(|(k, v)| {
                if k == header::SPEC_VERSION {
                    (k, "0.3".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        let err = Envelope::from_headers(
            wrong_spec
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        );
        assert_eq!(err, Err(EnvelopeError::SpecVersion("0.3".into())));
    }

    #[test]
    fn rejects_non_utf8_and_foreign_content_type() {
        let env = Envelope::of(&signup()).unwrap_or_else(|e| panic!("{e}"));
        let mut headers: Vec<(String, Vec<u8>)> = env
            .headers()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        headers.push(("ce_id".into(), vec![0xff, 0xfe]));
        let err = Envelope::from_headers(
            headers
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
        );
        assert_eq!(err, Err(EnvelopeError::NotUtf8("ce_id".into())));

        let json: Vec<_> = env
            .headers()
            .into_iter()
            .map(|(k, v)| {
                if k == header::CONTENT_TYPE {
                    (k, "application/json".to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        let err =
            Envelope::from_headers(json.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))));
        assert_eq!(
            err,
            Err(EnvelopeError::ContentType("application/json".into()))
        );
    }

    #[test]
    fn reactions_keep_the_correlation_and_name_their_cause() {
        let cause = signup().metadata.unwrap_or_default();
        let ctx = EventContext::caused_by(&cause);
        assert_eq!(ctx.correlation_id, cause.correlation_id);
        assert_eq!(ctx.causation_id, cause.event_id);
        let meta = ctx.metadata("order", "0.1.0");
        assert_ne!(meta.event_id, cause.event_id);
    }
}
