//! `google.api.http` path templates: parsing and matching.
//!
//! The grammar (from `google/api/http.proto`):
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! Matching works on the raw (still percent-encoded) request path. A variable that
//! covers one segment is fully percent-decoded; one that covers several keeps the
//! reserved characters (`%2F` and friends) encoded, as the HttpRule spec asks, so a
//! value can always be split back into its segments.

mod decode;
mod syntax;

use std::cmp::Ordering;
use std::fmt;

pub use self::decode::PathError;
use self::decode::{decode_all, decode_keep_reserved};
pub use self::syntax::{Segment, Variable};

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: &'static str,
}

/// A parsed path template.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
    verb: Option<String>,
    variables: Vec<Variable>,
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The variables a path bound: (field path, value) in template order.
pub type Bindings = Vec<(Vec<String>, String)>;

impl Template {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let err = |reason| TemplateError {
            template: source.to_owned(),
            reason,
        };
        let rest = source
            .strip_prefix('/')
            .ok_or_else(|| err("must start with '/'"))?;
        let parts = syntax::parts(rest).map_err(err)?;
        Ok(Self {
            source: source.to_owned(),
            segments: parts.segments,
            verb: parts.verb,
            variables: parts.variables,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Its variables, in order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// Its custom verb, if any (`ship` in `/v1/orders/{id}:ship`).
    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// The OpenAPI names of the variables, in order: the leaf field's name
    /// (`{user.user_id}` is `user_id`), or the whole path joined with `_` when two
    /// variables share a leaf name or a nested leaf's name is `taken` (by a
    /// top-level field, which would be a query parameter of the same name). Dots
    /// would be read as nested lookups by tools, and two templates of the same shape
    /// must name their parameters alike to be one OpenAPI path.
    pub fn openapi_names(&self, taken: impl Fn(&str) -> bool) -> Vec<String> {
        let leaf = |v: &Variable| v.field_path.last().cloned().unwrap_or_default();
        self.variables
            .iter()
            .map(|v| {
                let clash = self.variables.iter().filter(|o| leaf(o) == leaf(v)).count() > 1
                    || (v.field_path.len() > 1 && taken(&leaf(v)));
                if clash {
                    v.field_path.join("_")
                } else {
                    leaf(v)
                }
            })
            .collect()
    }

    /// The template as an OpenAPI path: every variable becomes `{name}` with the
    /// `names` of [`Self::openapi_names`], and a bare `*`/`**` outside a variable
    /// stays as is.
    pub fn openapi_path(&self, names: &[String]) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.segments.len() {
            out.push('/');
            if let Some((k, v)) = self
                .variables
                .iter()
                .enumerate()
                .find(|(_, v)| v.start == i)
            {
                out.push('{');
                out.push_str(names.get(k).map_or("", String::as_str));
                out.push('}');
                i += v.len.max(1);
                continue;
            }
            match &self.segments[i] {
                Segment::Literal(l) => out.push_str(l),
                Segment::Single => out.push('*'),
                Segment::Multi => out.push_str("**"),
            }
            i += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// The segment patterns a variable covers, as written (`users/*`); `*` for a bare
    /// `{field}`.
    pub fn variable_pattern(&self, v: &Variable) -> String {
        self.segments[v.start..v.start + v.len]
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.as_str(),
                Segment::Single => "*",
                Segment::Multi => "**",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Matches a raw request path (no query). `Ok(None)`: no match.
    pub fn matches(&self, raw_path: &str) -> Result<Option<Bindings>, PathError> {
        let Some(rest) = raw_path.strip_prefix('/') else {
            return Ok(None);
        };
        let Some(rest) = self.without_verb(rest)? else {
            return Ok(None);
        };
        let raw: Vec<&str> = rest.split('/').collect();
        let Some(spans) = self.spans(&raw)? else {
            return Ok(None);
        };
        self.bind(&raw, &spans).map(Some)
    }

    /// The path without this template's verb; `None` when it does not end in it.
    fn without_verb<'p>(&self, rest: &'p str) -> Result<Option<&'p str>, PathError> {
        let Some(verb) = &self.verb else {
            return Ok(Some(rest));
        };
        // The verb is whatever follows the last ':' of the last segment.
        let last = rest.rsplit('/').next().unwrap_or(rest);
        let Some((_, v)) = last.rsplit_once(':') else {
            return Ok(None);
        };
        if decode_all(v)?.as_slice() != verb.as_bytes() {
            return Ok(None);
        }
        Ok(Some(&rest[..rest.len() - v.len() - 1]))
    }

    /// The raw segments each segment pattern covers (`start..end` of `raw`); `None`
    /// when the segments do not fit the patterns.
    fn spans(&self, raw: &[&str]) -> Result<Option<Vec<(usize, usize)>>, PathError> {
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(self.segments.len());
        let mut at = 0;
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    let Some(r) = raw.get(at) else {
                        return Ok(None);
                    };
                    if decode_all(r)?.as_slice() != l.as_bytes() {
                        return Ok(None);
                    }
                    spans.push((at, at + 1));
                    at += 1;
                }
                Segment::Single => {
                    if raw.get(at).is_none_or(|r| r.is_empty()) {
                        return Ok(None);
                    }
                    spans.push((at, at + 1));
                    at += 1;
                }
                Segment::Multi => {
                    // `**` takes the rest; a lone trailing empty segment ("a/") is
                    // zero segments.
                    let end = raw.len();
                    let taken = if raw[at.min(end)..] == [""] { at } else { end };
                    spans.push((at.min(end), taken.max(at.min(end))));
                    at = end;
                }
            }
        }
        Ok((at == raw.len()).then_some(spans))
    }

    /// The variables' values, decoded, from the segments they cover.
    fn bind(&self, raw: &[&str], spans: &[(usize, usize)]) -> Result<Bindings, PathError> {
        let mut bindings = Vec::with_capacity(self.variables.len());
        for v in &self.variables {
            let first = spans[v.start].0;
            let last = spans[v.start + v.len - 1].1;
            let parts = &raw[first..last];
            let value = if v.len == 1 && self.segments[v.start] != Segment::Multi {
                decode_all(parts.first().copied().unwrap_or_default())?
            } else {
                decode_keep_reserved(&parts.join("/"))?
            };
            let value = String::from_utf8(value).map_err(|_| PathError::NotUtf8(v.dotted()))?;
            bindings.push((v.field_path.clone(), value));
        }
        Ok(bindings)
    }

    /// Orders templates from most to least specific: literals beat `*`, `*` beats
    /// `**`, segment by segment; a verb beats none; longer beats shorter.
    pub fn specificity_cmp(&self, other: &Self) -> Ordering {
        let rank = |s: &Segment| match s {
            Segment::Literal(_) => 0,
            Segment::Single => 1,
            Segment::Multi => 2,
        };
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match rank(a).cmp(&rank(b)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        other
            .segments
            .len()
            .cmp(&self.segments.len())
            .then(other.verb.is_some().cmp(&self.verb.is_some()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bind(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        Template::parse(template)
            .unwrap()
            .matches(path)
            .unwrap()
            .map(|b| b.into_iter().map(|(f, v)| (f.join("."), v)).collect())
    }

    fn pairs(p: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            p.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn grammar_table() {
        type Case<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);
        let cases: &[Case] = &[
            ("/v1/users", "/v1/users", Some(&[])),
            ("/v1/users", "/v1/users/", None),
            ("/v1/users/{id}", "/v1/users/42", Some(&[("id", "42")])),
            ("/v1/users/{id}", "/v1/users/", None),
            ("/v1/users/{id}", "/v1/users/4/2", None),
            ("/v1/users/{id}", "/v1/users/a%2Fb", Some(&[("id", "a/b")])),
            (
                "/v1/users/{id}",
                "/v1/users/caf%C3%A9",
                Some(&[("id", "café")]),
            ),
            ("/v1/{user.id}/x", "/v1/7/x", Some(&[("user.id", "7")])),
            (
                "/v1/{name=users/*}",
                "/v1/users/9",
                Some(&[("name", "users/9")]),
            ),
            ("/v1/{name=users/*}", "/v1/groups/9", None),
            (
                "/v1/{name=users/*}",
                "/v1/users/a%2Fb",
                Some(&[("name", "users/a%2Fb")]),
            ),
            (
                "/v1/{name=shelves/*/books/*}",
                "/v1/shelves/1/books/2",
                Some(&[("name", "shelves/1/books/2")]),
            ),
            (
                "/v1/files/{path=**}",
                "/v1/files/a/b/c",
                Some(&[("path", "a/b/c")]),
            ),
            ("/v1/files/{path=**}", "/v1/files", Some(&[("path", "")])),
            ("/v1/*/items", "/v1/anything/items", Some(&[])),
            ("/v1/**", "/v1/a/b", Some(&[])),
            (
                "/v1/orders/{id}:ship",
                "/v1/orders/7:ship",
                Some(&[("id", "7")]),
            ),
            ("/v1/orders/{id}:ship", "/v1/orders/7:cancel", None),
            ("/v1/orders/{id}:ship", "/v1/orders/7", None),
            (
                "/v1/orders/{id}",
                "/v1/orders/7:ship",
                Some(&[("id", "7:ship")]),
            ),
            ("/v1/users:login", "/v1/users:login", Some(&[])),
            ("/v1/users:login", "/v1/users", None),
            (
                "/v1/{a}/{b.c}/{d=x/**}:go",
                "/v1/1/2/x/y/z:go",
                Some(&[("a", "1"), ("b.c", "2"), ("d", "x/y/z")]),
            ),
            (
                "/v1/users/{id}",
                "/v1/users/a+b%20c",
                Some(&[("id", "a+b c")]),
            ),
        ];
        for (template, path, want) in cases {
            let want = want.and_then(pairs);
            assert_eq!(bind(template, path), want, "{template} ~ {path}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in [
            "v1/users",
            "/v1//users",
            "/v1/{id",
            "/v1/{}",
            "/v1/{1x}",
            "/v1/**/x",
            "/v1/{a}/{a}",
            "/v1/x:",
            "/v1/{a=}",
            "/v1/x?y",
        ] {
            assert!(Template::parse(t).is_err(), "{t} should not parse");
        }
    }

    #[test]
    fn bad_escapes_and_bytes_are_errors() {
        let t = Template::parse("/v1/users/{id}").unwrap();
        assert_eq!(t.matches("/v1/users/%G1"), Err(PathError::BadEscape));
        assert_eq!(t.matches("/v1/users/%4"), Err(PathError::BadEscape));
        assert_eq!(
            t.matches("/v1/users/%FF"),
            Err(PathError::NotUtf8("id".into()))
        );
    }

    #[test]
    fn literals_beat_wildcards() {
        let mut ts: Vec<Template> = ["/v1/**", "/v1/{id}", "/v1/users", "/v1/{id}:go"]
            .iter()
            .map(|t| Template::parse(t).unwrap())
            .collect();
        ts.sort_by(Template::specificity_cmp);
        let order: Vec<&str> = ts.iter().map(Template::as_str).collect();
        assert_eq!(order, ["/v1/users", "/v1/{id}:go", "/v1/{id}", "/v1/**"]);
    }

    #[test]
    fn openapi_paths() {
        let t = Template::parse("/v1/{name=users/*}/{user.id}:ship").unwrap();
        assert_eq!(
            t.openapi_path(&t.openapi_names(|_| false)),
            "/v1/{name}/{id}:ship"
        );
        assert_eq!(t.variable_pattern(&t.variables()[0]), "users/*");
        let t = Template::parse("/v1/{a.id}/{b.id}/{c}").unwrap();
        assert_eq!(
            t.openapi_path(&t.openapi_names(|_| false)),
            "/v1/{a_id}/{b_id}/{c}"
        );
        let t = Template::parse("/v1/{node.name}").unwrap();
        assert_eq!(
            t.openapi_path(&t.openapi_names(|f| f == "name")),
            "/v1/{node_name}"
        );
    }
}
