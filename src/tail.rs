//! `weft tail`: a typed kcat. Reads a topic from every partition and prints each
//! record as one JSON line: where it came from, its headers, and its payload decoded
//! as the protobuf message its `ce_type` names (proto3 JSON).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use prost_reflect::DynamicMessage;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers as _;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::{Value, json};
use weft_events::kafka::KafkaArgs;

use crate::cli::{StartAt, TailArgs};

/// Runs `weft tail`.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.kafka();
    let topic = kafka.topic(&args.topic);
    let consumer: StreamConsumer = reader(&kafka, "weft-tail", args.exit)?;
    let partitions = weft_events::kafka::partitions_of(&consumer, &topic, &kafka.brokers)?;
    let start = match args.from {
        StartAt::Beginning => Offset::Beginning,
        StartAt::End => Offset::End,
    };
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(&topic, *p, start)?;
    }
    consumer.assign(&tpl)?;

    let shutdown = weft_kit::shutdown::on_signal();
    let mut printed = 0usize;
    let mut at_end = BTreeSet::new();
    loop {
        if args.max.is_some_and(|max| printed >= max) {
            break;
        }
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        match next {
            Ok(m) => {
                at_end.remove(&m.partition());
                let record = render(&m);
                let line = if args.pretty {
                    serde_json::to_string_pretty(&record)?
                } else {
                    serde_json::to_string(&record)?
                };
                println!("{line}");
                printed += 1;
            }
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                if at_end.len() == partitions.len() {
                    break;
                }
            }
            Err(e) => return Err(e).context("reading the topic"),
        }
    }
    Ok(())
}

/// A client that reads partitions it is assigned, commits nothing, and reports the
/// end of each partition when `eof`.
pub fn reader<C: rdkafka::config::FromClientConfig>(
    kafka: &KafkaArgs,
    name: &str,
    eof: bool,
) -> anyhow::Result<C> {
    let id = format!("{name}-{}", std::process::id());
    let mut config = kafka.client(&id);
    config
        .set("group.id", kafka.group(&id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", if eof { "true" } else { "false" });
    config.create().context("creating the Kafka client")
}

/// One record as JSON: position, key, headers, and the decoded event.
pub fn render<M: rdkafka::Message>(m: &M) -> Value {
    let headers: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    render_parts(
        m.topic(),
        m.partition(),
        m.offset(),
        m.timestamp().to_millis(),
        m.key(),
        &headers,
        m.payload(),
    )
}

/// A record from its parts as JSON: position, key, headers, and the decoded event.
pub fn render_parts(
    topic: &str,
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
    payload: Option<&[u8]>,
) -> Value {
    let headers: BTreeMap<String, Option<String>> = headers
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                v.map(|v| String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let ce_type = headers.get("ce_type").cloned().flatten();
    let payload = payload.unwrap_or_default();
    let (event, error) = match decode(ce_type.as_deref(), payload) {
        Ok(v) => (v, Value::Null),
        Err(e) => (Value::Null, Value::String(e)),
    };
    let mut out = json!({
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "key": key.map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "type": ce_type,
        "event": event,
    });
    if !error.is_null() {
        out["error"] = error;
        out["payload_hex"] = Value::String(hex_prefix(payload, 64));
    }
    out
}

/// Decodes `payload` as the message `ce_type` names, to proto3 JSON.
pub fn decode(ce_type: Option<&str>, payload: &[u8]) -> Result<Value, String> {
    let ce_type = ce_type.ok_or("no ce_type header")?;
    let descriptor = weft_proto::descriptor_pool()
        .get_message_by_name(ce_type)
        .ok_or_else(|| format!("unknown event type {ce_type}"))?;
    let message = DynamicMessage::decode(descriptor, payload)
        .map_err(|e| format!("undecodable {ce_type}: {e}"))?;
    serde_json::to_value(&message).map_err(|e| e.to_string())
}

fn hex_prefix(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}
