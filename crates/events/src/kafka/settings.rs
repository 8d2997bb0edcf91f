//! librdkafka settings an operator passes through to every Kafka client weft makes
//! (`--kafka-config KEY=VALUE`, `--kafka-config-file FILE`): what a real cluster asks
//! for — TLS, SASL, timeouts — without weft knowing each one.
//!
//! Settings weft's guarantees rest on (`acks`, idempotence, who stores offsets, the
//! group id) are refused with the reason, not silently overridden. Values of secret
//! settings never print: [`Setting`]'s `Debug` hides them.

use std::fmt;
use std::path::Path;

/// Settings weft sets itself, each with why it cannot be changed.
const OWN: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "name the brokers with --kafka-brokers (KAFKA_BROKERS)",
    ),
    (
        "group.id",
        "weft names its consumer groups (--consumer-group, --kafka-prefix)",
    ),
    (
        "group.instance.id",
        "weft names each replica's static membership after its deployment and replica id (turn it off with --kafka-static-membership=false)",
    ),
    (
        "enable.idempotence",
        "weft's publishers rely on the idempotent producer: a retry never duplicates or reorders",
    ),
    (
        "acks",
        "the outbox marks a row sent only when every in-sync replica has it (acks=all)",
    ),
    (
        "enable.auto.offset.store",
        "a consumer's offset moves only after its handler's transaction commits",
    ),
    (
        "enable.auto.commit",
        "weft keeps offsets in the service database, committed with the effects",
    ),
];

/// One `key=value` librdkafka setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    /// The librdkafka property, e.g. `security.protocol`.
    pub key: String,
    /// Its value, as librdkafka reads it.
    pub value: String,
}

impl Setting {
    /// Whether the value is a secret: passwords, keys, JAAS and OAuth settings.
    pub fn is_secret(&self) -> bool {
        let k = self.key.as_str();
        [
            "password",
            "secret",
            "jaas",
            "oauthbearer.config",
            "key.pem",
            "token",
        ]
        .iter()
        .any(|s| k.contains(s))
            || k == "ssl.key.pem"
            || k == "ssl_key"
    }
}

impl fmt::Debug for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_secret() {
            write!(f, "{}=<hidden>", self.key)
        } else {
            write!(f, "{}={}", self.key, self.value)
        }
    }
}

/// Parses `KEY=VALUE` (the `--kafka-config` flag).
pub fn parse_setting(text: &str) -> Result<Setting, String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "expected KEY=VALUE (a librdkafka setting such as security.protocol=SASL_SSL), got {:?}",
            redact_line(text)
        ));
    };
    let key = key.trim();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        return Err(format!(
            "{key:?} is not a librdkafka setting name (lower-case words joined by dots)"
        ));
    }
    if let Some((_, why)) = OWN.iter().find(|(k, _)| *k == key) {
        return Err(format!("{key} cannot be set: {why}"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("the value of {key} holds a control character"));
    }
    Ok(Setting {
        key: key.to_owned(),
        value: value.trim().to_owned(),
    })
}

/// Settings read from a Java-style properties file (`key=value` lines, `#` or `!`
/// comments), as Kafka's own tools take with `--command-config`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SettingsFile {
    /// Where they came from.
    pub path: std::path::PathBuf,
    /// The settings, in file order.
    pub settings: Vec<Setting>,
}

impl fmt::Debug for SettingsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SettingsFile")
            .field("path", &self.path)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Reads a settings file (the `--kafka-config-file` flag); every line is checked
/// as [`parse_setting`] checks a flag.
pub fn parse_file(path: &str) -> Result<SettingsFile, String> {
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|e| format!("cannot read the Kafka settings file {path}: {e}"))?;
    let mut settings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        settings.push(parse_setting(line).map_err(|e| format!("{path} line {}: {e}", n + 1))?);
    }
    Ok(SettingsFile {
        path: path.into(),
        settings,
    })
}

/// A line shown in an error without what may be a secret after `=` or `:`.
fn redact_line(text: &str) -> String {
    let cut = text.find([':', ' ']).unwrap_or(text.len()).min(40);
    let shown: String = text.chars().take(cut).collect();
    if shown.len() < text.len() {
        format!("{shown}…")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_setting_is_key_equals_value() {
        let s = parse_setting("security.protocol=SASL_SSL").unwrap();
        assert_eq!(
            (s.key.as_str(), s.value.as_str()),
            ("security.protocol", "SASL_SSL")
        );
        let s = parse_setting("sasl.jaas.config=a=b c").unwrap();
        assert_eq!(s.value, "a=b c", "only the first = splits");
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        assert!(
            parse_setting("security.protocol")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(
            parse_setting("=x")
                .unwrap_err()
                .contains("not a librdkafka setting")
        );
        assert!(
            parse_setting("Security Protocol=x")
                .unwrap_err()
                .contains("not a librdkafka")
        );
        let e = parse_setting("acks=1").unwrap_err();
        assert!(
            e.contains("acks cannot be set") && e.contains("acks=all"),
            "{e}"
        );
        assert!(parse_setting("enable.idempotence=false").is_err());
        assert!(parse_setting("group.id=mine").is_err());
        assert!(parse_setting("group.instance.id=mine").is_err());
        assert!(
            parse_setting("client.rack=a\u{7}")
                .unwrap_err()
                .contains("control")
        );
    }

    #[test]
    fn secrets_never_print() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
        ] {
            let s = parse_setting(&format!("{key}=hunter2")).unwrap();
            let shown = format!("{s:?}");
            assert!(!shown.contains("hunter2") && shown.contains(key), "{shown}");
        }
        let s = parse_setting("security.protocol=SASL_SSL").unwrap();
        assert_eq!(format!("{s:?}"), "security.protocol=SASL_SSL");
        let e = parse_setting("sasl.password:hunter2").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_file_is_read_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# TLS\nsecurity.protocol=SASL_SSL\n\n! SASL\nsasl.username = weft\n",
        )
        .unwrap();
        let file = parse_file(path.to_str().unwrap()).unwrap();
        let keys: Vec<_> = file
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [("security.protocol", "SASL_SSL"), ("sasl.username", "weft")]
        );

        std::fs::write(&path, "security.protocol=SSL\nacks=0\n").unwrap();
        let e = parse_file(path.to_str().unwrap()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("acks"), "{e}");
        let e = parse_file("/nonexistent/client.properties").unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
