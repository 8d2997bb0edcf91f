//! W3C trace context crosses Kafka: an event written inside a traced request carries
//! the request's trace id in its metadata and `traceparent` header, and a consumer's
//! span continues that trace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use weft_events::EventContext;
use weft_events::envelope::Envelope;
use weft_kit::config::TelemetryArgs;
use weft_kit::telemetry::{self, MapCarrier};
use weft_proto::user::UserSignedUp;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn trace_context_flows_from_request_to_event_to_consumer() {
    let _guard = telemetry::init("trace-test", &TelemetryArgs::default()).unwrap();

    // An incoming request with a traceparent (as the gRPC layer sees it).
    let mut incoming = MapCarrier::default();
    incoming.0.insert(
        "traceparent".into(),
        format!("00-{TRACE_ID}-00f067aa0ba902b7-01"),
    );
    let request_span = tracing::info_span!("request");
    telemetry::set_parent_from(&request_span, &incoming);

    let event = request_span.in_scope(|| {
        assert_eq!(telemetry::current_trace_id().as_deref(), Some(TRACE_ID));
        UserSignedUp {
            metadata: Some(EventContext::root().metadata("user", "test")),
            user_id: "u".into(),
            ..Default::default()
        }
    });
    let envelope = Envelope::of(&event).unwrap();
    let traceparent = envelope
        .trace
        .get("traceparent")
        .expect("traceparent header");
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the event names the request's span as parent, not the caller's"
    );

    // The consumer side: the record's headers parent the handler's span.
    let consumer_span = tracing::info_span!("consume");
    telemetry::set_parent_from(
        &consumer_span,
        &MapCarrier(envelope.trace.clone().into_iter().collect()),
    );
    consumer_span.in_scope(|| {
        assert_eq!(telemetry::current_trace_id().as_deref(), Some(TRACE_ID));
    });
}
