//! Committed consumer-group offsets, kept in `offsets.log`: one JSON line per commit
//! of a partition, the last line for a partition winning. The file is rewritten with
//! only the live values when the broker starts and whenever it has grown to several
//! times their number, so it stays small however often consumers commit.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    g: String,
    t: String,
    p: i32,
    o: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    /// The group's protocol type (`consumer`) when its members committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
}

/// Appends the JSON line of one commit to `out`.
fn line(
    out: &mut Vec<u8>,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    metadata: &Option<String>,
    protocol_type: Option<&str>,
) -> io::Result<()> {
    let l = Line {
        g: group.to_owned(),
        t: topic.to_owned(),
        p: partition,
        o: offset,
        m: metadata.clone(),
        k: protocol_type.map(str::to_owned),
    };
    serde_json::to_writer(&mut *out, &l).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

/// A committed offset and its metadata.
pub type Committed = (i64, Option<String>);

/// Every group's committed offsets.
pub struct Offsets {
    path: PathBuf,
    file: File,
    by_group: HashMap<String, BTreeMap<(String, i32), Committed>>,
    /// Protocol types of groups whose members committed: an empty group that had
    /// members keeps it, as Kafka's does.
    protocol_types: HashMap<String, String>,
    lines: usize,
    dirty: bool,
}

impl Offsets {
    /// Loads `dir/offsets.log` (skipping a torn last line) and compacts it.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join("offsets.log");
        let mut by_group: HashMap<String, BTreeMap<(String, i32), Committed>> = HashMap::new();
        let mut protocol_types = HashMap::new();
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line?;
                    match serde_json::from_str::<Line>(&line) {
                        Ok(l) => {
                            if let Some(k) = l.k {
                                protocol_types.insert(l.g.clone(), k);
                            }
                            by_group
                                .entry(l.g)
                                .or_default()
                                .insert((l.t, l.p), (l.o, l.m));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "skipping an unreadable line of offsets.log (a crash mid-write)");
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut offsets = Self {
            path,
            file,
            by_group,
            protocol_types,
            lines: 0,
            dirty: false,
        };
        offsets.compact()?;
        Ok(offsets)
    }

    fn live(&self) -> usize {
        self.by_group.values().map(BTreeMap::len).sum()
    }

    fn compact(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        for (g, parts) in &self.by_group {
            let k = self.protocol_types.get(g).map(String::as_str);
            for ((t, p), (o, m)) in parts {
                line(&mut out, g, t, *p, *o, m, k)?;
            }
        }
        crate::store::write_atomically(&self.path, &out)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = self.live();
        Ok(())
    }

    /// Commits `entries` ((topic, partition, offset, metadata)) for `group` with one
    /// write; `protocol_type` is the group's when a member of it commits.
    pub fn commit(
        &mut self,
        group: &str,
        protocol_type: Option<&str>,
        entries: &[(String, i32, i64, Option<String>)],
    ) -> io::Result<()> {
        let mut out = Vec::new();
        for (t, p, o, m) in entries {
            line(&mut out, group, t, *p, *o, m, protocol_type)?;
        }
        self.file.write_all(&out)?;
        if let Some(k) = protocol_type {
            self.protocol_types.insert(group.to_owned(), k.to_owned());
        }
        let parts = self.by_group.entry(group.to_owned()).or_default();
        for (t, p, o, m) in entries {
            parts.insert((t.clone(), *p), (*o, m.clone()));
        }
        self.lines += entries.len();
        self.dirty = true;
        if self.lines > 10_000 && self.lines > 4 * self.live() {
            self.compact()?;
        }
        Ok(())
    }

    /// The committed offset of one partition.
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.by_group
            .get(group)?
            .get(&(topic.to_owned(), partition))
    }

    /// Every committed partition of `group`.
    pub fn of_group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.by_group
            .get(group)
            .map(|parts| {
                parts
                    .iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The protocol type of `group` when its members committed, `""` otherwise.
    pub fn protocol_type(&self, group: &str) -> &str {
        self.protocol_types.get(group).map_or("", String::as_str)
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.by_group.keys().cloned().collect()
    }

    /// Forgets the offsets of a deleted topic.
    pub fn forget_topic(&mut self, topic: &str) -> io::Result<()> {
        for parts in self.by_group.values_mut() {
            parts.retain(|(t, _), _| t != topic);
        }
        self.by_group.retain(|_, parts| !parts.is_empty());
        let by_group = &self.by_group;
        self.protocol_types.retain(|g, _| by_group.contains_key(g));
        self.compact()
    }

    /// Flushes commits to disk if any were made since the last flush.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_commit_wins_and_survives_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Offsets::open(dir.path()).unwrap();
            o.commit(
                "g",
                Some("consumer"),
                &[
                    ("t".into(), 0, 5, None),
                    ("t".into(), 1, 7, Some("m".into())),
                ],
            )
            .unwrap();
            o.commit("g", None, &[("t".into(), 0, 9, None)]).unwrap();
            o.commit("simple", None, &[("t".into(), 0, 1, None)])
                .unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("offsets.log"))
            .unwrap();
        f.write_all(b"{\"g\":\"g\",\"t\":\"t\",\"p\":0,\"o\":99")
            .unwrap();
        drop(f);
        let o = Offsets::open(dir.path()).unwrap();
        assert_eq!(o.get("g", "t", 0), Some(&(9, None)));
        assert_eq!(o.get("g", "t", 1), Some(&(7, Some("m".into()))));
        assert_eq!(o.of_group("g").len(), 2);
        assert_eq!(o.protocol_type("g"), "consumer");
        assert_eq!(o.protocol_type("simple"), "");
        let text = std::fs::read_to_string(dir.path().join("offsets.log")).unwrap();
        assert_eq!(text.lines().count(), 3, "compacted on open");
        drop(o);
        let o = Offsets::open(dir.path()).unwrap();
        assert_eq!(o.protocol_type("g"), "consumer", "kept by compaction");
    }
}
