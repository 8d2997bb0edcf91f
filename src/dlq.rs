//! `weft dlq`: the dead-letter topics for operators — list what went there and why,
//! show one record decoded, replay records to the topic they came from once their
//! cause is fixed, and purge a dead-letter topic.
//!
//! A replay re-publishes the original key, value and headers (without the `dlq_*`
//! ones, plus `dlq_replayed_from`) to the original topic with the idempotent producer.
//! Every consumer group sees it again: those that applied the event skip it (their
//! inbox knows its `ce_id`), the one that gave up on it tries again — so replaying a
//! record twice applies it once.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::json;
use weft_events::dlq::header;
use weft_events::kafka::KafkaArgs;

use crate::cli::{DlqArgs, DlqCommand, DlqTarget};

/// The header a replayed record carries: `<dlq topic>/<partition>:<offset>`.
pub const REPLAYED_FROM: &str = "dlq_replayed_from";

const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `weft dlq …`.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.kafka();
    let brokers = kafka.clone();
    let dlq_topic = |topic: &str| dlq_topic(topic).map(|t| kafka.topic(&t));
    match args.command {
        DlqCommand::List { topic, json } => {
            let records = tokio::task::spawn_blocking({
                let brokers = brokers.clone();
                let topic = dlq_topic(&topic)?;
                move || read_all(&brokers, &topic)
            })
            .await??;
            list(&records, json)
        }
        DlqCommand::Show { topic, at } => {
            let topic = dlq_topic(&topic)?;
            let (partition, offset) = parse_at(&at)?;
            let records = tokio::task::spawn_blocking(move || read_all(&brokers, &topic)).await??;
            let record = records
                .iter()
                .find(|m| m.partition() == partition && m.offset() == offset)
                .with_context(|| format!("no dead letter at {at}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::tail::render(record))?
            );
            Ok(())
        }
        DlqCommand::Replay {
            topic,
            target,
            group,
        } => {
            let topic = dlq_topic(&topic)?;
            let records = tokio::task::spawn_blocking({
                let (brokers, topic) = (brokers.clone(), topic.clone());
                move || read_all(&brokers, &topic)
            })
            .await??;
            let chosen = choose(&records, &target, group.as_deref())?;
            if chosen.is_empty() {
                println!("nothing to replay");
                return Ok(());
            }
            replay(&brokers, &topic, &chosen).await
        }
        DlqCommand::Purge { topic, yes } => {
            let topic = dlq_topic(&topic)?;
            if !yes && !confirm(&topic)? {
                bail!("not purged: the topic name was not typed");
            }
            purge(&brokers, &topic).await
        }
    }
}

/// `user-events` or `user-events.dlq` → `user-events.dlq`; anything else is refused.
fn dlq_topic(topic: &str) -> anyhow::Result<String> {
    let source = topic.trim_end_matches(".dlq");
    let topic = weft_events::catalog::dead_letter_topic(source);
    if !weft_events::catalog::TOPICS.contains(&source) {
        bail!(
            "{topic} is not a dead-letter topic of weft (those of {})",
            weft_events::catalog::TOPICS.join(", ")
        );
    }
    Ok(topic)
}

/// `2:15` → partition 2, offset 15; `15` → partition 0, offset 15.
fn parse_at(at: &str) -> anyhow::Result<(i32, i64)> {
    let bad = || format!("{at:?} is not <partition>:<offset> or <offset>");
    match at.split_once(':') {
        Some((p, o)) => Ok((p.parse().with_context(bad)?, o.parse().with_context(bad)?)),
        None => Ok((0, at.parse().with_context(bad)?)),
    }
}

/// Every record of `topic` (the cluster's name), partition by partition, to the end as
/// it is now.
fn read_all(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer: BaseConsumer = crate::tail::reader(kafka, "weft-dlq", false)?;
    let partitions = crate::tail::partitions(&consumer, topic, &kafka.brokers)?;
    let mut out = Vec::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + TIMEOUT * 3;
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                bail!("reading {topic} partition {p} timed out at offset {next} of {high}");
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    out.push(m.detach());
                }
                Some(Err(e)) => return Err(e).context("reading the dead-letter topic"),
                None => {}
            }
        }
    }
    Ok(out)
}

fn text_header<'a>(m: &'a OwnedMessage, name: &str) -> &'a str {
    m.headers()
        .and_then(|h| {
            h.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
        })
        .unwrap_or("")
}

