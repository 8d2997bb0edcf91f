//! Turning an HTTP request into the RPC's request message, and its response message
//! into JSON.
//!
//! The body (whole message or one field) is proto3 JSON: lowerCamelCase or original
//! field names, int64 as strings or numbers, enums by name or number, unknown fields
//! refused with the position of the problem. Path variables then set their fields,
//! refusing a value that contradicts the body. Without `body: "*"`, the remaining
//! fields come from query parameters: dotted paths for nested fields, repetition for
//! repeated fields, enums by name, well-known types in their JSON string form.
//! Responses are proto3 JSON with zero values emitted and 64-bit integers as strings.

use std::collections::HashSet;

use base64::Engine as _;
use bytes::Bytes;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions,
    Value,
};
use weft_kit::status::FieldViolation;

use crate::error::GatewayError;
use crate::routes::{Binding, BodyRule, ScalarForm, resolve, scalar_form};
use crate::template::Bindings;

/// Builds the request message of `binding` from the path variables, the raw query
/// string and the body.
pub fn request_message(
    binding: &Binding,
    vars: &Bindings,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, GatewayError> {
    let mut msg = body_message(binding, body)?;
    let mut violations = Vec::new();
    for ((path, raw), fields) in vars.iter().zip(&binding.path_fields) {
        if let Err(reason) = set_path_field(&mut msg, fields, raw) {
            violations.push(FieldViolation::new(path.join("."), reason));
        }
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        apply_query(&mut msg, binding, query, &mut violations);
    }
    if violations.is_empty() {
        Ok(msg)
    } else {
        Err(GatewayError::BadRequest(violations))
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

fn body_message(binding: &Binding, body: &[u8]) -> Result<DynamicMessage, GatewayError> {
    let input = binding.rpc.input();
    match &binding.body {
        _ if is_blank(body) => Ok(DynamicMessage::new(input)),
        BodyRule::None => Err(GatewayError::field(
            "body",
            "this route takes no body; send the fields as query parameters",
        )),
        BodyRule::Whole => from_json(input, body),
        BodyRule::Field(field) => match field.kind() {
            Kind::Message(m) if !field.is_list() && !field.is_map() => {
                let value = from_json(m, body)?;
                let mut msg = DynamicMessage::new(input);
                msg.set_field(field, Value::Message(value));
                Ok(msg)
            }
            _ => {
                // A scalar, list or map body: read it as the value of that field.
                let value: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|e| GatewayError::BadJson(e.to_string()))?;
                let wrapped = serde_json::json!({ field.json_name(): value });
                DynamicMessage::deserialize_with_options(input, wrapped, &strict())
                    .map_err(|e| GatewayError::BadJson(e.to_string()))
            }
        },
    }
}

fn strict() -> DeserializeOptions {
    DeserializeOptions::new().deny_unknown_fields(true)
}

/// Parses proto3 JSON into a message of type `desc`; the error names the position.
pub fn from_json(desc: MessageDescriptor, json: &[u8]) -> Result<DynamicMessage, GatewayError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let msg = DynamicMessage::deserialize_with_options(desc, &mut de, &strict())
        .map_err(|e| GatewayError::BadJson(e.to_string()))?;
    de.end().map_err(|e| GatewayError::BadJson(e.to_string()))?;
    Ok(msg)
}

/// Sets the field at the end of `fields` (creating the messages on the way) from a
/// path segment, unless the body already gave it another value.
fn set_path_field(
    msg: &mut DynamicMessage,
    fields: &[FieldDescriptor],
    raw: &str,
) -> Result<(), String> {
    let Some((leaf, parents)) = fields.split_last() else {
        return Err("empty field path".into());
    };
    let target = descend(msg, parents)?;
    let value = parse_scalar(leaf, raw)?;
    if target.has_field(leaf) && *target.get_field(leaf) != value {
        return Err(format!(
            "the path gives {raw:?} but the body gives a different value"
        ));
    }
    target.set_field(leaf, value);
    Ok(())
}

fn descend<'m>(
    msg: &'m mut DynamicMessage,
    parents: &[FieldDescriptor],
) -> Result<&'m mut DynamicMessage, String> {
    let mut current = msg;
    for field in parents {
        current = match current.get_field_mut(field) {
            Value::Message(m) => m,
            _ => return Err(format!("{} is not a message", field.name())),
        };
    }
    Ok(current)
}

/// Sets the fields the query parameters name; one violation per parameter that
/// cannot be used.
fn apply_query(
    msg: &mut DynamicMessage,
    binding: &Binding,
    query: &str,
    violations: &mut Vec<FieldViolation>,
) {
    let input = binding.rpc.input();
    let mut seen = HashSet::new();
    for (key, raw) in form_urlencoded::parse(query.as_bytes()) {
        let result = query_field(binding, &input, &key, &mut seen)
            .and_then(|fields| set_query_field(msg, &fields, &raw));
        if let Err(reason) = result {
            violations.push(FieldViolation::new(key.as_ref(), reason));
        }
    }
}

