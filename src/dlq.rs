//! `weft dlq`: the dead-letter topics for operators — list what went there and why,
//! show one record decoded, replay records to the topic they came from once their
//! cause is fixed, and purge a dead-letter topic. The work is
//! [`weft_events::dlq::admin`]'s, shared with the operations API; this prints it.

use std::io::{BufRead as _, Write as _};

use anyhow::bail;
use serde_json::json;
use weft_events::dlq::admin::{self, DeadLetter, dlq_topic, parse_position};
use weft_events::dlq::header;
use weft_events::kafka::KafkaArgs;

use crate::cli::{DlqArgs, DlqCommand, DlqTarget};

/// Runs `weft dlq …`.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.kafka();
    let brokers = kafka.clone();
    let dlq_topic = |topic: &str| dlq_topic(topic).map(|t| kafka.topic(&t));
    match args.command {
        DlqCommand::List { topic, json } => {
            let records = read_all(&brokers, dlq_topic(&topic)?).await?;
            list(&records, json)
        }
        DlqCommand::Show { topic, at } => {
            let topic = dlq_topic(&topic)?;
            let (partition, offset) = parse_position(&at)?;
            let records = read_all(&brokers, topic.clone()).await?;
            let chosen = admin::choose(&topic, &records, Some(&[(partition, offset)]), None)?;
            for record in chosen {
                println!("{}", serde_json::to_string_pretty(&render(record))?);
            }
            Ok(())
        }
        DlqCommand::Replay {
            topic,
            target,
            group,
        } => {
            let topic = dlq_topic(&topic)?;
            let records = read_all(&brokers, topic.clone()).await?;
            let positions = positions(&target)?;
            let chosen = admin::choose(&topic, &records, positions.as_deref(), group.as_deref())?;
            if chosen.is_empty() {
                println!("nothing to replay");
                return Ok(());
            }
            for r in admin::replay(&brokers, &topic, &chosen).await? {
                println!(
                    "replayed {} → {} {}:{}",
                    r.from, r.topic, r.partition, r.offset
                );
            }
            println!(
                "{} replayed; consumers that applied them before skip them",
                chosen.len()
            );
            Ok(())
        }
        DlqCommand::Purge { topic, yes } => {
            let topic = dlq_topic(&topic)?;
            if !yes && !confirm(&topic)? {
                bail!("not purged: the topic name was not typed");
            }
            let partitions = admin::purge(&brokers, &topic).await?;
            println!("purged {topic} ({partitions} partitions, now empty)");
            Ok(())
        }
    }
}

/// Every record of `topic`, read off the async workers.
async fn read_all(kafka: &KafkaArgs, topic: String) -> anyhow::Result<Vec<DeadLetter>> {
    let kafka = kafka.clone();
    Ok(tokio::task::spawn_blocking(move || admin::read_all(&kafka, &topic)).await??)
}

/// The positions `--offset` names, or `None` for `--all`.
fn positions(target: &DlqTarget) -> anyhow::Result<Option<Vec<(i32, i64)>>> {
    match (&target.offset, target.all) {
        (_, true) => Ok(None),
        (offsets, false) if !offsets.is_empty() => Ok(Some(
            offsets
                .iter()
                .map(|o| parse_position(o))
                .collect::<Result<_, _>>()?,
        )),
        _ => bail!("say which records: --offset <partition>:<offset> (repeatable) or --all"),
    }
}

/// A dead letter as `weft tail` renders a record: position, key, headers, the
/// decoded event.
fn render(m: &DeadLetter) -> serde_json::Value {
    let headers: Vec<(&str, Option<&[u8]>)> = m
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    crate::tail::render_parts(
        &m.topic,
        m.partition,
        m.offset,
        m.timestamp_ms,
        m.key.as_deref(),
        &headers,
        m.payload.as_deref(),
    )
}

fn list(records: &[DeadLetter], as_json: bool) -> anyhow::Result<()> {
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
        let (time, ty, reason, group, error) = (
            m.header(header::TIME),
            m.event_type(),
            m.reason(),
            m.group(),
            m.header(header::ERROR),
        );
        if as_json {
            println!(
                "{}",
                json!({"partition": m.partition, "offset": m.offset, "time": time,
                       "type": ty, "reason": reason, "group": group, "error": error})
            );
        } else {
            let error: String = error.chars().take(80).collect();
            let at = m.position();
            println!("{at:<10} {time:<25} {ty:<32} {reason:<20} {group:<18} {error}");
        }
    }
    Ok(())
}

fn confirm(topic: &str) -> anyhow::Result<bool> {
    print!("this deletes every record of {topic}; type its name to go on: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == topic)
}
