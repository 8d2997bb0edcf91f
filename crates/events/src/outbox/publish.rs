//! A round's rows as Kafka records: each sent under its own producer span, in the
//! trace of the command that wrote it, and the delivery reports read back into which
//! rows may be marked sent — those the broker acknowledged, except the rows after a
//! failed one of the same key, which must reach the topic in order.

use std::collections::HashSet;

use rdkafka::message::{Header, OwnedHeaders};

use super::pending::Pending;
use crate::producer::{Delivery, Producer};

/// Sends `pending` in order until the producer refuses one; the delivery report to
/// come of each row sent, and the span that stays open until it comes.
pub(super) fn send(
    producer: &Producer,
    pending: &[Pending],
) -> (Vec<Delivery>, Vec<tracing::Span>) {
    let mut deliveries = Vec::with_capacity(pending.len());
    // One producer span per record, open until the broker's answer, in the trace of
    // the command that wrote the row; the record carries it on as its parent.
    let mut spans = Vec::with_capacity(pending.len());
    for p in pending {
        let span = publish_span(p);
        let mut headers = OwnedHeaders::new_with_capacity(p.headers.len());
        for (k, v) in &traced_headers(&p.headers, &span) {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        match producer.send(&p.topic, Some(p.key.as_bytes()), Some(&p.payload), headers) {
            Ok(delivery) => {
                deliveries.push(delivery);
                spans.push(span);
            }
            Err(e) => {
                // Local queue full or the producer is failing: publish what is
                // queued and leave the rest for the next round.
                tracing::warn!(error = %e, "producer refused a record");
                break;
            }
        }
    }
    (deliveries, spans)
}

/// Waits for the reports of `deliveries` (sent for the first of `pending`, under
/// `spans`), each span ending with its report; the rows that may be marked sent and
/// the first error (see [`acknowledged_in_key_order`]).
pub(super) async fn acknowledged(
    pending: &[Pending],
    deliveries: Vec<Delivery>,
    spans: Vec<tracing::Span>,
) -> (Vec<i64>, Option<String>) {
    // Every report is awaited at once; a row is marked only when its own report
    // says the broker has it.
    let reports = futures::future::join_all(deliveries).await;
    acknowledged_in_key_order(
        pending
            .iter()
            .zip(reports)
            .zip(spans)
            .map(|((p, report), span)| {
                let outcome = match report {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("producer dropped the delivery".to_owned()),
                };
                if let Err(e) = &outcome {
                    span.record("otel.status_code", "ERROR");
                    span.record("otel.status_description", e.as_str());
                }
                (p.seq, (p.topic.as_str(), p.key.as_str()), outcome)
            }),
    )
}

/// The producer span of publishing `row`: a child of the trace context its command
/// stored with it.
fn publish_span(row: &Pending) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {}", row.topic),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        messaging.system = "kafka",
        messaging.destination.name = %row.topic,
        outbox.seq = row.seq,
    );
    let stored: std::collections::HashMap<String, String> = row
        .headers
        .iter()
        .filter(|(k, _)| crate::envelope::header::TRACE.contains(&k.as_str()))
        .cloned()
        .collect();
    weft_kit::telemetry::set_parent_from(&span, &weft_kit::telemetry::MapCarrier(stored));
    span
}

/// `headers` with the trace context replaced by `span`'s, so that a consumer's span is
/// a child of the publish. A row stored without a trace context gets none.
fn traced_headers(headers: &[(String, String)], span: &tracing::Span) -> Vec<(String, String)> {
    let trace = crate::envelope::header::TRACE;
    if !headers.iter().any(|(k, _)| trace.contains(&k.as_str())) {
        return headers.to_vec();
    }
    let mut carrier = weft_kit::telemetry::MapCarrier::default();
    weft_kit::telemetry::inject_from(span, &mut carrier);
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !trace.contains(&k.as_str()) || !carrier.0.contains_key(k))
        .cloned()
        .collect();
    let mut injected: Vec<(String, String)> = carrier.0.into_iter().collect();
    injected.sort();
    out.extend(injected);
    out
}

/// The rows of a round that may be marked sent, and the first error: each row the
/// broker acknowledged, unless an earlier row of its (topic, key) failed, since that
/// key's rows must reach the topic in order (they are all sent again next round).
fn acknowledged_in_key_order<'a>(
    outcomes: impl Iterator<Item = (i64, (&'a str, &'a str), Result<(), String>)>,
) -> (Vec<i64>, Option<String>) {
    let mut acked = Vec::new();
    let mut first_error = None;
    let mut held_back: HashSet<(&str, &str)> = HashSet::new();
    for (seq, key, outcome) in outcomes {
        match outcome {
            Ok(()) if !held_back.contains(&key) => acked.push(seq),
            Ok(()) => {}
            Err(e) => {
                held_back.insert(key);
                first_error.get_or_insert(e);
            }
        }
    }
    (acked, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_row_holds_back_the_later_rows_of_its_key_only() {
        let t = "order-events";
        let rows = vec![
            (1, (t, "o-1"), Ok(())),
            (2, (t, "o-2"), Err("timed out".to_owned())),
            (3, (t, "o-1"), Ok(())),
            (4, (t, "o-2"), Ok(())),
            (5, ("user-events", "o-2"), Ok(())),
            (6, (t, "o-3"), Err("too large".to_owned())),
            (7, (t, "o-2"), Ok(())),
        ];
        let (acked, error) = acknowledged_in_key_order(rows.into_iter());
        assert_eq!(acked, vec![1, 3, 5]);
        assert_eq!(error.as_deref(), Some("timed out"));
    }

    #[test]
    fn a_published_record_carries_its_publish_span_in_the_stored_trace() {
        let _telemetry = weft_kit::telemetry::init("outbox-test", &Default::default()).unwrap();
        let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let row = Pending {
            seq: 7,
            topic: "user-events".into(),
            key: "u1".into(),
            headers: vec![
                ("ce_type".into(), "weft.user.v1.UserSignedUp".into()),
                ("traceparent".into(), stored.into()),
            ],
            payload: Vec::new(),
        };
        let span = publish_span(&row);
        let sent = traced_headers(&row.headers, &span);
        assert!(sent.contains(&("ce_type".to_owned(), "weft.user.v1.UserSignedUp".to_owned())));
        let parents: Vec<&str> = sent
            .iter()
            .filter(|(k, _)| k == "traceparent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(parents.len(), 1, "{sent:?}");
        // The same trace, under the publish span instead of the stored one.
        assert!(
            parents[0].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent:?}"
        );
        assert_ne!(parents[0], stored);

        // A row stored without a trace context goes out as it was stored.
        let bare = vec![("ce_type".to_owned(), "weft.user.v1.UserSignedUp".to_owned())];
        assert_eq!(traced_headers(&bare, &span), bare);
    }
}
