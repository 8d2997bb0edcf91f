//! The user domain: validated values parsed from requests at the gRPC edge.

use std::collections::BTreeMap;

pub use crate::error::UserError;

/// Collects field violations while parsing a request.
pub type Violations = weft_kit::status::Violations<UserError>;

/// An email address, trimmed and lower-cased.
pub fn parse_email(raw: &str, field: &str, v: &mut Violations) -> String {
    let email = raw.trim().to_lowercase();
    let problem = if email.is_empty() {
        Some("is required")
    } else if email.len() > 254 {
        Some("is longer than 254 characters")
    } else if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters")
    } else {
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..") =>
            {
                None
            }
            _ => Some("is not an email address"),
        }
    };
    if let Some(p) = problem {
        v.add(field, p);
    }
    email
}

/// A display name: the free-text rule for names (1–100 characters after trimming,
/// one line, no control characters, no links: it goes out in emails).
pub fn parse_name(raw: &str, field: &str, v: &mut Violations) -> String {
    let name = raw.trim().to_owned();
    if let Some(problem) = weft_kit::text::Text::NAME.problem(&name) {
        v.add(field, problem);
    }
    name
}

/// A phone number in E.164 form (`+` and 7–15 digits), or empty.
pub fn parse_phone(raw: &str, field: &str, v: &mut Violations) -> String {
    let phone = raw.trim().to_owned();
    if phone.is_empty() {
        return phone;
    }
    let digits = phone.strip_prefix('+').unwrap_or("");
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        v.add(field, "must be in E.164 form, e.g. +14155550123");
    }
    phone
}

/// A password: 10–128 characters, with at least one letter and one non-letter, and
/// not containing the local part of the email.
pub fn check_password(password: &str, email: &str, field: &str, v: &mut Violations) {
    let len = password.chars().count();
    if len < 10 {
        v.add(field, "must be at least 10 characters");
    } else if len > 128 {
        v.add(field, "must be at most 128 characters");
    } else if !password.chars().any(char::is_alphabetic)
        || password.chars().all(char::is_alphabetic)
    {
        v.add(field, "must mix letters with digits or symbols");
    } else if let Some((local, _)) = email.split_once('@')
        && local.len() >= 4
        && password.to_lowercase().contains(local)
    {
        v.add(field, "must not contain your email address");
    }
}

/// Free-form attributes: at most 20, keys 1–64 characters, values at most 256.
pub fn check_metadata(metadata: &BTreeMap<String, String>, field: &str, v: &mut Violations) {
    if metadata.len() > 20 {
        v.add(field, format!("has {} entries; at most 20", metadata.len()));
        return;
    }
    let key_rule = weft_kit::text::Text {
        optional: false,
        max_chars: 64,
        ..weft_kit::text::Text::VALUE
    };
    let value_rule = weft_kit::text::Text {
        max_chars: 256,
        ..weft_kit::text::Text::VALUE
    };
    for (k, val) in metadata {
        let key_field = format!("{field}[{}]", k.escape_debug());
        if let Some(problem) = key_rule.problem(k) {
            v.add(&key_field, format!("key {problem}"));
        } else if let Some(problem) = value_rule.problem(val) {
            v.add(&key_field, format!("value {problem}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email_ok(s: &str) -> bool {
        let mut v = Violations::default();
        parse_email(s, "email", &mut v);
        v.finish(()).is_ok()
    }

    #[test]
    fn emails() {
        assert!(email_ok("Ada@Example.com"));
        assert!(email_ok("a.b+tag@sub.example.org"));
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
            "ada@.com",
            "ada@example..com",
        ] {
            assert!(!email_ok(bad), "{bad:?}");
        }
        assert!(!email_ok(&format!("{}@example.com", "a".repeat(65))));
    }

    #[test]
    fn passwords() {
        let check = |p: &str| {
            let mut v = Violations::default();
            check_password(p, "ada.lovelace@example.com", "password", &mut v);
            v.finish(()).is_ok()
        };
        assert!(check("correct horse 42"));
        assert!(!check("short1"));
        assert!(!check("onlyletterspassword"));
        assert!(!check("1234567890123"));
        assert!(!check("my-ada.lovelace-1"));
        assert!(!check(&"a1".repeat(65)));
    }

    #[test]
    fn phones_and_names() {
        let mut v = Violations::default();
        assert_eq!(
            parse_phone(" +14155550123 ", "phone", &mut v),
            "+14155550123"
        );
        parse_phone("", "phone", &mut v);
        assert!(v.finish(()).is_ok());
        for bad in ["14155550123", "+0123456789", "+1-415-555", "+12"] {
            let mut v = Violations::default();
            parse_phone(bad, "phone", &mut v);
            assert!(v.finish(()).is_err(), "{bad}");
        }
        let mut v = Violations::default();
        parse_name(&"x".repeat(1_000_000), "name", &mut v);
        parse_name("  ", "name2", &mut v);
        let Err(UserError::Invalid(list)) = v.finish(()) else {
            panic!("expected violations")
        };
        assert_eq!(list.len(), 2);
    }
}
