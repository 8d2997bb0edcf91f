//! The broker's data directory: the topics and their partition logs, the cluster
//! identity and the producer id counter.
//!
//! ```text
//! <data dir>/lock                     held while a broker runs on this directory
//! <data dir>/meta.json                cluster id, next producer id, topics
//! <data dir>/topics/<topic>-<n>/…     partition logs (see crate::log)
//! <data dir>/offsets.log              committed group offsets (see crate::offsets)
//! ```
//!
//! `meta.json` is replaced atomically (write, fsync, rename), so a crash leaves the
//! old or the new version, never a mix.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log::{LogConfig, PartitionLog};

/// Largest number of partitions a topic may have.
pub const MAX_PARTITIONS: i32 = 1000;

/// Errors of the data directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another broker holds the directory.
    #[error("{0} is in use by another broker (its lock file is held)")]
    Locked(PathBuf),
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// `meta.json` is unreadable.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TopicMeta {
    id: uuid::Uuid,
    partitions: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    cluster_id: String,
    next_producer_id: i64,
    topics: BTreeMap<String, TopicMeta>,
}

/// One partition: its log behind a lock, and its end offset readable without it.
pub struct Partition {
    /// The log.
    pub log: Mutex<PartitionLog>,
    end: AtomicI64,
}

impl Partition {
    /// The high watermark, read without the lock.
    pub fn end(&self) -> i64 {
        self.end.load(Ordering::Acquire)
    }

    /// Publishes a new high watermark after an append.
    pub fn set_end(&self, end: i64) {
        self.end.store(end, Ordering::Release);
    }
}

/// A topic.
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Its id (Metadata v10+, for clients that want one).
    pub id: uuid::Uuid,
    /// Its partitions, by index (shared with the topic that replaces this one when
    /// partitions are added).
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// Partition `index`, when the topic has it.
    pub fn partition(&self, index: i32) -> Option<&Partition> {
        self.partitions
            .get(usize::try_from(index).ok()?)
            .map(|p| &**p)
    }
}

/// Why a topic could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateError {
    /// It exists.
    Exists,
    /// The name is not a legal Kafka topic name.
    InvalidName(String),
    /// The partition count is out of range.
    InvalidPartitions(i32),
    /// Writing failed.
    Storage(String),
}

/// Why partitions could not be added to a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowError {
    /// There is no topic of that name.
    UnknownTopic,
    /// The new count is not above the current one, or above the most allowed.
    InvalidPartitions {
        /// The count asked for.
        asked: i32,
        /// The topic's count now.
        now: i32,
    },
    /// Writing failed.
    Storage(String),
}

/// The data directory, open.
pub struct Store {
    dir: PathBuf,
    config: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    meta: Mutex<Meta>,
    appended: watch::Sender<u64>,
    _lock: File,
}

/// Whether `name` is a legal topic name (Kafka's rule: 1–249 of `[a-zA-Z0-9._-]`,
/// not `.` or `..`).
pub fn valid_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic names have 1 to 249 characters, not {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("{c:?} is not allowed in a topic name"));
    }
    Ok(())
}

