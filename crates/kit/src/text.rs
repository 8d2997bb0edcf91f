//! The one rule for free text that reaches a database or a message (names, reasons,
//! carriers, tracking numbers, product names, metadata): every service checks such
//! fields at its RPC boundary with these rules, so no field lets through a NUL byte
//! (PostgreSQL refuses it, and a consumer would choke on it later), a line break
//! into a one-line header, bidirectional overrides that make text read differently
//! than it is, or a link into an email.

/// How a free-text field is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    /// Whether it may be empty (after trimming).
    pub optional: bool,
    /// Longest value, in characters.
    pub max_chars: usize,
    /// Whether line breaks and tabs are allowed (other control characters never are).
    pub multiline: bool,
    /// Whether something that looks like a link (`://`, `www.`) is refused: text that
    /// goes out in emails and text messages must not carry one.
    pub no_links: bool,
    /// Only letters, digits, spaces and `.-&'/#`: for identifiers a person types,
    /// such as a carrier or a tracking number.
    pub plain: bool,
}

impl Text {
    /// A person's or a product's name: required, one line, no links.
    pub const NAME: Text = Text {
        optional: false,
        max_chars: 100,
        multiline: false,
        no_links: true,
        plain: false,
    };
    /// A short free reason (e.g. why an order was cancelled): optional, one line.
    pub const REASON: Text = Text {
        optional: true,
        max_chars: 500,
        multiline: false,
        no_links: false,
        plain: false,
    };
    /// A carrier's name or a tracking number: optional, plain characters, no links.
    pub const CODE: Text = Text {
        optional: true,
        max_chars: 64,
        multiline: false,
        no_links: true,
        plain: true,
    };
    /// An identifier a caller names (a user, order, product or notification id):
    /// required, one line, no control characters — so a NUL byte in a path is a
    /// clear INVALID_ARGUMENT, never a database error.
    pub const ID: Text = Text {
        optional: false,
        max_chars: 64,
        multiline: false,
        no_links: false,
        plain: false,
    };
    /// A value of free-form attributes: optional, one line.
    pub const VALUE: Text = Text {
        optional: true,
        max_chars: 500,
        multiline: false,
        no_links: false,
        plain: false,
    };

    /// What is wrong with `value` (already trimmed), or `None`.
    pub fn problem(&self, value: &str) -> Option<String> {
        let len = value.chars().count();
        if len == 0 {
            return (!self.optional).then(|| "is required".to_owned());
        }
        if len > self.max_chars {
            return Some(format!(
                "is {len} characters long; at most {}",
                self.max_chars
            ));
        }
        if value.contains('\0') {
            return Some("must not contain NUL bytes".to_owned());
        }
        if value
            .chars()
            .any(|c| c.is_control() && !(self.multiline && matches!(c, '\n' | '\t' | '\r')))
        {
            return Some("must not contain control characters".to_owned());
        }
        if value.chars().any(is_bidi_control) {
            return Some("must not contain bidirectional control characters".to_owned());
        }
        if self.no_links {
            let lower = value.to_lowercase();
            if lower.contains("://") || lower.contains("www.") {
                return Some("must not contain a link".to_owned());
            }
        }
        if self.plain
            && let Some(c) = value.chars().find(|c| {
                !(c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '&' | '\'' | '/' | '#'))
            })
        {
            return Some(format!("must not contain {c:?}"));
        }
        if self.plain && self.no_links && value.split_whitespace().any(looks_like_a_domain) {
            return Some("must not contain a web address".to_owned());
        }
        None
    }
}

/// `evil.example`, `a.b.shop`: labels joined by dots, the last of two or more
/// letters. `U.S.` and `1.5` are not.
fn looks_like_a_domain(word: &str) -> bool {
    let labels: Vec<&str> = word.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// Unicode's explicit embedding, override and isolate controls (U+202A–202E,
/// U+2066–2069) and the marks that steer them (U+200E, U+200F, U+061C).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_control_bidi_and_links_are_refused_where_the_rule_says() {
        for bad in ["a\0b", "a\u{7}b", "line\nbreak", "evil\u{202E}txt"] {
            assert!(Text::NAME.problem(bad).is_some(), "{bad:?}");
            assert!(Text::REASON.problem(bad).is_some(), "{bad:?}");
        }
        assert!(Text::NAME.problem("see https://evil.example").is_some());
        assert!(Text::NAME.problem("www.evil.example").is_some());
        assert!(
            Text::REASON
                .problem("see https://example.com/help")
                .is_none()
        );
        assert!(Text::CODE.problem("UPS <script>").is_some());
        assert!(Text::CODE.problem("1Z-999/AA#1").is_none());
        assert!(Text::CODE.problem("Visit evil.example now").is_some());
        assert!(Text::CODE.problem("U.S. Postal Service").is_none());
        assert!(Text::CODE.problem("Parcel 1.5").is_none());
        assert!(Text::NAME.problem("Ada Lovelace").is_none());
        assert!(Text::NAME.problem("").is_some());
        assert!(Text::REASON.problem("").is_none());
        assert!(Text::NAME.problem(&"x".repeat(101)).is_some());
        assert!(Text::NAME.problem("Zoë Ñúñez-O'Brien").is_none());
        let multiline = Text {
            multiline: true,
            ..Text::REASON
        };
        assert!(multiline.problem("two\nlines").is_none());
        assert!(multiline.problem("nul\0").is_some());
    }
}
