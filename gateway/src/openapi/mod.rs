//! The OpenAPI 3.1 document of the REST routes, generated from the same descriptors
//! and route table the gateway serves, so the document cannot drift from the routes.
//!
//! It describes what [`crate::transcode`] really does: path variables, query
//! parameters only for the fields neither the path nor the body binds, the body as
//! the whole request or one field, proto3 JSON schemas keyed by full proto name with
//! lowerCamelCase properties and 64-bit integers as strings, `google.rpc.Status` for
//! every error. OpenAPI 3.1 has no schema for the items of a stream, so streaming
//! responses carry it in `x-itemSchema` (the 3.2 `itemSchema`). Written by hand:
//! the one descriptor-to-OpenAPI crate (tonic-rest-openapi) describes tonic-rest's
//! transcoding, and this document must follow this gateway's [`Router`] and
//! transcoder, so it is generated from them.

use std::collections::HashSet;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};
use weft_proto::google::api::HttpRule;
use weft_proto::google::api::http_rule::Pattern;

use crate::policy::PUBLIC_RPCS;

mod schema;
#[cfg(test)]
mod tests;

use crate::routes::{Binding, BodyRule, Router, scalar_form};
use schema::{Schemas, comment, describe};

/// The most segments of a dotted query parameter name the document lists (transcode
/// takes deeper ones too; listing them would only bloat the document).
const MAX_QUERY_DEPTH: usize = 3;

/// The OpenAPI 3.1 document of every route of `router`. Deterministic: the same
/// router gives the same document, byte for byte once serialised.
pub fn document(router: &Router) -> Value {
    let mut schemas = Schemas::default();
    let mut paths: Map<String, Value> = Map::new();
    let mut tags = Map::new();
    let mut ids = HashSet::new();
    for b in router.bindings() {
        let path = b.openapi_path();
        let Some(verb) = path_item_key(&b.method) else {
            tracing::warn!(route = %b.template, method = %b.method, "OpenAPI 3.1 cannot describe this HTTP method; left out of the document");
            continue;
        };
        let item = paths.entry(path.clone()).or_insert_with(|| json!({}));
        let Some(item) = item.as_object_mut().filter(|i| !i.contains_key(verb)) else {
            tracing::warn!(%path, method = %b.method, "two routes share an OpenAPI path and method; the more specific one is documented");
            continue;
        };
        item.insert(
            verb.to_owned(),
            operation(b, operation_id(b, &mut ids), &mut schemas),
        );
        let service = b.rpc.parent_service();
        let tag = describe(
            json!({"name": service.name()}),
            comment(&service.parent_file(), service.path()),
        );
        tags.insert(service.name().to_owned(), tag);
    }
    let mut components = schemas.finish();
    components.insert("google.rpc.Status".into(), status_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "weft REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST/JSON face of the weft gRPC services, transcoded by the weft gateway: proto3 JSON with lowerCamelCase names and 64-bit integers as strings.",
        },
        "servers": [{"url": "/"}],
        "tags": tags.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    })
}

/// The path item field of an HTTP method, if OpenAPI 3.1 has one.
fn path_item_key(method: &http::Method) -> Option<&'static str> {
    [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ]
    .into_iter()
    .find(|k| k.eq_ignore_ascii_case(method.as_str()))
}

fn operation(b: &Binding, id: String, schemas: &mut Schemas) -> Value {
    let rpc = &b.rpc;
    let mut op = Map::new();
    op.insert("operationId".into(), id.into());
    op.insert("tags".into(), json!([rpc.parent_service().name()]));
    op.insert("summary".into(), rpc.name().into());
    if let Some(text) = comment(&rpc.parent_file(), rpc.path()) {
        op.insert("description".into(), text.into());
    }
    let parameters = parameters(b, schemas);
    if !parameters.is_empty() {
        op.insert("parameters".into(), parameters.into());
    }
    if let Some(body) = request_body(b, schemas) {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses(b, schemas));
    if PUBLIC_RPCS.contains(&rpc.full_name()) {
        op.insert("security".into(), json!([]));
    }
    Value::Object(op)
}

/// The RPC's full name with `_` for `.`; the rule's own binding bare, each of its
/// `additional_bindings` suffixed with its position (`_2`, `_3`…), so adding a
/// binding never renames the others.
fn operation_id(b: &Binding, taken: &mut HashSet<String>) -> String {
    let base = b.rpc.full_name().replace('.', "_");
    let position = weft_proto::routes::http_rule(&b.rpc)
        .ok()
        .flatten()
        .and_then(|rule| {
            std::iter::once(&rule)
                .chain(&rule.additional_bindings)
                .position(|r| declares(r, b))
        })
        .unwrap_or(0);
    let mut n = position + 1;
    loop {
        let id = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        if taken.insert(id.clone()) {
            return id;
        }
        n += 1;
    }
}

/// Whether `rule` is the rule `b` was built from.
fn declares(rule: &HttpRule, b: &Binding) -> bool {
    let (verb, path) = match &rule.pattern {
        Some(Pattern::Get(p)) => ("GET", p),
        Some(Pattern::Put(p)) => ("PUT", p),
        Some(Pattern::Post(p)) => ("POST", p),
        Some(Pattern::Delete(p)) => ("DELETE", p),
        Some(Pattern::Patch(p)) => ("PATCH", p),
        Some(Pattern::Custom(c)) => (c.kind.as_str(), &c.path),
        None => return false,
    };
    verb.eq_ignore_ascii_case(b.method.as_str()) && path == b.template.as_str()
}

