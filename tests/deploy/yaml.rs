//! Reading the YAML files.

use super::*;

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One YAML document, with aliases resolved and `<<` merge keys applied.
pub(crate) fn parse(rel: &str, text: &str) -> Value {
    let mut value: Value = serde_norway::from_str(text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    value.apply_merge().unwrap_or_else(|e| panic!("{rel}: {e}"));
    value
}

/// Every document of a multi-document file. It is split at `---` lines rather than
/// with `serde_norway::Deserializer`'s document iterator, which needs
/// `serde::Deserialize` in scope to become values, and serde is no dependency here.
pub(crate) fn documents(rel: &str) -> Vec<Value> {
    let mut texts = vec![String::new()];
    for line in read(rel).lines() {
        if line.trim_end() == "---" {
            texts.push(String::new());
        } else {
            let current = texts.last_mut().unwrap();
            current.push_str(line);
            current.push('\n');
        }
    }
    texts
        .iter()
        .map(|t| parse(rel, t))
        .filter(|v| !v.is_null())
        .collect()
}

/// `path` (dot-separated keys) under `v`, or a panic that says what is missing where.
pub(crate) fn at<'a>(v: &'a Value, path: &str, what: &str) -> &'a Value {
    path.split('.').fold(v, |v, key| {
        v.get(key)
            .unwrap_or_else(|| panic!("{what}: no `{key}` (looking for `{path}`)"))
    })
}

/// A scalar as text (YAML numbers and booleans included).
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// The `key` of every item of the list at `path` under `v`, as text.
pub(crate) fn each_text(v: &Value, path: &str, key: &str, what: &str) -> Vec<String> {
    let items = list(at(v, path, what), what);
    items.iter().map(|item| text(at(item, key, what))).collect()
}

pub(crate) fn list<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, found {v:?}"))
}

pub(crate) fn port(v: &Value) -> u16 {
    text(v).parse().unwrap()
}

/// `host` and `port` of `scheme://host:port[/...]`.
pub(crate) fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let authority = authority.rsplit('@').next().unwrap();
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{url} names no port"));
    (host.to_owned(), port.parse().unwrap())
}
