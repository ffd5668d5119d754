//! `POST /bootstrap` for a zone ingress (`proxyType: ingress`, reference:
//! `kuma-multizone.md` §4.2): `kuma-dp run --proxy-type ingress`.
//!
//! 1. The token (`dataplaneToken`) must be a zone token of scope `ingress`
//!    for this zone ([`crate::tokens::TokenValidator::validate_zone_token`]):
//!    bad or expired is 401, another scope or zone 403.
//! 2. The ZoneIngress comes from `dataplaneResource` (one ZoneIngress, no
//!    mesh, its name the request's when both are given, validated: 422
//!    otherwise) or is the stored one (404 with an empty body when missing:
//!    kuma-dp retries).
//! 3. An inline ZoneIngress is stored with an empty `zone` (a local
//!    ingress); the `availableServices` of a stored one are kept (the zone
//!    computes them, `ingress::feed`), so a restarting ingress changes
//!    nothing but its networking.

use model::{Resource, ResourceKey, ResourceType, Spec};
use store::StoreError;

use crate::bootstrap::{BootstrapRequest, BootstrapRequestError, BootstrapState, bad, upsert_with};

/// The ZoneIngress the request names, registered when inline.
pub(crate) async fn zone_ingress(
    state: &BootstrapState,
    request: &BootstrapRequest,
) -> Result<Resource, BootstrapRequestError> {
    if let Some(token) = &request.token {
        state
            .validator
            .validate_zone_token(token, "ingress", &state.settings.zone)
            .await
            .map_err(BootstrapRequestError::Token)?;
    }
    match &request.dataplane_resource {
        Some(text) => {
            let ingress = parse(request, text)?;
            upsert(state, ingress).await
        }
        None => {
            if request.name.is_empty() {
                return Err(bad("name", "must not be empty"));
            }
            let key = ResourceKey::global(ResourceType::ZoneIngress, request.name.clone());
            match state.store.get(&key).await {
                Ok(ingress) => Ok(ingress),
                Err(StoreError::NotFound(_)) => Err(BootstrapRequestError::DataplaneNotFound {
                    mesh: String::new(),
                    name: request.name.clone(),
                }),
                Err(e) => Err(BootstrapRequestError::Internal(format!("store: {e}"))),
            }
        }
    }
}

/// Parses and validates the inline ZoneIngress.
fn parse(request: &BootstrapRequest, text: &str) -> Result<Resource, BootstrapRequestError> {
    let invalid = |m: String| BootstrapRequestError::InvalidDataplane(m);
    let mut resources = model::format::parse_documents(text).map_err(|e| invalid(e.to_string()))?;
    if resources.len() != 1 {
        return Err(invalid(format!(
            "expected one resource, got {}",
            resources.len()
        )));
    }
    let mut ingress = resources.remove(0);
    if ingress.kind() != ResourceType::ZoneIngress {
        return Err(invalid(format!(
            "expected a ZoneIngress (proxyType ingress), got {}",
            ingress.kind()
        )));
    }
    if ingress.meta.name.is_empty() {
        ingress.meta.name.clone_from(&request.name);
    } else if !request.name.is_empty() && request.name != ingress.meta.name {
        return Err(bad(
            "name",
            format!(
                "{:?} differs from the dataplaneResource's {:?}",
                request.name, ingress.meta.name
            ),
        ));
    }
    if ingress.meta.name.is_empty() {
        return Err(bad("name", "must not be empty"));
    }
    ingress.meta.mesh.clear();
    if let Spec::ZoneIngress(spec) = &mut ingress.spec {
        // A local ingress: the zone's own services, computed by the zone.
        spec.zone.clear();
        spec.available_services.clear();
    }
    model::validate::validate(&ingress).map_err(|e| invalid(e.to_string()))?;
    Ok(ingress)
}

/// Creates the ZoneIngress, or updates the stored one's networking (its
/// available services kept). A concurrent write is retried.
async fn upsert(
    state: &BootstrapState,
    ingress: Resource,
) -> Result<Resource, BootstrapRequestError> {
    // The token (a zone token) was checked already.
    upsert_with(state, ingress, None, |existing, mut new| {
        if let (Spec::ZoneIngress(new), Spec::ZoneIngress(old)) = (&mut new.spec, &existing.spec) {
            new.available_services.clone_from(&old.available_services);
        }
        new
    })
    .await
}
