//! The log of one partition: segment files of record batches in Kafka's own on-disk
//! format (`<base offset>.log`, batches back to back), an in-memory index of every
//! batch, and the producers' sequence state.
//!
//! Appends go to the newest segment with one `write` each, so an acknowledged batch
//! is in the operating system's page cache at once and survives the broker's own
//! crash; a flush task makes it survive the machine's within the flush interval
//! (Kafka's model too: it leaves `fsync` to replication and the OS). On start-up the
//! segments are scanned header by header; the newest one is also checked batch by
//! batch against its CRCs, and a torn write at its end (a crash mid-append) is cut
//! off. Reads find the batch that holds an offset by binary search and return a slice
//! of the file to read without holding the partition's lock.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::producers::{Check, Producers};

/// How a partition's files are kept.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Closed segments whose newest record is older than this are deleted.
    pub retention: Option<Duration>,
    /// Closed segments are deleted, oldest first, while the partition is larger.
    pub retention_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
        }
    }
}

/// Where one batch lies.
#[derive(Debug, Clone, Copy)]
struct Entry {
    base: i64,
    last: i64,
    pos: u64,
    len: u32,
    max_timestamp: i64,
}

struct Segment {
    base: i64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    entries: Vec<Entry>,
}

impl Segment {
    fn max_timestamp(&self) -> i64 {
        self.entries
            .iter()
            .map(|e| e.max_timestamp)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// A byte range of a segment file holding whole batches, to read outside the lock.
#[derive(Clone)]
pub struct Slice {
    /// The segment file.
    pub file: Arc<File>,
    /// First byte.
    pub pos: u64,
    /// Length in bytes.
    pub len: usize,
}

impl Slice {
    /// Reads the range.
    pub fn read(&self) -> io::Result<bytes::Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.pos)?;
        Ok(buf.into())
    }
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The producer check refused it with this Kafka error code.
    #[error("refused by the producer sequence check (error {0})")]
    Refused(i16),
    /// Writing failed; nothing of the batch is in the log.
    #[error("writing the log failed: {0}")]
    Io(#[from] io::Error),
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Whether it was a retry of a batch already written.
    pub duplicate: bool,
}

/// One partition's log.
pub struct PartitionLog {
    dir: PathBuf,
    segments: Vec<Segment>,
    next_offset: i64,
    producers: Producers,
    dirty: bool,
    segment_bytes: u64,
}

fn segment_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn open_segment_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
}

/// Reads the header of the batch at `pos` of a segment of `size` bytes and moves
/// `reader` past the batch. `None` when the valid part of the segment ends there: the
/// batch is torn, does not continue the log at `expected`, or (with `verify`) fails its
/// checks; `body` is scratch space for that check.
fn read_batch(
    reader: &mut BufReader<&File>,
    pos: u64,
    size: u64,
    expected: i64,
    verify: bool,
    body: &mut Vec<u8>,
) -> io::Result<Option<BatchHeader>> {
    let mut header = [0u8; HEADER_LEN];
    if size - pos < HEADER_LEN as u64 || reader.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let Ok(h) = BatchHeader::parse(&header) else {
        return Ok(None);
    };
    let len = h.total_len() as u64;
    if pos + len > size || h.base_offset != expected {
        return Ok(None);
    }
    if verify {
        body.clear();
        body.extend_from_slice(&header);
        body.resize(len as usize, 0);
        if reader.read_exact(&mut body[HEADER_LEN..]).is_err() || batch::validate(body).is_err() {
            return Ok(None);
        }
    } else {
        reader.seek_relative(len as i64 - HEADER_LEN as i64)?;
    }
    Ok(Some(h))
}

