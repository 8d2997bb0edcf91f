//! Reading requests off the wire, safely.
//!
//! Request bodies are decoded here rather than by `kafka-protocol`'s generated
//! decoders because those size a `Vec` from the element count on the wire before
//! reading any element: eight hostile bytes can ask for tens of gigabytes and abort
//! the process (kafka-protocol-rs PRs #152 and #161 are open). [`Reader::array`]
//! refuses a count larger than the bytes left, since every element takes at least one
//! byte. Responses, which the broker builds itself, are encoded by `kafka-protocol`.
//!
//! One reader covers both encodings of the protocol: classic (int16/int32 lengths)
//! and flexible (compact unsigned-varint lengths and tagged fields), chosen per
//! request by its version.

use bytes::{Buf as _, Bytes};

/// A request that cannot be decoded. The connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed request: {0}")]
pub struct WireError(pub String);

/// A cursor over one request body.
pub struct Reader {
    buf: Bytes,
    flexible: bool,
}

impl Reader {
    /// Reads `buf`, in the flexible encoding when `flexible`.
    pub fn new(buf: Bytes, flexible: bool) -> Self {
        Self { buf, flexible }
    }

    /// The unread bytes.
    pub fn rest(self) -> Bytes {
        self.buf
    }

    /// Whether this request uses the flexible encoding.
    pub fn flexible(&self) -> bool {
        self.flexible
    }

    fn need(&self, n: usize, what: &str) -> Result<(), WireError> {
        if self.buf.remaining() < n {
            return Err(WireError(format!("truncated {what}")));
        }
        Ok(())
    }

    /// An `int8`.
    pub fn i8(&mut self) -> Result<i8, WireError> {
        self.need(1, "int8")?;
        Ok(self.buf.get_i8())
    }

    /// A `boolean`.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.i8()? != 0)
    }

    /// An `int16`.
    pub fn i16(&mut self) -> Result<i16, WireError> {
        self.need(2, "int16")?;
        Ok(self.buf.get_i16())
    }

    /// An `int32`.
    pub fn i32(&mut self) -> Result<i32, WireError> {
        self.need(4, "int32")?;
        Ok(self.buf.get_i32())
    }

    /// An `int64`.
    pub fn i64(&mut self) -> Result<i64, WireError> {
        self.need(8, "int64")?;
        Ok(self.buf.get_i64())
    }

    /// A `uuid`.
    pub fn uuid(&mut self) -> Result<uuid::Uuid, WireError> {
        self.need(16, "uuid")?;
        let mut b = [0u8; 16];
        self.buf.copy_to_slice(&mut b);
        Ok(uuid::Uuid::from_bytes(b))
    }

    /// An `unsigned varint` (at most 32 bits).
    pub fn uvarint(&mut self) -> Result<u32, WireError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            self.need(1, "varint")?;
            let b = self.buf.get_u8();
            if i == 4 && b > 0x0f {
                return Err(WireError("varint longer than 32 bits".into()));
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError("varint longer than 32 bits".into()))
    }

    /// The length of a string, bytes or array in this encoding: `None` for null.
    fn length(&mut self, wide: bool, what: &str) -> Result<Option<usize>, WireError> {
        let n: i64 = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(WireError(format!("negative {what} length {n}"))),
            n => {
                let n = n as usize;
                if n > self.buf.remaining() {
                    return Err(WireError(format!(
                        "{what} of {n} does not fit in the {} bytes left",
                        self.buf.remaining()
                    )));
                }
                Ok(Some(n))
            }
        }
    }

    /// A nullable string.
    pub fn nullable_string(&mut self) -> Result<Option<String>, WireError> {
        let Some(n) = self.length(false, "string")? else {
            return Ok(None);
        };
        let raw = self.buf.split_to(n);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| WireError("string is not UTF-8".into()))
    }

    /// A string that must not be null.
    pub fn string(&mut self) -> Result<String, WireError> {
        self.nullable_string()?
            .ok_or_else(|| WireError("null where a string is required".into()))
    }

    /// Nullable bytes.
    pub fn nullable_bytes(&mut self) -> Result<Option<Bytes>, WireError> {
        let Some(n) = self.length(true, "bytes")? else {
            return Ok(None);
        };
        Ok(Some(self.buf.split_to(n)))
    }

    /// Bytes that must not be null.
    pub fn bytes(&mut self) -> Result<Bytes, WireError> {
        self.nullable_bytes()?
            .ok_or_else(|| WireError("null where bytes are required".into()))
    }

    /// A nullable array whose elements `item` reads.
    pub fn nullable_array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<Vec<T>>, WireError> {
        let Some(n) = self.length(true, "array")? else {
            return Ok(None);
        };
        // `n` is bounded by the bytes left, so this allocation is too.
        let mut out = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(Some(out))
    }

    /// An array (null reads as empty).
    pub fn array<T>(
        &mut self,
        item: impl FnMut(&mut Self) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        Ok(self.nullable_array(item)?.unwrap_or_default())
    }

    /// The tagged fields that end a structure in the flexible encoding; skipped, as
    /// none of the requests served here needs one.
    pub fn tagged_fields(&mut self) -> Result<(), WireError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.need(size, "tagged field")?;
            self.buf.advance(size);
        }
        Ok(())
    }

    /// Requires that the body has been read to its last byte.
    pub fn finish(mut self) -> Result<(), WireError> {
        self.tagged_fields()?;
        if self.buf.has_remaining() {
            return Err(WireError(format!(
                "{} unexpected bytes after the request",
                self.buf.remaining()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_anything_is_allocated() {
        let mut r = Reader::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 1, 2]), false);
        let err = r.array(|r| r.i8()).unwrap_err();
        assert!(err.0.contains("does not fit"), "{err}");
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f]), true);
        assert!(r.array(|r| r.i8()).is_err());
    }

    #[test]
    fn classic_and_compact_forms_read_the_same_values() {
        let classic = Bytes::from_static(&[0, 2, b'h', b'i', 0xff, 0xff, 0, 0, 0, 1, 7]);
        let mut r = Reader::new(classic, false);
        assert_eq!(r.string().unwrap(), "hi");
        assert_eq!(r.nullable_string().unwrap(), None);
        assert_eq!(r.array(|r| r.i8()).unwrap(), vec![7]);
        r.finish().unwrap();
        let compact = Bytes::from_static(&[3, b'h', b'i', 0, 2, 7, 1, 9, 1, b'z', 0]);
        let mut r = Reader::new(compact, true);
        assert_eq!(r.string().unwrap(), "hi");
        assert_eq!(r.nullable_string().unwrap(), None);
        assert_eq!(r.array(|r| r.i8()).unwrap(), vec![7]);
        // One tagged field (tag 9, one byte) and the final empty tag section.
        r.tagged_fields().unwrap();
        r.finish().unwrap();
    }

    #[test]
    fn truncation_bad_text_and_trailing_bytes_are_errors() {
        assert!(
            Reader::new(Bytes::from_static(&[0, 1]), false)
                .i32()
                .is_err()
        );
        assert!(
            Reader::new(Bytes::from_static(&[0, 1, 0xff]), false)
                .string()
                .is_err()
        );
        assert!(
            Reader::new(Bytes::from_static(&[0xff, 0xfe]), false)
                .string()
                .is_err()
        );
        assert!(
            Reader::new(Bytes::from_static(&[1]), false)
                .finish()
                .is_err()
        );
        assert!(
            Reader::new(Bytes::from_static(&[0xff; 6]), true)
                .uvarint()
                .is_err()
        );
    }
}