/// Path variables in template order, then the query parameters.
fn parameters(b: &Binding, schemas: &mut Schemas) -> Vec<Value> {
    let mut out = Vec::new();
    let names = b.openapi_names();
    for ((v, fields), name) in b.template.variables().iter().zip(&b.path_fields).zip(names) {
        let Some(leaf) = fields.last() else { continue };
        let pattern = b.template.variable_pattern(v);
        let mut text: Vec<String> = comment(&leaf.parent_file(), leaf.path())
            .into_iter()
            .collect();
        if pattern != "*" {
            text.push(format!("The value has the form `{pattern}`."));
        }
        let param =
            json!({"name": name, "in": "path", "required": true, "schema": schemas.field(leaf)});
        out.push(describe(param, Some(text.join("\n\n"))));
    }
    let skip = match &b.body {
        BodyRule::Whole => return out,
        BodyRule::Field(f) => Some(f.number()),
        BodyRule::None => None,
    };
    let input = b.rpc.input();
    let mut query = Query {
        bound: b.path_fields.iter().map(|p| numbers(p)).collect(),
        skip,
        schemas,
        out,
    };
    query.walk(
        &input,
        &mut Vec::new(),
        &mut vec![input.full_name().to_owned()],
    );
    query.out
}

/// Collects the query parameters [`crate::transcode`] accepts: every field the path
/// and body leave free, nested messages as dotted names, maps and messages without
/// a scalar JSON form left out.
struct Query<'a> {
    bound: Vec<Vec<u32>>,
    skip: Option<u32>,
    schemas: &'a mut Schemas,
    out: Vec<Value>,
}

impl Query<'_> {
    fn walk(
        &mut self,
        msg: &MessageDescriptor,
        prefix: &mut Vec<FieldDescriptor>,
        seen: &mut Vec<String>,
    ) {
        for field in msg.fields() {
            if prefix.is_empty() && Some(field.number()) == self.skip {
                continue;
            }
            prefix.push(field.clone());
            // As transcode decides: a field is taken when it is, is inside, or holds a
            // path-bound field; a message that holds one still lends its other fields.
            let path = numbers(prefix);
            let inside = self.bound.iter().any(|b| path.starts_with(b));
            let around = self.bound.iter().any(|b| b.starts_with(&path));
            match field.kind() {
                _ if inside || field.is_map() => {}
                Kind::Message(m) if scalar_form(&m).is_none() => {
                    let nested = !field.is_list() && m.package_name() != "google.protobuf";
                    if nested
                        && prefix.len() < MAX_QUERY_DEPTH
                        && !seen.iter().any(|s| s == m.full_name())
                    {
                        seen.push(m.full_name().to_owned());
                        self.walk(&m, prefix, seen);
                        seen.pop();
                    }
                }
                _ if around => {}
                _ => self.param(prefix),
            }
            prefix.pop();
        }
    }

    fn param(&mut self, path: &[FieldDescriptor]) {
        let Some(leaf) = path.last() else { return };
        let name: Vec<&str> = path.iter().map(FieldDescriptor::name).collect();
        let mut param =
            json!({"name": name.join("."), "in": "query", "schema": self.schemas.field(leaf)});
        if leaf.is_list()
            && let Some(p) = param.as_object_mut()
        {
            p.insert("style".into(), "form".into());
            p.insert("explode".into(), true.into());
        }
        self.out
            .push(describe(param, comment(&leaf.parent_file(), leaf.path())));
    }
}

fn numbers(fields: &[FieldDescriptor]) -> Vec<u32> {
    fields.iter().map(FieldDescriptor::number).collect()
}

fn request_body(b: &Binding, schemas: &mut Schemas) -> Option<Value> {
    let schema = match &b.body {
        BodyRule::None => return None,
        BodyRule::Whole => schemas.message(&b.rpc.input()),
        BodyRule::Field(f) => schemas.field(f),
    };
    let mut body = json!({"required": false, "content": {"application/json": {"schema": schema}}});
    if !b.path_fields.is_empty() {
        let text = "The path variables set their fields too; a body that gives them a different value is refused.";
        body = describe(body, Some(text.to_owned()));
    }
    Some(body)
}

fn responses(b: &Binding, schemas: &mut Schemas) -> Value {
    let message = match &b.response_body {
        // An unset field (one with presence) comes back as JSON `null`.
        Some(f) if f.supports_presence() => json!({"anyOf": [schemas.field(f), {"type": "null"}]}),
        Some(f) => schemas.field(f),
        None => schemas.message(&b.rpc.output()),
    };
    let status = json!({"$ref": "#/components/schemas/google.rpc.Status"});
    let ok = if b.streaming() {
        json!({
            "description": "A stream. With `Accept: text/event-stream`, Server-Sent Events: one `data:` event per message (the message as JSON), and an `event: error` whose data is a `google.rpc.Status` if the stream fails; comment lines keep the connection alive. Otherwise newline-delimited JSON: one `{\"result\": message}` line per message, and a last `{\"error\": status}` line if the stream fails.",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "x-itemSchema": message},
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "x-itemSchema": {
                        "type": "object",
                        "properties": {"result": message, "error": status},
                        "minProperties": 1,
                        "maxProperties": 1,
                    },
                },
            },
        })
    } else {
        json!({"description": "OK", "content": {"application/json": {"schema": message}}})
    };
    json!({
        "200": ok,
        "default": {
            "description": "An error: the HTTP status follows the gRPC code, the body is a `google.rpc.Status`.",
            "content": {"application/json": {"schema": status}},
        },
    })
}

/// `google.rpc.Status` as the gateway renders every error.
fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "A gRPC status: the code, a message for developers and typed details.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["@type"],
                    "properties": {"@type": {"type": "string"}},
                    "additionalProperties": true,
                },
            },
        },
    })
}
