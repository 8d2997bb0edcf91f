//! Record batches (Kafka's message format v2) as the broker sees them: a fixed
//! 61-byte header it parses and checks, and records it validates but never rewrites.
//!
//! The broker stores a produced batch byte for byte, changing only the base offset and
//! the partition leader epoch, which lie outside the CRC. So a batch is checked once,
//! when it arrives: one batch, magic 2, a length that matches, a CRC32C that matches,
//! no transaction or control bits, a known compression codec, and — when uncompressed
//! — records that parse exactly, with offset deltas 0, 1, 2, … A batch that passes can
//! be served to any client; one that fails is refused with the reason, and nothing of
//! it is written.

use std::fmt;

/// Bytes of the batch header, up to and including the record count.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (base offset and the length itself).
pub const LOG_OVERHEAD: usize = 12;
/// Where the CRC-covered part begins (the attributes).
const CRC_START: usize = 21;

/// Why a produced batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the header says.
    #[error("truncated record batch ({0} bytes)")]
    Truncated(usize),
    /// Not message format v2.
    #[error("unsupported message format (magic {0}); only v2 is accepted")]
    Magic(i8),
    /// `batchLength` does not match the bytes sent.
    #[error("batch length {declared} does not match the {actual} bytes sent")]
    Length {
        /// What the header says.
        declared: i64,
        /// What arrived.
        actual: usize,
    },
    /// The CRC32C does not match.
    #[error("CRC mismatch (header {header:#010x}, computed {computed:#010x})")]
    Crc {
        /// The header's CRC.
        header: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// More than one batch for a partition (Kafka takes exactly one per request).
    #[error("{0} bytes follow the first batch; send one batch per partition and request")]
    Several(usize),
    /// A transactional or control batch: this broker has no transactions.
    #[error("transactional and control batches are not supported")]
    Transactional,
    /// An unknown compression codec.
    #[error("unknown compression codec {0}")]
    Compression(u8),
    /// The record count, offset deltas or record encoding are wrong.
    #[error("malformed records: {0}")]
    Records(String),
}

/// The parsed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field.
    pub batch_length: i32,
    /// Message format.
    pub magic: i8,
    /// CRC32C of everything from the attributes on.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (ms).
    pub base_timestamp: i64,
    /// Largest timestamp of the batch (ms).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub base_sequence: i32,
    /// Records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (at least [`HEADER_LEN`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated(bytes.len()));
        }
        let h = Self {
            base_offset: be_i64(&bytes[0..8]),
            batch_length: be_i32(&bytes[8..12]),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
            attributes: i16::from_be_bytes([bytes[21], bytes[22]]),
            last_offset_delta: be_i32(&bytes[23..27]),
            base_timestamp: be_i64(&bytes[27..35]),
            max_timestamp: be_i64(&bytes[35..43]),
            producer_id: be_i64(&bytes[43..51]),
            producer_epoch: i16::from_be_bytes([bytes[51], bytes[52]]),
            base_sequence: be_i32(&bytes[53..57]),
            records_count: be_i32(&bytes[57..61]),
        };
        if h.magic != 2 {
            return Err(BatchError::Magic(h.magic));
        }
        if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Length {
                declared: i64::from(h.batch_length),
                actual: bytes.len(),
            });
        }
        Ok(h)
    }

    /// Bytes of the whole batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x07) as u8
    }

    /// Whether the batch carries an idempotent producer's sequence.
    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }
}

impl fmt::Display for BatchHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batch of {} at {} (producer {}, epoch {}, sequence {})",
            self.records_count,
            self.base_offset,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence
        )
    }
}

