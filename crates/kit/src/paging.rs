//! Page tokens for keyset pagination over `(created_at, id)`, newest first: opaque to
//! callers (URL-safe base64), checked when they come back.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::status::{FieldViolation, invalid_argument};

/// The token of the page that follows the row `(created_at, id)`.
pub fn page_token(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}:{id}"))
}

/// The cursor in `token`: `None` for the first page, INVALID_ARGUMENT on `page_token`
/// for anything this service did not issue.
pub fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, tonic::Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        invalid_argument(&[FieldViolation::new(
            "page_token",
            "is not a token this service issued",
        )])
    };
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((at.parse().map_err(|_| bad())?, id.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_rejected() {
        let t = page_token(1_700_000_000_000_000, "0191-abc");
        assert_eq!(
            parse_page_token(&t).unwrap(),
            Some((1_700_000_000_000_000, "0191-abc".to_owned()))
        );
        assert_eq!(parse_page_token("").unwrap(), None);
        for garbage in ["%%%", "bm8tY29sb24", "eDp5"] {
            let err = parse_page_token(garbage).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{garbage}");
        }
    }
}