/// The fields a query parameter `key` names (outermost first), if the route lets the
/// query set it: not bound by the path or the body, a scalar or a list of them, and
/// given once unless repeated (`seen` remembers those given).
fn query_field(
    binding: &Binding,
    input: &MessageDescriptor,
    key: &str,
    seen: &mut HashSet<Vec<u32>>,
) -> Result<Vec<FieldDescriptor>, String> {
    if matches!(binding.body, BodyRule::Whole) {
        return Err("unknown query parameter: this route takes its fields from the body".into());
    }
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    let Ok(fields) = resolve(input, &path) else {
        return Err("unknown query parameter".into());
    };
    let numbers: Vec<u32> = fields.iter().map(FieldDescriptor::number).collect();
    let bound_by_path = binding.path_fields.iter().any(|p| {
        let bound: Vec<u32> = p.iter().map(FieldDescriptor::number).collect();
        bound.starts_with(&numbers) || numbers.starts_with(&bound)
    });
    if bound_by_path {
        return Err("is bound by the path and cannot also be a query parameter".into());
    }
    if let BodyRule::Field(body_field) = &binding.body
        && numbers.first() == Some(&body_field.number())
    {
        return Err("is bound by the body and cannot also be a query parameter".into());
    }
    let Some(leaf) = fields.last() else {
        return Err("unknown query parameter".into());
    };
    if leaf.is_map() {
        return Err("map fields cannot be set from query parameters".into());
    }
    if let Kind::Message(m) = leaf.kind()
        && scalar_form(&m).is_none()
    {
        return Err("is a message; set its fields with dotted names instead".into());
    }
    if !leaf.is_list() && !seen.insert(numbers) {
        return Err("is given more than once but is not repeated".into());
    }
    Ok(fields)
}

/// Sets the field at the end of `fields` from a query value, or adds the value to
/// it when it is repeated.
fn set_query_field(
    msg: &mut DynamicMessage,
    fields: &[FieldDescriptor],
    raw: &str,
) -> Result<(), String> {
    let Some((leaf, parents)) = fields.split_last() else {
        return Err("unknown query parameter".into());
    };
    let target = descend(msg, parents)?;
    let value = parse_scalar(leaf, raw)?;
    if leaf.is_list() {
        if let Value::List(items) = target.get_field_mut(leaf) {
            items.push(value);
        }
    } else {
        target.set_field(leaf, value);
    }
    Ok(())
}

/// Parses one path segment or query value as the value of `field`'s kind.
fn parse_scalar(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    fn num<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, String> {
        raw.trim()
            .parse()
            .map_err(|_| format!("{raw:?} is not a valid {what}"))
    }
    Ok(match field.kind() {
        Kind::Double => Value::F64(float(raw)?),
        Kind::Float => Value::F32(float(raw)? as f32),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(num(raw, "32-bit integer")?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(num(raw, "64-bit integer")?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(num(raw, "unsigned 32-bit integer")?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(num(raw, "unsigned 64-bit integer")?),
        Kind::Bool => Value::Bool(match raw {
            "true" | "True" | "TRUE" | "1" => true,
            "false" | "False" | "FALSE" | "0" => false,
            _ => return Err(format!("{raw:?} is not true or false")),
        }),
        Kind::String => Value::String(raw.to_owned()),
        Kind::Bytes => Value::Bytes(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(raw)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
                .map_err(|_| format!("{raw:?} is not base64"))?,
        )),
        Kind::Enum(e) => {
            let value = e
                .get_value_by_name(raw)
                .or_else(|| raw.parse().ok().and_then(|n| e.get_value(n)))
                .ok_or_else(|| {
                    let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
                    format!("{raw:?} is not one of {}", names.join(", "))
                })?;
            Value::EnumNumber(value.number())
        }
        Kind::Message(m) => match scalar_form(&m) {
            Some(ScalarForm::Wrapper) => {
                let inner = m
                    .get_field_by_name("value")
                    .ok_or("malformed wrapper type")?;
                let mut wrapper = DynamicMessage::new(m);
                wrapper.set_field(&inner, parse_scalar(&inner, raw)?);
                Value::Message(wrapper)
            }
            Some(ScalarForm::String) => Value::Message(
                DynamicMessage::deserialize(m, serde_json::Value::String(raw.to_owned()))
                    .map_err(|e| format!("{raw:?}: {e}"))?,
            ),
            None => return Err("is a message and cannot take a single value".into()),
        },
    })
}

fn float(raw: &str) -> Result<f64, String> {
    match raw {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("{raw:?} is not a number")),
    }
}

/// How responses are written: proto3 canonical JSON, lowerCamelCase names, zero
/// values emitted, 64-bit integers as strings, enums by name.
fn response_options() -> SerializeOptions {
    SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(true)
}

/// A message as proto3 canonical JSON (see [`response_options`]), as a value tree.
pub fn message_json(msg: &DynamicMessage) -> Result<serde_json::Value, GatewayError> {
    msg.serialize_with_options(serde_json::value::Serializer, &response_options())
        .map_err(cannot_render)
}

fn cannot_render(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("cannot render a response as JSON: {e}"))
}

/// The HTTP body of a response message: the whole message, written straight into
/// the body, or its `response_body` field, taken from the message's value tree.
pub fn response_json(binding: &Binding, bytes: &[u8]) -> Result<Bytes, GatewayError> {
    let msg = DynamicMessage::decode(binding.rpc.output(), bytes).map_err(|e| {
        GatewayError::Internal(format!(
            "undecodable response from {}: {e}",
            binding.grpc_path()
        ))
    })?;
    let Some(field) = &binding.response_body else {
        let mut out = Vec::with_capacity(bytes.len() * 2 + 64);
        msg.serialize_with_options(
            &mut serde_json::Serializer::new(&mut out),
            &response_options(),
        )
        .map_err(cannot_render)?;
        return Ok(Bytes::from(out));
    };
    let value = message_json(&msg)?
        .get_mut(field.json_name())
        .map(serde_json::Value::take)
        .unwrap_or(serde_json::Value::Null);
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}
