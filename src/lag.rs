//! `weft lag`: how far each consumer group of the mesh is behind. weft keeps a
//! group's offsets in the consuming service's own database (with the effects they
//! belong to), not in Kafka, so Kafka's own tools see no committed offsets; this reads
//! them where they are, beside the partitions' ends and the claims that say which
//! replica holds each partition.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use weft_events::Database;
use weft_events::consumer::{claims, offsets};

use crate::cli::LagArgs;

/// The consuming services and their groups (the services' `--consumer-group`
/// defaults).
const GROUPS: [(&str, &str); 3] = [
    ("order", "weft-order"),
    ("notification", "weft-notification"),
    ("analytics", "weft-analytics"),
];

/// One partition of a group, as printed.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    /// The consumer group.
    pub group: String,
    /// The topic (weft's name).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The stored next offset, if the group has stored one.
    pub stored: Option<i64>,
    /// The partition's end (high watermark).
    pub end: i64,
    /// Records not yet applied: the end minus the stored offset (or the partition's
    /// first offset when none is stored).
    pub lag: i64,
    /// The replica holding the partition ("" when none does).
    pub holder: String,
}

/// Runs `weft lag`.
pub async fn run(args: LagArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.kafka();
    let mut rows = Vec::new();
    for (service, group) in GROUPS {
        let db = open(&args.data_dir, args.database_url.as_deref(), service).await?;
        rows.extend(group_rows(&db, &kafka, group).await?);
    }
    print!("{}", render(&rows));
    Ok(())
}

async fn open(data_dir: &Path, shared: Option<&str>, service: &str) -> anyhow::Result<Database> {
    let own = std::env::var(format!("WEFT_{}_DATABASE_URL", service.to_uppercase())).ok();
    let url = match (own, shared) {
        (Some(url), _) => url,
        (None, Some(base)) => crate::up::service_database(base, service)?.0,
        (None, None) => {
            let file = data_dir.join(format!("{service}.db"));
            if !file.is_file() {
                anyhow::bail!(
                    "no {service} database at {}; name the mesh's --data-dir, or --database-url for PostgreSQL",
                    file.display()
                );
            }
            weft_events::db::sqlite_url(data_dir, service)?
        }
    };
    Database::connect(&url)
        .await
        .with_context(|| format!("opening the {service} service's database"))
}

/// Every partition of the topics `group` has stored offsets for.
async fn group_rows(
    db: &Database,
    kafka: &weft_events::kafka::KafkaArgs,
    group: &str,
) -> anyhow::Result<Vec<Row>> {
    let stored = offsets::stored(db, group).await?;
    let holders = claims::holders(db, group).await?;
    let topics: BTreeSet<String> = stored
        .keys()
        .chain(holders.keys())
        .map(|(t, _)| t.clone())
        .collect();
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let topics: Vec<String> = topics.into_iter().collect();
    let marks = offsets::watermarks(kafka, &topics)
        .await
        .with_context(|| format!("reading the ends of {}", topics.join(", ")))?;
    let mut rows: Vec<Row> = marks
        .into_iter()
        .map(|m| {
            let key = (m.topic.clone(), m.partition);
            let at = stored.get(&key).copied();
            Row {
                group: group.to_owned(),
                lag: (m.high - at.unwrap_or(m.low).max(m.low)).max(0),
                stored: at,
                end: m.high,
                holder: holders
                    .get(&key)
                    .map(|(_, h)| h.clone())
                    .unwrap_or_default(),
                topic: m.topic,
                partition: m.partition,
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(rows)
}

/// The table `weft lag` prints, with each group's total.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<20} {:<22} {:>4} {:>10} {:>10} {:>8}  {}\n",
        "GROUP", "TOPIC", "PART", "STORED", "END", "LAG", "HELD BY"
    );
    if rows.is_empty() {
        out.push_str("no consumer group has stored an offset yet\n");
        return out;
    }
    for r in rows {
        out.push_str(&format!(
            "{:<20} {:<22} {:>4} {:>10} {:>10} {:>8}  {}\n",
            r.group,
            r.topic,
            r.partition,
            r.stored.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            r.end,
            r.lag,
            if r.holder.is_empty() { "-" } else { &r.holder }
        ));
    }
    let groups: BTreeSet<&str> = rows.iter().map(|r| r.group.as_str()).collect();
    for g in groups {
        let of: Vec<&Row> = rows.iter().filter(|r| r.group == g).collect();
        out.push_str(&format!(
            "{g}: {} behind over {} partitions\n",
            of.iter().map(|r| r.lag).sum::<i64>(),
            of.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_missing_offsets_and_free_partitions_and_totals() {
        let rows = [
            Row {
                group: "weft-order".into(),
                topic: "user-events".into(),
                partition: 0,
                stored: Some(7),
                end: 10,
                lag: 3,
                holder: "host/order".into(),
            },
            Row {
                group: "weft-order".into(),
                topic: "user-events".into(),
                partition: 1,
                stored: None,
                end: 4,
                lag: 4,
                holder: String::new(),
            },
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("GROUP"), "{text}");
        assert!(
            lines[1].ends_with("host/order") && lines[1].contains(" 3 "),
            "{text}"
        );
        assert!(
            lines[2].contains(" - ") && lines[2].ends_with("  -"),
            "{text}"
        );
        assert_eq!(lines[3], "weft-order: 7 behind over 2 partitions");
        assert!(render(&[]).contains("no consumer group has stored an offset yet"));
    }
}
