//! Percent-decoding of raw request path segments, and why a path cannot be matched
//! at all. A variable that covers one segment is fully decoded; one that covers
//! several keeps the RFC 6570 reserved characters encoded.

/// Why a request path cannot be matched at all (bad bytes, not "no route").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    /// A decoded variable is not UTF-8.
    #[error("the path variable {0} is not valid UTF-8 once percent-decoded")]
    NotUtf8(String),
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decodes every escape.
pub(super) fn decode_all(raw: &str) -> Result<Vec<u8>, PathError> {
    decode(raw, |_| true)
}

/// Percent-decodes every escape except those of RFC 6570 reserved characters, which
/// stay encoded (multi-segment variables).
pub(super) fn decode_keep_reserved(raw: &str) -> Result<Vec<u8>, PathError> {
    decode(raw, |b| !b":/?#[]@!$&'()*+,;=".contains(&b))
}

fn decode(raw: &str, decode_byte: impl Fn(u8) -> bool) -> Result<Vec<u8>, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape);
            };
            let b = (h << 4) | l;
            if decode_byte(b) {
                out.push(b);
            } else {
                out.extend_from_slice(&bytes[i..i + 3]);
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}
