//! The `provided` backend: a CA the user supplies (reference: `kuma-api.md`
//! §3.1). `conf: {cert: DataSource, key: DataSource}`, each DataSource one
//! of `secret` (a Secret of the mesh), `file` (a path on the control
//! plane), `inline` (base64 bytes) or `inlineString` (text).

use base64::Engine;
use envoy_types::pb::google::protobuf::value::Kind;
use store::ResourceStore;

use crate::{BackendRef, CaError, MeshCa, secret_data, struct_str};

/// Reads and checks the CA of a provided backend.
pub(crate) async fn load(
    store: &dyn ResourceStore,
    at: &BackendRef<'_>,
) -> Result<MeshCa, CaError> {
    let cert = data_source(store, at, "conf.cert", "cert").await?;
    let key = data_source(store, at, "conf.key", "key").await?;
    let ca = MeshCa {
        mesh: at.mesh.to_string(),
        backend: at.backend.name.clone(),
        cert_pem: cert,
        key_pem: key,
    };
    crate::issue::check_pair(&ca, at, "conf.cert")?;
    Ok(ca)
}

/// The text a DataSource `conf.{key}` points at.
async fn data_source(
    store: &dyn ResourceStore,
    at: &BackendRef<'_>,
    field: &str,
    key: &str,
) -> Result<String, CaError> {
    let source = match at.conf(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(s)) => s,
        None | Some(Kind::NullValue(_)) => return Err(at.invalid(field, "has to be defined")),
        Some(_) => return Err(at.invalid(field, "must be a DataSource object")),
    };
    let bytes = if let Some(name) = struct_str(source, "secret") {
        let name_field = format!("{field}.secret");
        secret_data(store, at, name)
            .await?
            .ok_or_else(|| at.missing_secret(&name_field, name))?
    } else if let Some(path) = struct_str(source, "file") {
        std::fs::read(path).map_err(|e| CaError::File {
            mesh: at.mesh.to_string(),
            backend: at.backend.name.clone(),
            field: format!("{}.{field}.file", at.path),
            path: path.to_string(),
            reason: e.to_string(),
        })?
    } else if let Some(text) = struct_str(source, "inline") {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| at.invalid(&format!("{field}.inline"), format!("is not base64: {e}")))?
    } else if let Some(text) = struct_str(source, "inlineString") {
        text.as_bytes().to_vec()
    } else {
        return Err(at.invalid(
            field,
            "has to name one of secret, file, inline, inlineString",
        ));
    };
    String::from_utf8(bytes).map_err(|_| at.bad_material(field, "is not PEM text"))
}
