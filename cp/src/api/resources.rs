//! CRUD on every registry type (`pkg/api-server/resource_endpoints.go`).
//!
//! PUT is create-or-update: the mesh in the path must exist (404 "Failed to retrieve Mesh");
//! the body is read with `model::format` and checked against the URL (name, type, mesh) and
//! by `model::validate`, every problem collected into one 400; the server adds the labels
//! Kuma 2.x adds (`kuma.io/mesh`, `kuma.io/origin`, on a zone `kuma.io/zone` and
//! `kuma.io/env`) and keeps `kuma.io/origin`, `kuma.io/zone` and `kuma.io/display-name`
//! immutable. Create answers 201 `{}`, update 200 `{}`; an update carries the version it
//! read, so a concurrent change is a 409.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::format::{FormatError, from_json_value};
use model::{CpMode, Resource, ResourceKey, ResourceType, labels};
use serde_json::{Value, json};
use store::{ListQuery, Op, StoreError};

use super::ApiState;
use super::auth::authorize_read;
use super::context::Ctx;
use super::error::{ApiError, InvalidParameter};
use super::json::Json;
use super::list::{ListParams, page_envelope};
use super::locate;
use super::routes::Listing;

const ZONE_READ_ONLY: &str = "On zone control plane you can only modify zone resources with 'kumactl apply' or via the HTTP API. You can still use 'kumactl' or the HTTP API to modify the rest of the resource on the global control plane.\n";
const GLOBAL_READ_ONLY: &str = "On global control plane you can not modify dataplane resources with 'kumactl apply' or via the HTTP API. You can still use 'kumactl' or the HTTP API to modify them on the zone control plane.\n";
const SERVER_READ_ONLY: &str = "The API server is read-only (apiServer.readOnly): you can still use 'kumactl' or the HTTP API to make read-only operations.\n";

/// 405 unless users may write `kind` through this API.
fn check_writable(state: &ApiState, kind: ResourceType) -> Result<(), ApiError> {
    let settings = &state.settings;
    let d = kind.descriptor();
    if settings.read_only {
        return Err(ApiError::method_not_allowed(SERVER_READ_ONLY));
    }
    if d.system_only {
        return Err(ApiError::method_not_allowed(format!(
            "{} resources are written by the control plane itself; you cannot create, modify or delete them with 'kumactl apply' or via the HTTP API.\n",
            d.name
        )));
    }
    if d.is_read_only(settings.mode) {
        return Err(ApiError::method_not_allowed(match settings.mode {
            CpMode::Global => GLOBAL_READ_ONLY,
            _ => ZONE_READ_ONLY,
        }));
    }
    Ok(())
}

/// The key a route addresses: `{name}`, and `{mesh}` for mesh-scoped types.
fn key_of(kind: ResourceType, ctx: &Ctx) -> ResourceKey {
    ResourceKey::new(kind, ctx.param("mesh"), ctx.param("name"))
}

fn ok_empty(status: StatusCode) -> Response {
    (status, Json(json!({}))).into_response()
}

/// `GET /meshes/{mesh}/P`, `GET /P`.
pub(super) async fn list(
    state: ApiState,
    kind: ResourceType,
    listing: Listing,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve resources";
    authorize_read(kind, &ctx.identity)?;
    let params = ListParams::parse(&ctx.query, TITLE)?;
    let mesh = (listing == Listing::InMesh).then(|| ctx.param("mesh"));
    let page = params
        .fetch(state.store.as_ref(), kind, mesh)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    let items = page
        .items
        .iter()
        .map(|r| Value::clone(&state.rendered.render(r)))
        .collect();
    Ok(Json(page_envelope(&ctx, &page, items)))
}

/// `GET .../P/{name}`.
pub(super) async fn get(
    state: ApiState,
    kind: ResourceType,
    ctx: Ctx,
) -> Result<Json<Value>, ApiError> {
    const TITLE: &str = "Could not retrieve a resource";
    authorize_read(kind, &ctx.identity)?;
    check_format(&ctx, TITLE)?;
    let resource = state
        .store
        .get(&key_of(kind, &ctx))
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    Ok(Json(Value::clone(&state.rendered.render(&resource))))
}

/// `?format=` of a single GET: only the universal form is served.
pub(super) fn check_format(ctx: &Ctx, title: &str) -> Result<(), ApiError> {
    match ctx
        .query
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
    {
        None | Some("" | "universal") => Ok(()),
        Some(_) => Err(ApiError::invalid(
            title,
            [InvalidParameter::new(
                "format",
                "must be one of: universal (the Kubernetes form is not served)",
            )],
        )),
    }
}