/// Checks one produced batch completely (see the module docs) and returns its header.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if header.total_len() < bytes.len() && BatchHeader::parse(&bytes[header.total_len()..]).is_ok()
    {
        return Err(BatchError::Several(bytes.len() - header.total_len()));
    }
    if header.total_len() != bytes.len() {
        return Err(BatchError::Length {
            declared: i64::from(header.batch_length),
            actual: bytes.len(),
        });
    }
    let computed = crc32c::crc32c(&bytes[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::Crc {
            header: header.crc,
            computed,
        });
    }
    if header.attributes & 0x30 != 0 {
        return Err(BatchError::Transactional);
    }
    if header.compression() > 4 {
        return Err(BatchError::Compression(header.compression()));
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::Records(format!(
            "{} records with last offset delta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.compression() == 0 {
        check_records(&bytes[HEADER_LEN..], header.records_count)?;
    }
    Ok(header)
}

/// Sets the base offset and the partition leader epoch of a batch (neither is covered
/// by the CRC).
pub fn assign_offset(bytes: &mut [u8], base_offset: i64) {
    bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[12..16].copy_from_slice(&0i32.to_be_bytes());
}

/// The timestamp a record without one carries (`RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// The latest record timestamp of a batch that passed [`validate`]: of each record
/// when it is uncompressed, the header's `max_timestamp` otherwise (compressed records
/// are not read). [`NO_TIMESTAMP`] when no record has one.
pub fn max_record_timestamp(bytes: &[u8], header: &BatchHeader) -> i64 {
    if header.compression() != 0 {
        return header.max_timestamp;
    }
    let mut r = Varints {
        bytes: bytes.get(HEADER_LEN..).unwrap_or_default(),
    };
    let mut latest = NO_TIMESTAMP;
    for _ in 0..header.records_count {
        let Ok(body) = r
            .varint("record length")
            .and_then(|n| r.take(usize::try_from(n).unwrap_or(usize::MAX), "record"))
        else {
            break;
        };
        let mut rec = Varints { bytes: body };
        let Ok(delta) = rec
            .take(1, "attributes")
            .and_then(|_| rec.varlong("timestamp delta"))
        else {
            break;
        };
        if header.base_timestamp != NO_TIMESTAMP {
            latest = latest.max(header.base_timestamp.saturating_add(delta));
        }
    }
    latest
}

/// Walks `count` uncompressed records and requires they fill `records` exactly.
fn check_records(records: &[u8], count: i32) -> Result<(), BatchError> {
    let mut r = Varints { bytes: records };
    for expected_delta in 0..count {
        let length = r.varint("record length")?;
        let length = usize::try_from(length)
            .map_err(|_| BatchError::Records(format!("negative record length {length}")))?;
        let body = r.take(length, "record")?;
        let mut rec = Varints { bytes: body };
        rec.take(1, "attributes")?;
        rec.varlong("timestamp delta")?;
        let delta = rec.varint("offset delta")?;
        if delta != i64::from(expected_delta) {
            return Err(BatchError::Records(format!(
                "record {expected_delta} has offset delta {delta}"
            )));
        }
        rec.nullable_blob("key")?;
        rec.nullable_blob("value")?;
        let headers = rec.varint("header count")?;
        if headers < 0 {
            return Err(BatchError::Records(format!("header count {headers}")));
        }
        for _ in 0..headers {
            let key_len = rec.varint("header key length")?;
            let key_len = usize::try_from(key_len)
                .map_err(|_| BatchError::Records("null header key".into()))?;
            let key = rec.take(key_len, "header key")?;
            if std::str::from_utf8(key).is_err() {
                return Err(BatchError::Records("header key is not UTF-8".into()));
            }
            rec.nullable_blob("header value")?;
        }
        if !rec.bytes.is_empty() {
            return Err(BatchError::Records(format!(
                "record {expected_delta} has {} bytes past its headers",
                rec.bytes.len()
            )));
        }
    }
    if !r.bytes.is_empty() {
        return Err(BatchError::Records(format!(
            "{} bytes after the last record",
            r.bytes.len()
        )));
    }
    Ok(())
}

/// A reader of zig-zag varints, as records encode their fields.
struct Varints<'a> {
    bytes: &'a [u8],
}

