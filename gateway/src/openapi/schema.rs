//! The JSON Schema of proto3 JSON: one component per message, well-known types
//! inline, scalars as the gateway writes and reads them.

use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::routes::scalar_form;

/// The message schemas referenced so far, and those still to write.
#[derive(Default)]
pub(super) struct Schemas {
    pub(super) defs: Map<String, Value>,
    pub(super) pending: Vec<MessageDescriptor>,
}

impl Schemas {
    /// The schema of a message: inline for a well-known type, else a `$ref` to its
    /// component (written later, so recursive messages work).
    pub(super) fn message(&mut self, m: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known(m) {
            return schema;
        }
        let name = m.full_name();
        if !self.defs.contains_key(name) {
            self.defs.insert(name.to_owned(), Value::Null);
            self.pending.push(m.clone());
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The schema of a field's JSON value: arrays for repeated fields, objects keyed
    /// by string for maps.
    pub(super) fn field(&mut self, f: &FieldDescriptor) -> Value {
        if let Kind::Message(entry) = f.kind()
            && f.is_map()
        {
            let value = self.kind(&entry.map_entry_value_field().kind());
            return json!({"type": "object", "additionalProperties": value});
        }
        let item = self.kind(&f.kind());
        if f.is_list() {
            json!({"type": "array", "items": item})
        } else {
            item
        }
    }

    pub(super) fn kind(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Message(m) => self.message(m),
            k => scalar(k),
        }
    }

    /// Writes every pending message schema; the components.
    pub(super) fn finish(mut self) -> Map<String, Value> {
        while let Some(m) = self.pending.pop() {
            let mut properties = Map::new();
            for f in m.fields() {
                let schema = describe(self.field(&f), comment(&f.parent_file(), f.path()));
                properties.insert(f.json_name().to_owned(), schema);
            }
            let schema =
                json!({"type": "object", "additionalProperties": false, "properties": properties});
            let schema = describe(schema, comment(&m.parent_file(), m.path()));
            self.defs.insert(m.full_name().to_owned(), schema);
        }
        self.defs
    }
}

/// The proto3 JSON schema of a scalar or enum (a message gives an empty schema).
pub(super) fn scalar(kind: &Kind) -> Value {
    match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Kind::Uint64 | Kind::Fixed64 => json!({"type": "string", "pattern": "^[0-9]+$"}),
        Kind::Float | Kind::Double => json!({"anyOf": [
            {"type": "number"},
            {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]},
        ]}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::String => json!({"type": "string"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => json!({"type": "null"}),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(_) => json!({}),
    }
}

/// The JSON form of the well-known types proto3 JSON maps specially.
pub(super) fn well_known(m: &MessageDescriptor) -> Option<Value> {
    let wrapped = || m.get_field_by_name("value").map(|v| scalar(&v.kind()));
    Some(match m.full_name() {
        "google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
        "google.protobuf.Duration" => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"})
        }
        "google.protobuf.FieldMask" => {
            json!({"type": "string", "description": "Comma-separated lowerCamelCase field paths."})
        }
        "google.protobuf.Struct" => json!({"type": "object"}),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({"type": "array"}),
        "google.protobuf.Empty" => {
            json!({"type": "object", "properties": {}, "additionalProperties": false})
        }
        "google.protobuf.Any" => json!({
            "type": "object",
            "required": ["@type"],
            "properties": {"@type": {"type": "string"}},
            "additionalProperties": true,
        }),
        // Timestamp, Duration and FieldMask are above; the rest are the wrappers.
        _ if scalar_form(m).is_some() => wrapped()?,
        _ => return None,
    })
}

/// The leading comment of the element at `path` in `file`, if the descriptor set
/// kept its source info.
pub(super) fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let text = info
        .location
        .iter()
        .find(|l| l.path == path)?
        .leading_comments
        .as_deref()?;
    let text = text.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `schema` with `description` set, when there is one.
pub(super) fn describe(mut schema: Value, text: Option<String>) -> Value {
    if let (Some(text), Some(object)) = (text.filter(|t| !t.is_empty()), schema.as_object_mut()) {
        object.insert("description".into(), text.into());
    }
    schema
}