/// `PUT .../P/{name}`: create or update.
pub(super) async fn put(
    state: ApiState,
    kind: ResourceType,
    ctx: Ctx,
    body: Result<Json<Value>, ApiError>,
) -> Result<Response, ApiError> {
    const TITLE: &str = "Could not process a resource";
    check_writable(&state, kind)?;
    let key = key_of(kind, &ctx);
    if kind.is_mesh_scoped() {
        let mesh = ResourceKey::global(ResourceType::Mesh, key.mesh.clone());
        state
            .store
            .get(&mesh)
            .await
            .map_err(|e| ApiError::from_store("Failed to retrieve Mesh", e))?;
    }
    let Json(body) = body?;
    let mut violations = Vec::new();
    let parsed = parse_body(kind, &body, &key, &mut violations);
    let existing = state
        .store
        .get_stored(&key)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?
        .map(|stored| stored.resource);
    let Some(mut resource) = parsed else {
        return Err(ApiError::invalid(TITLE, violations));
    };
    server_labels(&state, &mut resource, existing.as_ref(), &mut violations);
    if !violations.is_empty() {
        return Err(ApiError::invalid(TITLE, violations));
    }
    // A Mesh comes with its CA secrets and, when new, its default policies: one batch.
    let mut companions = Vec::new();
    if kind == ResourceType::Mesh && state.settings.mode != CpMode::FederatedZone {
        companions =
            crate::defaults::mesh_companions(state.store.as_ref(), &resource, existing.is_none())
                .await
                .map_err(|e| ca_error(TITLE, e))?;
        for companion in &mut companions {
            server_labels(&state, companion, None, &mut violations);
        }
        if !violations.is_empty() {
            return Err(ApiError::invalid(TITLE, violations));
        }
    }
    let create_companions = companions.into_iter().map(|resource| Op::Create {
        resource,
        owner: None,
    });
    match existing {
        None => {
            let ops: Vec<Op> = std::iter::once(Op::Create {
                resource,
                owner: None,
            })
            .chain(create_companions)
            .collect();
            state
                .store
                .apply(ops)
                .await
                .map_err(|e| ApiError::from_store("Could not create a resource", e))?;
            Ok(ok_empty(StatusCode::CREATED))
        }
        Some(current) => {
            resource.meta.version = current.meta.version;
            resource.meta.creation_time = current.meta.creation_time;
            let ops: Vec<Op> = std::iter::once(Op::Update { resource })
                .chain(create_companions)
                .collect();
            state.store.apply(ops).await.map_err(|e| match e {
                // Deleted between our read and our write: someone else changed it.
                StoreError::NotFound(key) => ApiError::conflict(format!(
                    "{key} was deleted by someone else at the same time; retry"
                )),
                e => ApiError::from_store("Could not update a resource", e),
            })?;
            Ok(ok_empty(StatusCode::OK))
        }
    }
}

/// A Mesh's CA that cannot be set up: a 400 naming the field when its settings or material
/// are at fault, a store error otherwise.
fn ca_error(title: &str, error: ca::CaError) -> ApiError {
    if let Some(field) = error.field() {
        return ApiError::invalid(
            title,
            [InvalidParameter::new(field.to_string(), error.to_string())],
        );
    }
    match error {
        ca::CaError::Store { source, .. } => ApiError::from_store(title, *source),
        error => ApiError::internal(title, error),
    }
}

/// Reads the body as a resource of `kind` and checks it against the URL and the model's
/// rules. Every problem goes to `violations`; `None` when the body is not a resource at all.
fn parse_body(
    kind: ResourceType,
    body: &Value,
    key: &ResourceKey,
    violations: &mut Vec<InvalidParameter>,
) -> Option<Resource> {
    let Some(object) = body.as_object() else {
        violations.push(InvalidParameter::new(
            "(root)",
            "a resource must be a JSON object",
        ));
        return None;
    };
    let text = |field: &str| object.get(field).and_then(Value::as_str);
    if text("type") != Some(kind.name()) {
        violations.push(InvalidParameter::new(
            "type",
            "type from the URL has to be the same as in body",
        ));
    }
    if text("name") != Some(key.name.as_str()) {
        violations.push(InvalidParameter::new(
            "name",
            "name from the URL has to be the same as in body",
        ));
    }
    if kind.is_mesh_scoped() && text("mesh") != Some(key.mesh.as_str()) {
        violations.push(InvalidParameter::new(
            "mesh",
            "mesh from the URL has to be the same as in body",
        ));
    }
    // Read the spec as the endpoint's type, so that its problems are reported too.
    let mut object = object.clone();
    object.insert("type".into(), Value::String(kind.name().into()));
    let object = Value::Object(object);
    match from_json_value(&object) {
        Ok(resource) => {
            if let Err(e) = model::validate::validate(&resource) {
                violations.extend(e.violations.into_iter().map(InvalidParameter::from));
            }
            Some(resource)
        }
        Err(e) => {
            violations.push(format_violation(kind, &object, e));
            None
        }
    }
}

/// A `model::format` error as a parameter. The parser names no field inside the spec, so
/// the body is walked to find it ([`locate::bad_field`]); failing that, the field is taken
/// from the message (`unrecognized field name 'foo'` → `foo`).
fn format_violation(kind: ResourceType, body: &Value, e: FormatError) -> InvalidParameter {
    if e.field != "spec" {
        return InvalidParameter::new(e.field, e.message);
    }
    if let Some((field, reason)) = locate::bad_field(kind, body) {
        return InvalidParameter::new(field, reason);
    }
    match quoted_field(&e.message) {
        Some(field) => InvalidParameter::new(field, e.message),
        None => InvalidParameter::new(e.field, e.message),
    }
}