fn list(records: &[OwnedMessage], as_json: bool) -> anyhow::Result<()> {
    if records.is_empty() && !as_json {
        println!("no dead letters");
        return Ok(());
    }
    if !as_json {
        println!(
            "{:<10} {:<25} {:<32} {:<20} {:<18} error",
            "at", "dead-lettered", "type", "reason", "group"
        );
    }
    for m in records {
        let at = format!("{}:{}", m.partition(), m.offset());
        let (time, ty, reason, group, error) = (
            text_header(m, header::TIME),
            text_header(m, "ce_type"),
            text_header(m, header::REASON),
            text_header(m, header::CONSUMER_GROUP),
            text_header(m, header::ERROR),
        );
        if as_json {
            println!(
                "{}",
                json!({"partition": m.partition(), "offset": m.offset(), "time": time,
                       "type": ty, "reason": reason, "group": group, "error": error})
            );
        } else {
            let error: String = error.chars().take(80).collect();
            println!("{at:<10} {time:<25} {ty:<32} {reason:<20} {group:<18} {error}");
        }
    }
    Ok(())
}

fn choose<'a>(
    records: &'a [OwnedMessage],
    target: &DlqTarget,
    group: Option<&str>,
) -> anyhow::Result<Vec<&'a OwnedMessage>> {
    let wanted: Option<Vec<(i32, i64)>> = match (&target.offset, target.all) {
        (offsets, false) if !offsets.is_empty() => Some(
            offsets
                .iter()
                .map(|o| parse_at(o))
                .collect::<Result<_, _>>()?,
        ),
        (_, true) => None,
        _ => bail!("say which records: --offset <partition>:<offset> (repeatable) or --all"),
    };
    let chosen: Vec<&OwnedMessage> = records
        .iter()
        .filter(|m| {
            wanted
                .as_ref()
                .is_none_or(|w| w.contains(&(m.partition(), m.offset())))
        })
        .filter(|m| group.is_none_or(|g| text_header(m, header::CONSUMER_GROUP) == g))
        .collect();
    if let Some(w) = &wanted {
        for (p, o) in w {
            if !records
                .iter()
                .any(|m| m.partition() == *p && m.offset() == *o)
            {
                bail!("no dead letter at {p}:{o}");
            }
        }
    }
    Ok(chosen)
}

async fn replay(kafka: &KafkaArgs, dlq: &str, chosen: &[&OwnedMessage]) -> anyhow::Result<()> {
    let producer: FutureProducer = kafka
        .producer("weft-dlq-replay")
        .create()
        .context("creating the Kafka producer")?;
    for m in chosen {
        // The source header holds weft's name of the topic; a dead letter without one
        // goes back to the topic its dead-letter topic is named after.
        let source = match text_header(m, header::SOURCE_TOPIC) {
            "" => dlq.trim_end_matches(".dlq").to_owned(),
            s => kafka.topic(s),
        };
        let source = source.as_str();
        let from = format!("{dlq}/{}:{}", m.partition(), m.offset());
        let mut headers = OwnedHeaders::new();
        if let Some(h) = m.headers() {
            for h in h.iter().filter(|h| !h.key.starts_with("dlq_")) {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: REPLAYED_FROM,
            value: Some(from.as_bytes()),
        });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(source).headers(headers);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        let delivery = producer
            .send(record, TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .with_context(|| format!("replaying {from}"))?;
        println!(
            "replayed {from} → {source} {}:{}",
            delivery.partition, delivery.offset
        );
    }
    println!(
        "{} replayed; consumers that applied them before skip them",
        chosen.len()
    );
    Ok(())
}

fn confirm(topic: &str) -> anyhow::Result<bool> {
    print!("this deletes every record of {topic}; type its name to go on: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == topic)
}

/// Deletes and recreates the topic with as many partitions as it had.
async fn purge(kafka: &KafkaArgs, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client("weft-dlq-purge")
        .create()
        .context("creating the Kafka admin client")?;
    let (partitions, replicas) = {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(topic), TIMEOUT)
            .with_context(|| format!("reading metadata of {topic}"))?;
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| {
                let replicas = t.partitions().first().map_or(1, |p| p.replicas().len());
                (t.partitions().len(), replicas)
            })
            .with_context(|| format!("topic {topic} does not exist"))?
    };
    let replicas = i32::try_from(replicas).unwrap_or(1).max(1);
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for result in admin.delete_topics(&[topic], &options).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }
    let count = i32::try_from(partitions).unwrap_or(1);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let new = NewTopic::new(topic, count, TopicReplication::Fixed(replicas));
        let results = admin.create_topics(&[new], &options).await?;
        match results.into_iter().next() {
            Some(Ok(_)) | None => break,
            Some(Err((_, e))) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "the deletion is not done yet; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Err((t, e))) => bail!("recreating {t}: {e}"),
        }
    }
    println!("purged {topic} ({partitions} partitions, now empty)");
    Ok(())
}