impl Store {
    /// Opens `dir` (creating it), locks it, and recovers every partition log.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir.join("topics"))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let lock = File::create(dir.join("lock")).map_err(io_err("creating the lock file"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_owned()));
        }
        let meta_path = dir.join("meta.json");
        let meta = match std::fs::read(&meta_path) {
            Ok(bytes) => {
                serde_json::from_slice::<Meta>(&bytes).map_err(|e| StoreError::Corrupt {
                    path: meta_path.clone(),
                    reason: e.to_string(),
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta {
                cluster_id: uuid::Uuid::new_v4().simple().to_string(),
                next_producer_id: 1000,
                topics: BTreeMap::new(),
            },
            Err(e) => return Err(io_err("reading meta.json")(e)),
        };
        let mut topics = BTreeMap::new();
        for (name, t) in &meta.topics {
            let mut partitions = Vec::with_capacity(t.partitions as usize);
            for p in 0..t.partitions {
                let pdir = partition_dir(dir, name, p);
                let log = PartitionLog::open(&pdir, &config)
                    .map_err(io_err(format!("opening {}", pdir.display())))?;
                partitions.push(Arc::new(Partition {
                    end: AtomicI64::new(log.next_offset()),
                    log: Mutex::new(log),
                }));
            }
            topics.insert(
                name.clone(),
                Arc::new(Topic {
                    name: name.clone(),
                    id: t.id,
                    partitions,
                }),
            );
        }
        let store = Self {
            dir: dir.to_owned(),
            config,
            topics: RwLock::new(topics),
            meta: Mutex::new(meta),
            appended: watch::Sender::new(0),
            _lock: lock,
        };
        store.save_meta()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How partitions keep their files.
    pub fn log_config(&self) -> &LogConfig {
        &self.config
    }

    /// The cluster id (made at the first start).
    pub fn cluster_id(&self) -> String {
        lock(&self.meta).cluster_id.clone()
    }

    fn save_meta(&self) -> Result<(), StoreError> {
        let bytes = {
            let meta = lock(&self.meta);
            serde_json::to_vec_pretty(&*meta).map_err(|e| StoreError::Corrupt {
                path: self.dir.join("meta.json"),
                reason: e.to_string(),
            })?
        };
        write_atomically(&self.dir.join("meta.json"), &bytes).map_err(io_err("writing meta.json"))
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        read(&self.topics).get(name).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        read(&self.topics).values().cloned().collect()
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        validate_only: bool,
    ) -> Result<(), CreateError> {
        valid_topic_name(name).map_err(CreateError::InvalidName)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(CreateError::InvalidPartitions(partitions));
        }
        let mut topics = write(&self.topics);
        if topics.contains_key(name) {
            return Err(CreateError::Exists);
        }
        if validate_only {
            return Ok(());
        }
        let logs = self
            .new_partitions(name, 0..partitions)
            .map_err(CreateError::Storage)?;
        let id = uuid::Uuid::new_v4();
        lock(&self.meta)
            .topics
            .insert(name.to_owned(), TopicMeta { id, partitions });
        if let Err(e) = self.save_meta() {
            lock(&self.meta).topics.remove(name);
            return Err(CreateError::Storage(e.to_string()));
        }
        topics.insert(
            name.to_owned(),
            Arc::new(Topic {
                name: name.to_owned(),
                id,
                partitions: logs,
            }),
        );
        Ok(())
    }

    /// Empty partitions `range` of topic `name`, their files made.
    fn new_partitions(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
    ) -> Result<Vec<Arc<Partition>>, String> {
        range
            .map(|p| {
                let pdir = partition_dir(&self.dir, name, p);
                // A directory left by a deleted topic of the same name must not come
                // back.
                let _ = std::fs::remove_dir_all(&pdir);
                let log = PartitionLog::open(&pdir, &self.config).map_err(|e| e.to_string())?;
                Ok(Arc::new(Partition {
                    end: AtomicI64::new(0),
                    log: Mutex::new(log),
                }))
            })
            .collect()
    }

    /// Grows topic `name` to `partitions` partitions (Kafka's CreatePartitions: a
    /// topic never shrinks); its partition count before.
    pub fn add_partitions(
        &self,
        name: &str,
        partitions: i32,
        validate_only: bool,
    ) -> Result<i32, GrowError> {
        let mut topics = write(&self.topics);
        let topic = topics.get(name).cloned().ok_or(GrowError::UnknownTopic)?;
        let now = topic.partitions.len() as i32;
        if partitions <= now || partitions > MAX_PARTITIONS {
            return Err(GrowError::InvalidPartitions {
                asked: partitions,
                now,
            });
        }
        if validate_only {
            return Ok(now);
        }
        let added = self
            .new_partitions(name, now..partitions)
            .map_err(GrowError::Storage)?;
        if let Some(meta) = lock(&self.meta).topics.get_mut(name) {
            meta.partitions = partitions;
        }
        if let Err(e) = self.save_meta() {
            if let Some(meta) = lock(&self.meta).topics.get_mut(name) {
                meta.partitions = now;
            }
            return Err(GrowError::Storage(e.to_string()));
        }
        let mut all = topic.partitions.clone();
        all.extend(added);
        topics.insert(
            name.to_owned(),
            Arc::new(Topic {
                name: topic.name.clone(),
                id: topic.id,
                partitions: all,
            }),
        );
        Ok(now)
    }

    /// Deletes a topic and its data; `false` when there is none of that name.
    pub fn delete_topic(&self, name: &str) -> Result<bool, StoreError> {
        let mut topics = write(&self.topics);
        let Some(topic) = topics.remove(name) else {
            return Ok(false);
        };
        lock(&self.meta).topics.remove(name);
        self.save_meta()?;
        for p in 0..topic.partitions.len() as i32 {
            let pdir = partition_dir(&self.dir, name, p);
            if let Err(e) = std::fs::remove_dir_all(&pdir) {
                tracing::warn!(dir = %pdir.display(), error = %e, "removing a deleted topic's files failed");
            }
        }
        Ok(true)
    }

    /// A new idempotent producer id, never handed out before by this directory.
    pub fn next_producer_id(&self) -> Result<i64, StoreError> {
        let id = {
            let mut meta = lock(&self.meta);
            let id = meta.next_producer_id;
            meta.next_producer_id += 1;
            id
        };
        self.save_meta()?;
        Ok(id)
    }

    /// Tells waiting fetches that data arrived.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever data is appended anywhere.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Flushes every partition written since the last flush.
    pub fn flush(&self) {
        for topic in self.topics() {
            for (i, p) in topic.partitions.iter().enumerate() {
                let file = lock(&p.log).take_dirty();
                if let Some(file) = file
                    && let Err(e) = file.sync_data()
                {
                    tracing::error!(topic = %topic.name, partition = i, error = %e, "flushing the log failed");
                }
            }
        }
    }

    /// Applies the retention limits to every partition.
    pub fn enforce_retention(&self) {
        let now = chrono_now_ms();
        for topic in self.topics() {
            for (i, p) in topic.partitions.iter().enumerate() {
                let deleted = lock(&p.log).enforce_retention(&self.config, now);
                if deleted > 0 {
                    tracing::info!(topic = %topic.name, partition = i, segments = deleted, "expired segments deleted");
                }
            }
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn partition_dir(dir: &Path, topic: &str, partition: i32) -> PathBuf {
    dir.join("topics").join(format!("{topic}-{partition}"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Locks a mutex, taking the data of one poisoned by a panic (every structure here
/// stays consistent between statements).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_survive_a_restart_and_a_second_broker_cannot_open_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), LogConfig::default()).unwrap();
            store.create_topic("orders", 3, false).unwrap();
            assert_eq!(
                store.create_topic("orders", 3, false),
                Err(CreateError::Exists)
            );
            assert!(matches!(
                Store::open(dir.path(), LogConfig::default()),
                Err(StoreError::Locked(_))
            ));
            assert!(store.next_producer_id().unwrap() >= 1000);
        }
        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(store.topic("orders").unwrap().partitions.len(), 3);
        assert!(store.next_producer_id().unwrap() >= 1001);
    }

    #[test]
    fn added_partitions_survive_a_restart_and_a_topic_never_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), LogConfig::default()).unwrap();
            store.create_topic("orders", 2, false).unwrap();
            let before = store.topic("orders").unwrap();
            assert_eq!(store.add_partitions("orders", 5, true), Ok(2));
            assert_eq!(store.topic("orders").unwrap().partitions.len(), 2);
            assert_eq!(store.add_partitions("orders", 5, false), Ok(2));
            let after = store.topic("orders").unwrap();
            assert_eq!(after.partitions.len(), 5);
            assert_eq!(after.id, before.id);
            // The first partitions are the same logs, not copies.
            assert!(Arc::ptr_eq(&before.partitions[1], &after.partitions[1]));
            for (asked, now) in [(5, 5), (3, 5), (MAX_PARTITIONS + 1, 5)] {
                assert_eq!(
                    store.add_partitions("orders", asked, false),
                    Err(GrowError::InvalidPartitions { asked, now })
                );
            }
            assert_eq!(
                store.add_partitions("nope", 3, false),
                Err(GrowError::UnknownTopic)
            );
        }
        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        assert_eq!(store.topic("orders").unwrap().partitions.len(), 5);
    }

    #[test]
    fn names_and_partition_counts_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), LogConfig::default()).unwrap();
        for bad in ["", ".", "..", "a/b", "a b", "naïve", &"x".repeat(250)] {
            assert!(
                matches!(
                    store.create_topic(bad, 1, false),
                    Err(CreateError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            store.create_topic("t", 0, false),
            Err(CreateError::InvalidPartitions(0))
        );
        assert_eq!(
            store.create_topic("t", 100_000, false),
            Err(CreateError::InvalidPartitions(100_000))
        );
        store.create_topic("t", 1, true).unwrap();
        assert!(store.topic("t").is_none(), "validate_only creates nothing");
        store.create_topic("t", 1, false).unwrap();
        assert!(store.delete_topic("t").unwrap());
        assert!(!store.delete_topic("t").unwrap());
    }
}