/// Truncates a segment file to its valid first `valid_end` bytes (of `size`), durably.
fn cut_off(file: &File, path: &Path, valid_end: u64, size: u64) -> io::Result<()> {
    tracing::warn!(
        segment = %path.display(),
        kept = valid_end,
        dropped = size - valid_end,
        "cutting off a torn or damaged end of the log (a crash during an append)"
    );
    file.set_len(valid_end)?;
    file.sync_all()
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering what a crash left.
    pub fn open(dir: &Path, config: &LogConfig) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<i64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        let mut log = Self {
            dir: dir.to_owned(),
            segments: Vec::with_capacity(bases.len()),
            next_offset: bases.first().copied().unwrap_or(0),
            producers: Producers::default(),
            dirty: false,
            segment_bytes: config.segment_bytes,
        };
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let newest = i + 1 == count;
            if base != log.next_offset {
                // A gap between segments can only come from damage: keep the
                // continuous part and set the rest aside.
                tracing::error!(dir = %dir.display(), base, expected = log.next_offset, "segment does not continue the log; moving it aside");
                let path = segment_path(dir, base);
                std::fs::rename(&path, path.with_extension("log.damaged"))?;
                continue;
            }
            let segment = log.scan(base, newest)?;
            log.segments.push(segment);
        }
        if log.segments.is_empty() {
            let base = log.next_offset;
            log.segments.push(log.new_segment(base)?);
        }
        Ok(log)
    }

    fn new_segment(&self, base: i64) -> io::Result<Segment> {
        let path = segment_path(&self.dir, base);
        let file = open_segment_file(&path)?;
        Ok(Segment {
            base,
            path,
            file: Arc::new(file),
            size: 0,
            entries: Vec::new(),
        })
    }

    /// Reads a segment's batch headers (and, for the newest, checks each batch in
    /// full), truncating it at the first batch that is torn or does not continue.
    fn scan(&mut self, base: i64, verify: bool) -> io::Result<Segment> {
        let path = segment_path(&self.dir, base);
        let file = open_segment_file(&path)?;
        let size = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(256 * 1024, &file);
        let mut entries = Vec::new();
        let mut pos: u64 = 0;
        let mut body = Vec::new();
        while pos < size {
            let next = read_batch(&mut reader, pos, size, self.next_offset, verify, &mut body)?;
            let Some(h) = next else {
                break;
            };
            let len = h.total_len() as u64;
            entries.push(Entry {
                base: h.base_offset,
                last: h.last_offset(),
                pos,
                len: len as u32,
                max_timestamp: h.max_timestamp,
            });
            self.producers.record(&h, h.base_offset);
            self.next_offset = h.last_offset() + 1;
            pos += len;
        }
        drop(reader);
        if pos < size {
            cut_off(&file, &path, pos, size)?;
        }
        Ok(Segment {
            base,
            path,
            file: Arc::new(file),
            size: pos,
            entries,
        })
    }

    /// The offset the next record gets (the high watermark: every record is committed
    /// once written, with one replica).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The oldest offset still in the log.
    pub fn log_start(&self) -> i64 {
        self.segments
            .first()
            .and_then(|s| s.entries.first())
            .map_or(self.next_offset, |e| e.base)
    }

    /// Producers remembered by this partition.
    pub fn producers(&self) -> &Producers {
        &self.producers
    }

    /// Appends one validated batch (`h` is its header), unless the producer check
    /// says it is a duplicate or refuses it.
    pub fn append(&mut self, bytes: &mut [u8], h: &BatchHeader) -> Result<Appended, AppendError> {
        match self.producers.check(h) {
            Check::Append => {}
            Check::Duplicate(base_offset) => {
                return Ok(Appended {
                    base_offset,
                    duplicate: true,
                });
            }
            Check::Refuse(code) => return Err(AppendError::Refused(code)),
        }
        let len = bytes.len() as u64;
        let base_offset = self.next_offset;
        batch::assign_offset(bytes, base_offset);
        let needs_roll = self
            .segments
            .last()
            .is_none_or(|s| s.size > 0 && s.size + len > self.segment_bytes);
        if needs_roll {
            if let Some(old) = self.segments.last() {
                old.file.sync_data()?;
            }
            let segment = self.new_segment(base_offset)?;
            self.segments.push(segment);
        }
        let Some(active) = self.segments.last_mut() else {
            return Err(AppendError::Io(io::Error::other("no active segment")));
        };
        if let Err(e) = (&*active.file).write_all(bytes) {
            // Leave no partial batch behind.
            let _ = active.file.set_len(active.size);
            return Err(e.into());
        }
        let header_last = base_offset + i64::from(h.last_offset_delta);
        active.entries.push(Entry {
            base: base_offset,
            last: header_last,
            pos: active.size,
            len: len as u32,
            max_timestamp: h.max_timestamp,
        });
        active.size += len;
        self.producers.record(h, base_offset);
        self.next_offset = header_last + 1;
        self.dirty = true;
        Ok(Appended {
            base_offset,
            duplicate: false,
        })
    }

    /// The whole batches from the one holding `offset` on, up to `max_bytes` (but
    /// always at least that first batch), within one segment. `None` when `offset`
    /// is at or past the end, or before the start.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Option<Slice> {
        if offset >= self.next_offset || offset < self.log_start() {
            return None;
        }
        let si = self.segments.partition_point(|s| s.base <= offset);
        let segment = self.segments.get(si.checked_sub(1)?)?;
        let first = segment.entries.partition_point(|e| e.last < offset);
        let start = segment.entries.get(first)?;
        let mut len = u64::from(start.len);
        for e in &segment.entries[first + 1..] {
            if len + u64::from(e.len) > max_bytes as u64 {
                break;
            }
            len += u64::from(e.len);
        }
        Some(Slice {
            file: segment.file.clone(),
            pos: start.pos,
            len: len as usize,
        })
    }

    /// The first offset of the first batch whose newest record is at or after
    /// `timestamp` (ms), with that batch's timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .flat_map(|s| s.entries.iter())
            .find(|e| e.max_timestamp >= timestamp)
            .map(|e| (e.base, e.max_timestamp))
    }

    /// The newest segment's file, when it holds writes not yet flushed; clears the
    /// mark (the caller flushes outside the lock).
    pub fn take_dirty(&mut self) -> Option<Arc<File>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.segments.last().map(|s| s.file.clone())
    }

    /// Deletes closed segments past the retention limits; returns how many.
    pub fn enforce_retention(&mut self, config: &LogConfig, now_ms: i64) -> usize {
        let mut total: u64 = self.segments.iter().map(|s| s.size).sum();
        let mut deleted = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_old = config.retention.is_some_and(|r| {
                oldest.max_timestamp()
                    < now_ms.saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX))
            });
            let too_big = config.retention_bytes.is_some_and(|b| total > b);
            if !(too_old || too_big) {
                break;
            }
            let segment = self.segments.remove(0);
            total -= segment.size;
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::warn!(segment = %segment.path.display(), error = %e, "deleting an expired segment failed");
            }
            deleted += 1;
        }
        deleted
    }

    /// Bytes on disk.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Flushes the newest segment now.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(s) = self.segments.last() {
            s.file.sync_data()?;
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::batch;

    fn append(log: &mut PartitionLog, producer: (i64, i16, i32), values: &[&[u8]]) -> Appended {
        let mut b = batch(producer, values);
        let h = batch::validate(&b).unwrap();
        log.append(&mut b, &h).unwrap()
    }

    #[test]
    fn offsets_run_on_across_batches_and_reads_return_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), &LogConfig::default()).unwrap();
        assert_eq!(append(&mut log, (-1, -1, -1), &[b"a", b"b"]).base_offset, 0);
        assert_eq!(append(&mut log, (-1, -1, -1), &[b"c"]).base_offset, 2);
        assert_eq!(log.next_offset(), 3);
        let slice = log.read(1, 1).unwrap();
        let bytes = slice.read().unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!((h.base_offset, h.records_count), (0, 2));
        assert_eq!(
            bytes.len(),
            h.total_len(),
            "max_bytes 1 still gives one batch"
        );
        let both = log.read(0, 1 << 20).unwrap().read().unwrap();
        assert!(both.len() > bytes.len());
        assert!(log.read(3, 100).is_none());
    }

    #[test]
    fn a_reopened_log_has_its_offsets_and_producers_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PartitionLog::open(dir.path(), &LogConfig::default()).unwrap();
            append(&mut log, (5, 0, 0), &[b"a", b"b"]);
        }
        let mut log = PartitionLog::open(dir.path(), &LogConfig::default()).unwrap();
        assert_eq!(log.next_offset(), 2);
        assert!(append(&mut log, (5, 0, 0), &[b"a", b"b"]).duplicate);
        assert_eq!(append(&mut log, (5, 0, 2), &[b"c"]).base_offset, 2);
    }

    #[test]
    fn a_torn_append_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = PartitionLog::open(dir.path(), &LogConfig::default()).unwrap();
            append(&mut log, (-1, -1, -1), &[b"kept"]);
        }
        let path = segment_path(dir.path(), 0);
        let mut torn = batch((-1, -1, -1), &[b"torn"]);
        batch::assign_offset(&mut torn, 1);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(f);
        let log = PartitionLog::open(dir.path(), &LogConfig::default()).unwrap();
        assert_eq!(log.next_offset(), 1);
        let kept = std::fs::metadata(&path).unwrap().len();
        assert_eq!(kept as usize, batch((-1, -1, -1), &[b"kept"]).len());
    }

    #[test]
    fn segments_roll_and_old_ones_expire_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 200,
            retention: None,
            retention_bytes: Some(300),
        };
        let mut log = PartitionLog::open(dir.path(), &config).unwrap();
        for _ in 0..10 {
            append(&mut log, (-1, -1, -1), &[&[7u8; 60]]);
        }
        assert!(log.segments.len() > 3);
        let deleted = log.enforce_retention(&config, 0);
        assert!(deleted > 0);
        assert!(log.size() <= 300 + 200);
        assert!(log.log_start() > 0);
        assert!(log.read(0, 100).is_none(), "deleted offsets are gone");
        let reopened = PartitionLog::open(dir.path(), &config).unwrap();
        assert_eq!(reopened.log_start(), log.log_start());
        assert_eq!(reopened.next_offset(), 10);
    }
}
