//! The kumactl format of resources, both ways: `type`, `name`, `mesh`, `labels` and the
//! times at the top level with the spec's fields inline beside them (classic Kuma types), in
//! JSON or YAML, one or many YAML documents.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::registry::ResourceType;
use crate::resource::{Resource, Spec};

/// Top-level keys that belong to the meta, not to the spec.
pub const META_KEYS: &[&str] = &[
    "type",
    "name",
    "mesh",
    "labels",
    "creationTime",
    "modificationTime",
    "kri",
];

/// Why a document could not be read as a resource. Names the document, the resource when its
/// type and name were readable, and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}{field}: {message}", doc.map(|d| format!("document {d}: ")).unwrap_or_default(), resource.as_ref().map(|r| format!("{r}: ")).unwrap_or_default())]
pub struct FormatError {
    /// 1-based index of the YAML document, when the input had several.
    pub doc: Option<usize>,
    /// `Type "name"` when those were readable.
    pub resource: Option<String>,
    /// Field path, e.g. `type` or `spec`.
    pub field: String,
    pub message: String,
}

impl FormatError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FormatError {
            doc: None,
            resource: None,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Reads one resource from its kumactl JSON form. Fields the type does not have are errors.
pub fn from_json_value(value: &Value) -> Result<Resource, FormatError> {
    let object = value
        .as_object()
        .ok_or_else(|| FormatError::new("(root)", "a resource must be an object"))?;
    let type_name = match object.get("type") {
        Some(Value::String(t)) if !t.is_empty() => t.as_str(),
        Some(Value::String(_)) | None => return Err(FormatError::new("type", "cannot be empty")),
        Some(_) => return Err(FormatError::new("type", "must be a string")),
    };
    let kind = ResourceType::from_name(type_name)
        .ok_or_else(|| FormatError::new("type", format!("unknown resource type {type_name:?}")))?;
    let name = string_field(object, "name")?.unwrap_or_default();
    let label = format!("{kind} {name:?}");
    let with_resource = |mut e: FormatError| {
        e.resource = Some(label.clone());
        e
    };
    let mesh = string_field(object, "mesh")
        .map_err(with_resource)?
        .unwrap_or_default();
    let labels = labels_field(object).map_err(with_resource)?;
    let spec_fields: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !META_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec = Spec::from_json(kind, &Value::Object(spec_fields), true)
        .map_err(|e| with_resource(FormatError::new("spec", spec_error_message(&e))))?;
    let mut resource = Resource::new(mesh, name, spec);
    resource.meta.labels = labels;
    Ok(resource)
}

fn spec_error_message(e: &crate::resource::SpecError) -> String {
    match e {
        crate::resource::SpecError::Json { message, .. }
        | crate::resource::SpecError::Proto { message, .. } => message.clone(),
    }
}

fn string_field(object: &Map<String, Value>, key: &str) -> Result<Option<String>, FormatError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(FormatError::new(key, "must be a string")),
    }
}

fn labels_field(object: &Map<String, Value>) -> Result<BTreeMap<String, String>, FormatError> {
    match object.get("labels") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(FormatError::new(
                    &format!("labels[{k:?}]"),
                    "must be a string",
                )),
            })
            .collect(),
        Some(_) => Err(FormatError::new("labels", "must be a map of strings")),
    }
}

/// Go's RFC 3339 with nanoseconds, trailing zeros trimmed: `2018-07-17T16:05:36.995Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".to_string())
}

/// The meta part of the kumactl JSON form, in Kuma's key order: `type` (as given, so that
/// overviews can name their own type), `mesh` for mesh-scoped types, `name`, the times, and
/// `labels` when there are any.
pub fn meta_json(resource: &Resource, type_name: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("type".into(), Value::String(type_name.into()));
    if resource.kind().is_mesh_scoped() {
        object.insert("mesh".into(), Value::String(resource.meta.mesh.clone()));
    }
    object.insert("name".into(), Value::String(resource.meta.name.clone()));
    object.insert(
        "creationTime".into(),
        Value::String(format_time(resource.meta.creation_time)),
    );
    object.insert(
        "modificationTime".into(),
        Value::String(format_time(resource.meta.modification_time)),
    );
    if !resource.meta.labels.is_empty() {
        let labels = resource
            .meta
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        object.insert("labels".into(), Value::Object(labels));
    }
    object
}

/// The kumactl JSON form: meta keys first (type, mesh, name, times, labels), spec inline.
pub fn to_json_value(resource: &Resource) -> Value {
    let mut object = meta_json(resource, resource.kind().name());
    if let Value::Object(spec) = resource.spec.to_json() {
        object.extend(spec);
    }
    Value::Object(object)
}

/// Reads every resource of a JSON or YAML (multi-document) text. Empty documents are
/// skipped. The first bad document fails the whole input, so nothing is half-applied.
pub fn parse_documents(text: &str) -> Result<Vec<Resource>, FormatError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let at_doc = |mut e: FormatError| {
            e.doc = Some(index);
            e
        };
        let value = <Value as serde::Deserialize>::deserialize(document).map_err(|e| {
            at_doc(FormatError::new(
                "(document)",
                format!("not valid YAML or JSON: {e}"),
            ))
        })?;
        if value.is_null() {
            continue;
        }
        out.push(from_json_value(&value).map_err(at_doc)?);
    }
    Ok(out)
}

/// The kumactl YAML form of one resource.
pub fn to_yaml(resource: &Resource) -> String {
    // A JSON value of strings, numbers, bools, arrays and objects always serializes to YAML.
    serde_yaml_ng::to_string(&to_json_value(resource)).unwrap_or_default()
}