impl<'a> Varints<'a> {
    fn varlong(&mut self, what: &str) -> Result<i64, BatchError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.bytes.split_first() else {
                return Err(BatchError::Records(format!("truncated {what}")));
            };
            self.bytes = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(BatchError::Records(format!("{what} is not a varint")))
    }

    fn varint(&mut self, what: &str) -> Result<i64, BatchError> {
        let v = self.varlong(what)?;
        if i32::try_from(v).is_err() {
            return Err(BatchError::Records(format!("{what} {v} out of range")));
        }
        Ok(v)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BatchError> {
        if self.bytes.len() < n {
            return Err(BatchError::Records(format!("truncated {what}")));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn nullable_blob(&mut self, what: &str) -> Result<(), BatchError> {
        let len = self.varint(what)?;
        if len < -1 {
            return Err(BatchError::Records(format!("{what} length {len}")));
        }
        if len >= 0 {
            self.take(len as usize, what)?;
        }
        Ok(())
    }
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// An uncompressed batch of `values`, as a producer would send it.
    pub(crate) fn batch(producer: (i64, i16, i32), values: &[&[u8]]) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let mut body = vec![0u8];
            zigzag(0, &mut body);
            zigzag(i as i64, &mut body);
            zigzag(-1, &mut body);
            zigzag(v.len() as i64, &mut body);
            body.extend_from_slice(v);
            zigzag(1, &mut body);
            zigzag(2, &mut body);
            body.extend_from_slice(b"ce");
            zigzag(1, &mut body);
            body.push(b'x');
            zigzag(body.len() as i64, &mut records);
            records.extend_from_slice(&body);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        let length = (HEADER_LEN - LOG_OVERHEAD + records.len()) as i32;
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(values.len() as i32 - 1).to_be_bytes());
        b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        b.extend_from_slice(&producer.0.to_be_bytes());
        b.extend_from_slice(&producer.1.to_be_bytes());
        b.extend_from_slice(&producer.2.to_be_bytes());
        b.extend_from_slice(&(values.len() as i32).to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn the_latest_record_timestamp_is_read_from_the_records() {
        let b = batch((-1, -1, -1), &[b"a", b"b"]);
        let h = validate(&b).unwrap();
        assert_eq!(max_record_timestamp(&b, &h), 1_700_000_000_000);
    }

    #[test]
    fn a_well_formed_batch_passes_and_keeps_its_crc_when_its_offset_moves() {
        let mut b = batch((7, 0, 0), &[b"one", b"two"]);
        let h = validate(&b).unwrap();
        assert_eq!((h.records_count, h.producer_id), (2, 7));
        assign_offset(&mut b, 41);
        let h = validate(&b).unwrap();
        assert_eq!((h.base_offset, h.last_offset()), (41, 42));
    }

    #[test]
    fn every_kind_of_damage_is_refused_with_its_reason() {
        let good = batch((-1, -1, -1), &[b"v"]);
        assert!(matches!(
            validate(&good[..30]),
            Err(BatchError::Truncated(30))
        ));
        let mut magic = good.clone();
        magic[16] = 1;
        assert_eq!(validate(&magic), Err(BatchError::Magic(1)));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(validate(&longer), Err(BatchError::Length { .. })));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(matches!(validate(&flipped), Err(BatchError::Crc { .. })));
        let mut negative = good.clone();
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate(&negative),
            Err(BatchError::Length { .. })
        ));
    }

    fn with_crc(mut b: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_batch_whose_crc_matches_but_whose_records_lie_is_refused() {
        let good = batch((-1, -1, -1), &[b"a", b"b"]);
        let mut count = good.clone();
        count[57..61].copy_from_slice(&3i32.to_be_bytes());
        count[23..27].copy_from_slice(&2i32.to_be_bytes());
        assert!(matches!(
            validate(&with_crc(count)),
            Err(BatchError::Records(_))
        ));
        let mut txn = good.clone();
        txn[22] |= 0x10;
        assert_eq!(validate(&with_crc(txn)), Err(BatchError::Transactional));
        let mut codec = good.clone();
        codec[22] |= 0x07;
        assert_eq!(validate(&with_crc(codec)), Err(BatchError::Compression(7)));
        let mut zero = good;
        zero[57..61].copy_from_slice(&0i32.to_be_bytes());
        zero[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            validate(&with_crc(zero)),
            Err(BatchError::Records(_))
        ));
    }

    #[test]
    fn record_fields_are_walked_to_the_last_byte() {
        let good = batch((-1, -1, -1), &[b"abc"]);
        // Grow the first record's declared length past the batch.
        let mut past = good.clone();
        past[HEADER_LEN] = 0x7e;
        assert!(matches!(
            validate(&with_crc(past)),
            Err(BatchError::Records(_))
        ));
        // Garbage after the records.
        let mut trailing = good.clone();
        trailing.push(0);
        let len = (trailing.len() - LOG_OVERHEAD) as i32;
        trailing[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(
            validate(&with_crc(trailing)),
            Err(BatchError::Records(_))
        ));
        // An endless varint.
        let mut endless = good;
        for b in &mut endless[HEADER_LEN..] {
            *b = 0xff;
        }
        assert!(matches!(
            validate(&with_crc(endless)),
            Err(BatchError::Records(_))
        ));
    }
}