/// The first backquoted or double-quoted word after "field" in a parser message.
fn quoted_field(message: &str) -> Option<String> {
    let at = message.find("field")?;
    let rest = &message[at + "field".len()..];
    let open = rest.find(['`', '"', '\''])?;
    let quote = rest[open..].chars().next()?;
    let after = &rest[open + 1..];
    let close = after.find(quote)?;
    let name = &after[..close];
    (!name.is_empty()).then(|| name.to_string())
}

/// Adds the labels the server owns and checks the ones users may not change.
fn server_labels(
    state: &ApiState,
    resource: &mut Resource,
    existing: Option<&Resource>,
    violations: &mut Vec<InvalidParameter>,
) {
    let settings = &state.settings;
    let field = |key: &str| format!("labels[{key:?}]");
    let labels = &mut resource.meta.labels;
    if resource.spec.kind().is_mesh_scoped() {
        let mesh = resource.meta.mesh.clone();
        match labels.get(labels::MESH) {
            None => {
                labels.insert(labels::MESH.into(), mesh);
            }
            Some(value) if *value == mesh => {}
            Some(value) => violations.push(InvalidParameter::new(
                field(labels::MESH),
                format!("must be the mesh of the resource, {mesh:?}, not {value:?}"),
            )),
        }
    }
    // Labels fixed at creation: a value in the body must match the stored one; a missing one
    // is kept.
    if let Some(existing) = existing {
        for key in [labels::ORIGIN, labels::ZONE, labels::DISPLAY_NAME] {
            match (existing.meta.labels.get(key), labels.get(key)) {
                (Some(old), Some(new)) if old != new => violations.push(InvalidParameter::new(
                    field(key),
                    format!("is immutable, cannot be changed from {old:?} to {new:?}"),
                )),
                (Some(old), None) => {
                    labels.insert(key.into(), old.clone());
                }
                _ => {}
            }
        }
    }
    let origin = match settings.mode {
        CpMode::Global => labels::ORIGIN_GLOBAL,
        CpMode::FederatedZone | CpMode::Standalone => labels::ORIGIN_ZONE,
    };
    let stored_origin = existing.and_then(|e| e.meta.labels.get(labels::ORIGIN));
    match labels.get(labels::ORIGIN) {
        None => {
            labels.insert(labels::ORIGIN.into(), origin.into());
        }
        // Kept from the stored resource (checked above), or what this CP would set.
        Some(value) if Some(value) == stored_origin || value == origin => {}
        Some(_) => violations.push(InvalidParameter::new(
            field(labels::ORIGIN),
            format!("the origin label must be set to '{origin}'"),
        )),
    }
    if settings.mode != CpMode::Global {
        if let Some(zone) = &settings.zone_name {
            let stored_zone = existing.and_then(|e| e.meta.labels.get(labels::ZONE));
            match labels.get(labels::ZONE) {
                None => {
                    labels.insert(labels::ZONE.into(), zone.clone());
                }
                Some(value) if value == zone || Some(value) == stored_zone => {}
                Some(_) => violations.push(InvalidParameter::new(
                    field(labels::ZONE),
                    format!("must be the name of this zone, {zone:?}"),
                )),
            }
        }
        labels
            .entry(labels::ENV.into())
            .or_insert_with(|| "universal".into());
    }
}

/// `DELETE .../P/{name}`.
pub(super) async fn delete(
    state: ApiState,
    kind: ResourceType,
    ctx: Ctx,
) -> Result<Response, ApiError> {
    const TITLE: &str = "Could not delete a resource";
    check_writable(&state, kind)?;
    let key = key_of(kind, &ctx);
    state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    if kind == ResourceType::Mesh && !state.settings.unsafe_delete {
        let dataplanes = ListQuery {
            size: Some(1),
            ..ListQuery::in_mesh(ResourceType::Dataplane, key.name.clone())
        };
        let page = state
            .store
            .list(&dataplanes)
            .await
            .map_err(|e| ApiError::from_store(TITLE, e))?;
        if page.total > 0 {
            return Err(ApiError::invalid(
                TITLE,
                [InvalidParameter::new(
                    "mesh",
                    "unable to delete mesh, there are still some dataplanes attached",
                )],
            ));
        }
    }
    state
        .store
        .delete(&key)
        .await
        .map_err(|e| ApiError::from_store(TITLE, e))?;
    Ok(ok_empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::quoted_field;

    #[test]
    fn field_names_from_parser_messages() {
        assert_eq!(
            quoted_field("unknown field `foo`, expected one of `a`"),
            Some("foo".into())
        );
        assert_eq!(quoted_field("unknown field \"bar\""), Some("bar".into()));
        assert_eq!(quoted_field("invalid type: string, expected u32"), None);
        assert_eq!(quoted_field("field ``"), None);
        assert_eq!(
            quoted_field("unrecognized field name 'sourcez'"),
            Some("sourcez".into())
        );
    }
}
