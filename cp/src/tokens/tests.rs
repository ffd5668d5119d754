#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use model::{Resource, ResourceKey, ResourceType, Spec, mesh_pb, system_pb};
use serde_json::Value;
use store::memory::MemoryStore;
use tower::ServiceExt;

use super::claims::{DataplaneClaims, RegisteredClaims, UserClaims, ZoneClaims};
use super::issuer::now;
use super::signing::{self, KeyScope, secret_resource};
use super::*;
use crate::auth::{ADMIN_GROUP, ADMIN_USER, Authenticator, Identity};

const HOUR: Duration = Duration::from_secs(3600);

fn new_store() -> SharedStore {
    Arc::new(MemoryStore::new())
}

async fn with_mesh(store: &SharedStore, mesh: &str) {
    let mesh = Resource::new("", mesh, Spec::Mesh(mesh_pb::Mesh::default()));
    store.create(mesh, None).await.unwrap();
}

fn part(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn dp_identity(mesh: &str, name: &str) -> DataplaneIdentity {
    DataplaneIdentity {
        name: name.into(),
        mesh: mesh.into(),
        ..Default::default()
    }
}

fn dp_info(mesh: &str, name: &str, tags: &[(&str, &str)]) -> DataplaneInfo {
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in tags {
        map.entry(k.to_string()).or_default().insert(v.to_string());
    }
    DataplaneInfo {
        name: name.into(),
        mesh: mesh.into(),
        tags: map,
        proxy_type: "dataplane".into(),
        workload: None,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn put_secret(store: &SharedStore, kind: ResourceType, mesh: &str, name: &str, data: &str) {
    let spec = system_pb::Secret {
        data: Some(envoy_types::pb::google::protobuf::BytesValue {
            value: data.as_bytes().to_vec(),
        }),
    };
    let spec = if kind == ResourceType::Secret {
        Spec::Secret(spec)
    } else {
        Spec::GlobalSecret(spec)
    };
    store
        .create(Resource::new(mesh, name, spec), None)
        .await
        .unwrap();
}

async fn stored_pem(store: &SharedStore, key: &ResourceKey) -> String {
    let res = store.get(key).await.unwrap();
    String::from_utf8(signing::secret_data(&res).unwrap().to_vec()).unwrap()
}

/// The refusal of a user token.
async fn user_err(validator: &TokenValidator, token: &str) -> TokenError {
    validator.validate_user_token(token).await.unwrap_err()
}

/// The refusal of a dataplane token presented by `dataplane`.
async fn dataplane_err(
    validator: &TokenValidator,
    token: &str,
    dataplane: &DataplaneInfo,
) -> TokenError {
    validator
        .validate_dataplane_token(token, dataplane)
        .await
        .unwrap_err()
}

/// The refusal of a zone token for `scope` at the zone `cp_zone`.
async fn zone_err(
    validator: &TokenValidator,
    token: &str,
    scope: &str,
    cp_zone: &str,
) -> TokenError {
    validator
        .validate_zone_token(token, scope, cp_zone)
        .await
        .unwrap_err()
}

/// Asserts that the error's message contains `needle`.
fn assert_mentions(err: &TokenError, needle: &str) {
    assert!(err.to_string().contains(needle), "{err}");
}

/// A user token with `claims`, valid for an hour from `iat`, signed with a key made on demand.
async fn issue_user_at(issuer: &TokenIssuer, claims: UserClaims, iat: i64) -> String {
    issuer
        .issue(&KeyScope::user(), true, claims, HOUR, iat)
        .await
        .unwrap()
}

// ---------------------------------------------------------------- round trips and format

#[tokio::test]
async fn user_token_round_trip() {
    let store = new_store();
    let issuer = TokenIssuer::new(store.clone());
    let token = issuer
        .issue_user_token("john", &strings(&["team-a", "team-b"]), HOUR)
        .await
        .unwrap();
    let claims = TokenValidator::new(store.clone())
        .validate_user_token(&token)
        .await
        .unwrap();
    assert_eq!(claims.name, "john");
    assert_eq!(claims.groups, strings(&["team-a", "team-b"]));
    assert!(!claims.registered.jti.is_empty());
    // the key was created lazily as user-token-signing-key-1, PKCS#1 PEM like Kuma's
    let pem = stored_pem(&store, &KeyScope::user().secret_key(1)).await;
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "{}",
        &pem[..40]
    );
}

#[tokio::test]
async fn dataplane_token_round_trip() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let issuer = TokenIssuer::new(store.clone());
    let mut id = dp_identity("default", "backend-1");
    id.tags
        .insert("kuma.io/service".into(), strings(&["backend", "backend"]));
    let token = issuer
        .issue_dataplane_token(&id, Some(24 * HOUR))
        .await
        .unwrap();
    let dp = dp_info(
        "default",
        "backend-1",
        &[("kuma.io/service", "backend"), ("version", "v1")],
    );
    let claims = TokenValidator::new(store.clone())
        .validate_dataplane_token(&token, &dp)
        .await
        .unwrap();
    assert_eq!(claims.name, "backend-1");
    assert_eq!(claims.mesh, "default");
    assert_eq!(
        claims.tags["kuma.io/service"],
        strings(&["backend"]),
        "values de-duplicated"
    );
    // the mesh's key is a Secret in that mesh
    store
        .get(&ResourceKey::new(
            ResourceType::Secret,
            "default",
            "dataplane-token-signing-key-default-1",
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn dataplane_token_from_dataplane_resource() {
    use mesh_pb::dataplane::Networking;
    use mesh_pb::dataplane::networking::Inbound;
    let store = new_store();
    with_mesh(&store, "default").await;
    let inbound = |svc: &str| Inbound {
        port: 10001,
        tags: [("kuma.io/service".to_string(), svc.to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let spec = mesh_pb::Dataplane {
        networking: Some(Networking {
            address: "192.168.0.2".into(),
            inbound: vec![inbound("backend"), inbound("backend-api")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let resource = Resource::new("default", "backend-1", Spec::Dataplane(spec))
        .with_labels([(validator::WORKLOAD_LABEL, "wl-1")]);
    let info = DataplaneInfo::from_resource(&resource).unwrap();
    assert_eq!(info.tags["kuma.io/service"].len(), 2);
    assert_eq!(info.workload.as_deref(), Some("wl-1"));

    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let mut id = dp_identity("default", "backend-1");
    id.tags.insert(
        "kuma.io/service".into(),
        strings(&["backend", "backend-api"]),
    );
    id.workload = "wl-1".into();
    let token = issuer.issue_dataplane_token(&id, None).await.unwrap();
    validator
        .validate_dataplane_token(&token, &info)
        .await
        .unwrap();

    id.workload = "wl-2".into();
    let token = issuer.issue_dataplane_token(&id, None).await.unwrap();
    let err = dataplane_err(&validator, &token, &info).await;
    assert!(matches!(err, TokenError::WrongWorkload { .. }), "{err}");

    let mut no_label = info.clone();
    no_label.workload = None;
    let err = dataplane_err(&validator, &token, &no_label).await;
    assert_mentions(&err, "no kuma.io/workload label");
}

#[tokio::test]
async fn zone_token_round_trip() {
    let store = new_store();
    let issuer = TokenIssuer::new(store.clone());
    let token = issuer
        .issue_zone_token("zone-1", &strings(&["ingress", "egress"]), HOUR)
        .await
        .unwrap();
    let validator = TokenValidator::new(store.clone());
    let claims = validator
        .validate_zone_token(&token, "egress", "zone-1")
        .await
        .unwrap();
    assert_eq!(claims.zone, "zone-1");
    assert_eq!(claims.scope, strings(&["ingress", "egress"]));
}

#[tokio::test]
async fn header_is_rs256_with_kid_like_kuma() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let token = TokenIssuer::new(store)
        .issue_dataplane_token(&dp_identity("default", "backend-1"), Some(24 * HOUR))
        .await
        .unwrap();
    // byte-identical to Kuma's (golang-jwt writes sorted keys): see kuma-api.md §9
    assert!(
        token.starts_with("eyJhbGciOiJSUzI1NiIsImtpZCI6IjEiLCJ0eXAiOiJKV1QifQ."),
        "{token}"
    );
    let header = part(&token, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "1");
    assert_eq!(header["typ"], "JWT");
    let decoded = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(decoded.kid.as_deref(), Some("1"));
    assert_eq!(decoded.alg, jsonwebtoken::Algorithm::RS256);
}

#[tokio::test]
async fn claims_use_kuma_capitalised_names_and_skew() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let issuer = TokenIssuer::new(store);
    let before = now();

    let dp = issuer
        .issue_dataplane_token(&dp_identity("default", "backend-1"), Some(24 * HOUR))
        .await
        .unwrap();
    let claims = part(&dp, 1);
    assert_eq!(
        keys(&claims),
        [
            "Name", "Mesh", "Tags", "Type", "Workload", "exp", "nbf", "iat", "jti"
        ]
    );
    assert_eq!(claims["Name"], "backend-1");
    assert_eq!(claims["Mesh"], "default");
    assert_eq!(claims["Tags"], serde_json::json!({}));
    assert_eq!(claims["Type"], "");
    assert_eq!(claims["Workload"], "");
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(iat, nbf);
    assert!(iat >= before - 5 && iat <= now() - 5, "iat = now - 5s");
    assert_eq!(exp - iat, 24 * 3600 + 5, "exp = now - 5s + validFor + 5s");
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);

    let user = issuer
        .issue_user_token("john", &strings(&["g"]), HOUR)
        .await
        .unwrap();
    assert_eq!(
        keys(&part(&user, 1)),
        ["Name", "Groups", "exp", "nbf", "iat", "jti"]
    );
    let zone = issuer
        .issue_zone_token("z", &strings(&["cp"]), HOUR)
        .await
        .unwrap();
    assert_eq!(
        keys(&part(&zone, 1)),
        ["Zone", "Scope", "exp", "nbf", "iat", "jti"]
    );
    assert_eq!(part(&zone, 1)["Scope"], serde_json::json!(["cp"]));
}

#[tokio::test]
async fn default_dataplane_validity_is_ten_years() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let token = TokenIssuer::new(store)
        .issue_dataplane_token(&dp_identity("default", ""), None)
        .await
        .unwrap();
    let claims = part(&token, 1);
    let span = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(span, 10 * 365 * 24 * 3600 + 5);
}

#[tokio::test]
async fn kuma_issued_shapes_are_accepted() {
    // Go writes nil slices/maps as null; a validator must accept null or missing keys.
    let payload = br#"{"Name":"dp","Mesh":"default","Tags":null,"Type":"","exp":4102444800.0,"nbf":1,"iat":1,"jti":"x"}"#;
    let c: DataplaneClaims = super::claims::from_payload(payload).unwrap();
    assert!(c.tags.is_empty());
    assert_eq!(c.workload, "");
    assert_eq!(c.registered.exp, Some(4102444800));
    let c: UserClaims = super::claims::from_payload(br#"{"Name":"u","Groups":null}"#).unwrap();
    assert!(c.groups.is_empty() && c.registered.exp.is_none());
    let c: ZoneClaims = super::claims::from_payload(br#"{"Zone":"","Scope":["ingress"]}"#).unwrap();
    assert_eq!(c.scope, strings(&["ingress"]));
}

// ---------------------------------------------------------------- refusals

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let store = new_store();
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let expired = issue_user_at(
        &issuer,
        UserClaims {
            name: "u".into(),
            ..Default::default()
        },
        now() - 2 * 3600,
    )
    .await;
    let err = user_err(&validator, &expired).await;
    assert!(matches!(
        err,
        TokenError::Expired {
            kind: TokenKind::User
        }
    ));
    assert_eq!(err.to_string(), "user token expired");

    let future = issue_user_at(
        &issuer,
        UserClaims {
            name: "u".into(),
            ..Default::default()
        },
        now() + 3600,
    )
    .await;
    let err = user_err(&validator, &future).await;
    assert!(matches!(err, TokenError::NotYetValid { .. }), "{err}");
}

#[tokio::test]
async fn token_signed_by_another_store_is_refused_with_kid() {
    let a = new_store();
    let b = new_store();
    let token = TokenIssuer::new(a.clone())
        .issue_user_token("u", &[], HOUR)
        .await
        .unwrap();

    // b has no key at all
    let err = user_err(&TokenValidator::new(b.clone()), &token).await;
    assert_mentions(&err, "token signed by unknown key kid=1");
    assert_mentions(&err, "user-token-signing-key-1");

    // b has its own key 1: the signature does not match
    TokenIssuer::new(b.clone())
        .issue_user_token("v", &[], HOUR)
        .await
        .unwrap();
    let err = user_err(&TokenValidator::new(b.clone()), &token).await;
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err}");
    assert_mentions(&err, "kid=1");

    // a token of key 3 where only key 1 exists
    signing::rotate_signing_key(&a, &KeyScope::user())
        .await
        .unwrap();
    signing::rotate_signing_key(&a, &KeyScope::user())
        .await
        .unwrap();
    let token3 = TokenIssuer::new(a)
        .issue_user_token("u", &[], HOUR)
        .await
        .unwrap();
    assert_eq!(part(&token3, 0)["kid"], "3");
    let err = user_err(&TokenValidator::new(b), &token3).await;
    assert_mentions(&err, "token signed by unknown key kid=3");
}

#[tokio::test]
async fn missing_kid_and_bad_alg_are_refused() {
    let store = new_store();
    let token = TokenIssuer::new(store.clone())
        .issue_user_token("u", &[], HOUR)
        .await
        .unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let sig = token.split('.').nth(2).unwrap();
    let validator = TokenValidator::new(store);

    let no_kid = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let err = user_err(&validator, &format!("{no_kid}.{payload}.{sig}")).await;
    assert!(matches!(err, TokenError::MissingKid { .. }));
    assert_mentions(&err, "no kid header");

    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"1"}"#);
    let err = user_err(&validator, &format!("{none}.{payload}.")).await;
    assert!(
        matches!(err, TokenError::UnsupportedAlgorithm { .. }),
        "{err}"
    );

    let err = user_err(&validator, "not-a-jwt").await;
    assert!(matches!(err, TokenError::Malformed { .. }), "{err}");

    // a tampered payload fails the signature
    let forged = URL_SAFE_NO_PAD.encode(r#"{"Name":"admin","Groups":["mesh-system:admin"]}"#);
    let header = token.split('.').next().unwrap();
    let err = user_err(&validator, &format!("{header}.{forged}.{sig}")).await;
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err}");
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let jti = |t: &str| part(t, 1)["jti"].as_str().unwrap().to_string();

    let user = issuer.issue_user_token("u", &[], HOUR).await.unwrap();
    let other = issuer.issue_user_token("u2", &[], HOUR).await.unwrap();
    put_secret(
        &store,
        ResourceType::GlobalSecret,
        "",
        "user-token-revocations",
        &format!("abc,{}\n", jti(&user)),
    )
    .await;
    let err = user_err(&validator, &user).await;
    assert_eq!(err.to_string(), "user token revoked");
    validator.validate_user_token(&other).await.unwrap();

    let dp = issuer
        .issue_dataplane_token(&dp_identity("default", "dp-1"), None)
        .await
        .unwrap();
    put_secret(
        &store,
        ResourceType::Secret,
        "default",
        "dataplane-token-revocations-default",
        &jti(&dp),
    )
    .await;
    let err = dataplane_err(&validator, &dp, &dp_info("default", "dp-1", &[])).await;
    assert_mentions(&err, "token revoked");

    let zone = issuer
        .issue_zone_token("", &strings(&["ingress"]), HOUR)
        .await
        .unwrap();
    put_secret(
        &store,
        ResourceType::GlobalSecret,
        "",
        "zone-token-revocations",
        &jti(&zone),
    )
    .await;
    let err = zone_err(&validator, &zone, "ingress", "z").await;
    assert!(
        matches!(
            err,
            TokenError::Revoked {
                kind: TokenKind::Zone
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn dataplane_token_for_another_mesh_is_refused() {
    let store = new_store();
    with_mesh(&store, "mesh-a").await;
    with_mesh(&store, "mesh-b").await;
    let issuer = TokenIssuer::new(store.clone());
    let token = issuer
        .issue_dataplane_token(&dp_identity("mesh-a", "dp-1"), None)
        .await
        .unwrap();
    let err = dataplane_err(
        &TokenValidator::new(store.clone()),
        &token,
        &dp_info("mesh-b", "dp-1", &[]),
    )
    .await;
    assert_eq!(
        err.to_string(),
        r#"dataplane token is for mesh "mesh-a", not "mesh-b""#
    );
}

#[tokio::test]
async fn dataplane_name_type_and_tag_rules() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());

    let mut id = dp_identity("default", "");
    id.tags
        .insert("kuma.io/service".into(), strings(&["web", "backend"]));
    let token = issuer.issue_dataplane_token(&id, None).await.unwrap();

    // subset: every DP value of the tag is allowed
    validator
        .validate_dataplane_token(
            &token,
            &dp_info("default", "x", &[("kuma.io/service", "backend")]),
        )
        .await
        .unwrap();
    validator
        .validate_dataplane_token(
            &token,
            &dp_info(
                "default",
                "x",
                &[
                    ("kuma.io/service", "backend"),
                    ("kuma.io/service", "web"),
                    ("v", "1"),
                ],
            ),
        )
        .await
        .unwrap();
    // a DP value outside the allowed list
    let err = dataplane_err(
        &validator,
        &token,
        &dp_info(
            "default",
            "x",
            &[("kuma.io/service", "backend"), ("kuma.io/service", "admin")],
        ),
    )
    .await;
    assert!(
        matches!(err, TokenError::TagValueNotAllowed { ref value, .. } if value == "admin"),
        "{err}"
    );
    // the DP lacks the tag
    let err = dataplane_err(&validator, &token, &dp_info("default", "x", &[("v", "1")])).await;
    assert!(matches!(err, TokenError::MissingTag { .. }), "{err}");

    // name
    let named = issuer
        .issue_dataplane_token(&dp_identity("default", "dp-1"), None)
        .await
        .unwrap();
    let err = dataplane_err(&validator, &named, &dp_info("default", "dp-2", &[])).await;
    assert_eq!(
        err.to_string(),
        r#"dataplane token is for proxy "dp-1", not "dp-2""#
    );

    // type
    let mut typed = dp_identity("default", "");
    typed.proxy_type = "ingress".into();
    let typed = issuer.issue_dataplane_token(&typed, None).await.unwrap();
    let err = dataplane_err(&validator, &typed, &dp_info("default", "dp-1", &[])).await;
    assert!(matches!(err, TokenError::WrongType { .. }), "{err}");
}

#[tokio::test]
async fn zone_scope_and_zone_rules() {
    let store = new_store();
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let ingress_only = issuer
        .issue_zone_token("zone-1", &strings(&["ingress"]), HOUR)
        .await
        .unwrap();
    validator
        .validate_zone_token(&ingress_only, "ingress", "zone-1")
        .await
        .unwrap();
    let err = zone_err(&validator, &ingress_only, "egress", "zone-1").await;
    assert!(matches!(err, TokenError::ScopeNotAllowed { .. }), "{err}");
    assert_mentions(&err, r#"does not contain "egress""#);
    let err = zone_err(&validator, &ingress_only, "ingress", "zone-2").await;
    assert_eq!(
        err.to_string(),
        r#"zone token is for zone "zone-1", not "zone-2""#
    );
    // no Zone claim: any zone
    let any = issuer
        .issue_zone_token("", &strings(&["cp", "egress"]), HOUR)
        .await
        .unwrap();
    validator
        .validate_zone_token(&any, "cp", "zone-7")
        .await
        .unwrap();
}

// ---------------------------------------------------------------- keys

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid() {
    let store = new_store();
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let old = issuer.issue_user_token("u", &[], HOUR).await.unwrap();
    assert_eq!(part(&old, 0)["kid"], "1");
    assert_eq!(
        signing::rotate_signing_key(&store, &KeyScope::user())
            .await
            .unwrap(),
        2
    );
    let new = issuer.issue_user_token("u", &[], HOUR).await.unwrap();
    assert_eq!(part(&new, 0)["kid"], "2");
    validator.validate_user_token(&old).await.unwrap();
    validator.validate_user_token(&new).await.unwrap();
    // removing key 1 invalidates the old token only
    store.delete(&KeyScope::user().secret_key(1)).await.unwrap();
    let err = user_err(&validator, &old).await;
    assert_mentions(&err, "unknown key kid=1");
    validator.validate_user_token(&new).await.unwrap();
    // latest = highest serial, not the last created; names that are not keys are ignored
    put_secret(
        &store,
        ResourceType::GlobalSecret,
        "",
        "user-token-signing-key-x",
        "junk",
    )
    .await;
    assert_eq!(
        signing::signing_key_serials(&store, &KeyScope::user())
            .await
            .unwrap(),
        vec![2]
    );
}

#[tokio::test]
async fn kid_zero_is_the_bare_prefix() {
    let scope = KeyScope::user();
    assert_eq!(scope.secret_name(0), "user-token-signing-key");
    assert_eq!(scope.secret_name(12), "user-token-signing-key-12");
    assert_eq!(scope.serial_of("user-token-signing-key"), Some(0));
    assert_eq!(scope.serial_of("user-token-signing-key-7"), Some(7));
    assert_eq!(scope.serial_of("user-token-signing-key-"), None);
    assert_eq!(scope.serial_of("user-token-signing-keyx-1"), None);
    let dp = KeyScope::dataplane("default");
    assert_eq!(dp.secret_name(1), "dataplane-token-signing-key-default-1");
    assert_eq!(
        dp.serial_of("dataplane-token-signing-key-default-2-1"),
        None
    );

    // a legacy key stored under the bare prefix signs and verifies as kid "0"
    let store = new_store();
    let pem = signing::generate_signing_key_pem().unwrap();
    store
        .create(secret_resource(&scope, 0, pem.into_bytes()), None)
        .await
        .unwrap();
    let token = TokenIssuer::new(store.clone())
        .issue_user_token("u", &[], HOUR)
        .await
        .unwrap();
    assert_eq!(part(&token, 0)["kid"], "0");
    TokenValidator::new(store)
        .validate_user_token(&token)
        .await
        .unwrap();
}

#[tokio::test]
async fn pkcs8_and_legacy_keys_are_read() {
    // a PKCS#8 key (as other tools write it) signs and verifies
    let store = new_store();
    let pkcs8 = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem();
    put_secret(
        &store,
        ResourceType::GlobalSecret,
        "",
        "user-token-signing-key-1",
        &pkcs8,
    )
    .await;
    let token = TokenIssuer::new(store.clone())
        .issue_user_token("u", &[], HOUR)
        .await
        .unwrap();
    TokenValidator::new(store.clone())
        .validate_user_token(&token)
        .await
        .unwrap();

    // Kuma < 1.4 HS256 tokens keyed by the bare-prefix secret
    let legacy = new_store();
    with_mesh(&legacy, "default").await;
    put_secret(
        &legacy,
        ResourceType::Secret,
        "default",
        "dataplane-token-signing-key-default",
        "legacy-secret",
    )
    .await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("0".into());
    let claims =
        serde_json::json!({"Name": "dp-1", "Mesh": "default", "Tags": {}, "Type": "", "jti": "j"});
    let hs = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"legacy-secret"),
    )
    .unwrap();
    let validator = TokenValidator::new(legacy.clone());
    validator
        .validate_dataplane_token(&hs, &dp_info("default", "dp-1", &[]))
        .await
        .unwrap();
    // but never with a public key (anyone could forge it)
    let z = new_store();
    put_secret(
        &z,
        ResourceType::GlobalSecret,
        "",
        "zone-token-signing-public-key",
        "legacy-secret",
    )
    .await;
    let hs = jsonwebtoken::encode(
        &header,
        &serde_json::json!({"Zone": "", "Scope": ["ingress"]}),
        &jsonwebtoken::EncodingKey::from_secret(b"legacy-secret"),
    )
    .unwrap();
    assert!(
        TokenValidator::new(z)
            .validate_zone_token(&hs, "ingress", "z")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_issues_share_one_key() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let issue = |name: &'static str| {
        let issuer = TokenIssuer::new(store.clone());
        tokio::spawn(async move {
            issuer
                .issue_dataplane_token(&dp_identity("default", name), None)
                .await
        })
    };
    let (a, b) = (issue("a"), issue("b"));
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    let validator = TokenValidator::new(store.clone());
    validator
        .validate_dataplane_token(&a, &dp_info("default", "a", &[]))
        .await
        .unwrap();
    validator
        .validate_dataplane_token(&b, &dp_info("default", "b", &[]))
        .await
        .unwrap();
    assert_eq!(
        signing::signing_key_serials(&store, &KeyScope::dataplane("default"))
            .await
            .unwrap(),
        vec![1]
    );
}

#[tokio::test]
async fn dataplane_token_needs_the_mesh() {
    let store = new_store();
    let err = TokenIssuer::new(store)
        .issue_dataplane_token(&dp_identity("nope", ""), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenError::MeshNotFound { .. }), "{err}");
}

#[tokio::test]
async fn public_key_derivation_verifies_tokens() {
    let global = new_store();
    let token = TokenIssuer::new(global.clone())
        .issue_zone_token("zone-1", &strings(&["ingress"]), HOUR)
        .await
        .unwrap();
    let private = stored_pem(&global, &KeyScope::zone().secret_key(1)).await;
    let public = public_key_pem(&private).unwrap();
    assert!(
        public.starts_with("-----BEGIN RSA PUBLIC KEY-----\n"),
        "{public}"
    );
    assert!(!public.contains("PRIVATE"));

    // plain jsonwebtoken accepts the PEM and the token
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_nbf = true;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["Zone"], "zone-1");

    // a federated zone holds only zone-token-signing-public-key-N (the KDS mapping)
    let secret = global.get(&KeyScope::zone().secret_key(1)).await.unwrap();
    let mapped = signing::zone_public_key_secret(&secret).unwrap().unwrap();
    assert_eq!(mapped.meta.name, "zone-token-signing-public-key-1");
    assert_eq!(
        String::from_utf8(signing::secret_data(&mapped).unwrap().to_vec()).unwrap(),
        public
    );
    let zone = new_store();
    zone.create(mapped, None).await.unwrap();
    let claims = TokenValidator::new(zone.clone())
        .validate_zone_token(&token, "ingress", "zone-1")
        .await
        .unwrap();
    assert_eq!(claims.zone, "zone-1");
    // ... and cannot issue zone tokens
    let err = TokenIssuer::new(zone.clone())
        .without_zone_key_creation()
        .issue_zone_token("z", &strings(&["cp"]), HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenError::SigningKeyNotFound { .. }),
        "{err}"
    );
    // an SPKI ("PUBLIC KEY") public key works too
    let spki = rcgen::KeyPair::from_pem(&pkcs1_to_pkcs8(&private))
        .unwrap()
        .public_key_pem();
    assert!(spki.starts_with("-----BEGIN PUBLIC KEY-----"), "{spki}");
    let z2 = new_store();
    put_secret(
        &z2,
        ResourceType::GlobalSecret,
        "",
        "zone-token-signing-public-key-1",
        &spki,
    )
    .await;
    TokenValidator::new(z2)
        .validate_zone_token(&token, "ingress", "zone-1")
        .await
        .unwrap();
    // other secrets are not mapped
    let other = Resource::new("", "user-token-signing-key-1", secret.spec.clone());
    assert!(signing::zone_public_key_secret(&other).is_none());
    assert!(public_key_pem("not a key").is_err());
}

/// PKCS#1 PEM -> PKCS#8 PEM (wraps the RSAPrivateKey), so rcgen can read it.
fn pkcs1_to_pkcs8(pkcs1_pem: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64: String = pkcs1_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let pkcs1 = STANDARD.decode(b64).unwrap();
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(body);
        out
    }
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(alg);
    body.extend(tlv(0x04, &pkcs1));
    let der = tlv(0x30, &body);
    let b64 = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

// ---------------------------------------------------------------- nothing secret in errors

#[tokio::test]
async fn errors_never_contain_tokens_or_keys() {
    let store = new_store();
    with_mesh(&store, "mesh-a").await;
    with_mesh(&store, "mesh-b").await;
    let issuer = TokenIssuer::new(store.clone());
    let validator = TokenValidator::new(store.clone());
    let user = issuer.issue_user_token("u", &[], HOUR).await.unwrap();
    let dp = issuer
        .issue_dataplane_token(&dp_identity("mesh-a", "dp"), None)
        .await
        .unwrap();
    let zone = issuer
        .issue_zone_token("z", &strings(&["ingress"]), HOUR)
        .await
        .unwrap();
    let expired = issue_user_at(&issuer, UserClaims::default(), now() - 3 * 3600).await;
    let key_pem = stored_pem(&store, &KeyScope::user().secret_key(1)).await;
    let sig = user.split('.').nth(2).unwrap();
    let tampered = format!(
        "{}.{}.{}",
        user.split('.').next().unwrap(),
        zone.split('.').nth(1).unwrap(),
        sig
    );

    let mut errors: Vec<TokenError> = Vec::new();
    errors.push(user_err(&validator, &expired).await);
    errors.push(user_err(&validator, &tampered).await);
    errors.push(user_err(&validator, &format!("{user}x")).await);
    errors.push(user_err(&validator, &user[..user.len() / 2]).await);
    errors.push(user_err(&validator, &format!("a.{user}")).await);
    errors.push(dataplane_err(&validator, &dp, &dp_info("mesh-b", "dp", &[])).await);
    errors.push(dataplane_err(&validator, &dp, &dp_info("mesh-a", "other", &[])).await);
    errors.push(zone_err(&validator, &zone, "cp", "z").await);
    errors.push(user_err(&TokenValidator::new(new_store()), &user).await);
    // a broken stored key
    let broken = new_store();
    put_secret(
        &broken,
        ResourceType::GlobalSecret,
        "",
        "user-token-signing-key-1",
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    )
    .await;
    errors.push(
        TokenIssuer::new(broken.clone())
            .issue_user_token("u", &[], HOUR)
            .await
            .unwrap_err(),
    );
    errors.push(user_err(&TokenValidator::new(broken), &user).await);
    // a kid that carries the token itself
    let evil_header =
        URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": "RS256", "kid": user}).to_string());
    errors.push(
        user_err(
            &validator,
            &format!("{evil_header}.{}.{sig}", user.split('.').nth(1).unwrap()),
        )
        .await,
    );
    let evil_alg = URL_SAFE_NO_PAD.encode(serde_json::json!({"alg": user, "kid": "1"}).to_string());
    errors.push(
        user_err(
            &validator,
            &format!("{evil_alg}.{}.{sig}", user.split('.').nth(1).unwrap()),
        )
        .await,
    );

    let key_body: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            for token in [&user, &dp, &zone, &expired, &tampered] {
                for seg in token.split('.') {
                    assert!(
                        !text.contains(seg),
                        "error {text:?} contains a token segment"
                    );
                }
            }
            for line in &key_body {
                assert!(!text.contains(line), "error {text:?} contains key material");
            }
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
    }
    // and the authenticator's message is the same safe text
    let err = UserTokenAuthenticator::new(store)
        .authenticate(&expired)
        .await
        .unwrap_err();
    assert_eq!(err.0, "user token expired");
}

// ---------------------------------------------------------------- admin token, authenticator

#[tokio::test]
async fn admin_token_bootstrap_is_idempotent_and_authenticates_as_admin() {
    let store = new_store();
    bootstrap_admin_token(&store).await.unwrap();
    let key = ResourceKey::global(ResourceType::GlobalSecret, ADMIN_USER_TOKEN);
    let first = stored_pem(&store, &key).await;
    bootstrap_admin_token(&store).await.unwrap();
    assert_eq!(
        stored_pem(&store, &key).await,
        first,
        "a second start keeps the token"
    );
    assert_eq!(
        signing::signing_key_serials(&store, &KeyScope::user())
            .await
            .unwrap(),
        vec![1]
    );

    let claims = part(&first, 1);
    assert_eq!(claims["Name"], ADMIN_USER);
    assert_eq!(claims["Groups"], serde_json::json!([ADMIN_GROUP]));

    let identity = UserTokenAuthenticator::new(store.clone())
        .authenticate(&first)
        .await
        .unwrap();
    assert_eq!(identity.name, ADMIN_USER);
    assert!(
        identity.is_admin() && identity.is_authenticated(),
        "{identity:?}"
    );
    assert_eq!(identity, Identity::admin());

    // replicas racing on an empty store end with one token and one key
    let shared = new_store();
    let (a, b) = tokio::join!(
        bootstrap_admin_token(&shared),
        bootstrap_admin_token(&shared)
    );
    a.unwrap();
    b.unwrap();
    let token = stored_pem(&shared, &key).await;
    UserTokenAuthenticator::new(shared.clone())
        .authenticate(&token)
        .await
        .unwrap();
}

#[tokio::test]
async fn authenticator_adds_the_authenticated_group() {
    let store = new_store();
    let token = TokenIssuer::new(store.clone())
        .issue_user_token("john", &strings(&["team"]), HOUR)
        .await
        .unwrap();
    let identity = UserTokenAuthenticator::new(store.clone())
        .authenticate(&token)
        .await
        .unwrap();
    assert_eq!(identity.name, "john");
    assert_eq!(
        identity.groups,
        strings(&["team", crate::auth::AUTHENTICATED_GROUP])
    );
    assert!(!identity.is_admin());
    assert!(
        UserTokenAuthenticator::new(store)
            .authenticate("garbage")
            .await
            .is_err()
    );
}

// ---------------------------------------------------------------- HTTP

async fn call(
    state: &TokensState,
    path: &str,
    body: &str,
    identity: Option<Identity>,
) -> (StatusCode, Option<String>, String) {
    let mut req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    if let Some(identity) = identity {
        req.extensions_mut().insert(identity);
    }
    let resp = router()
        .with_state(state.clone())
        .oneshot(req)
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

fn invalid_fields(body: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "/std-errors");
    assert_eq!(v["title"], "Invalid request");
    assert_eq!(v["detail"], "Resource is not valid");
    assert_eq!(v["details"], "Resource is not valid");
    let fields: Vec<String> = v["invalid_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_string())
        .collect();
    let causes: Vec<String> = v["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, causes);
    fields
}

#[tokio::test]
async fn http_issues_dataplane_tokens() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let state = TokensState::new(store.clone());
    let admin = Some(Identity::admin());
    for path in ["/tokens/dataplane", "/tokens"] {
        let (status, ct, body) = call(
            &state,
            path,
            r#"{"mesh":"default","name":"backend-1","validFor":"24h"}"#,
            admin.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(ct.as_deref(), Some("text/plain"));
        assert_eq!(body.split('.').count(), 3);
        TokenValidator::new(store.clone())
            .validate_dataplane_token(&body, &dp_info("default", "backend-1", &[]))
            .await
            .unwrap();
    }
    // tags and type
    let (status, _, body) = call(
        &state,
        "/tokens/dataplane",
        r#"{"mesh":"default","tags":{"kuma.io/service":["web"]},"type":"dataplane"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        part(&body, 1)["Tags"],
        serde_json::json!({"kuma.io/service": ["web"]})
    );
    assert_eq!(part(&body, 1)["Type"], "dataplane");

    // validation: missing mesh, bad validFor, bad type
    let (status, ct, body) = call(
        &state,
        "/tokens/dataplane",
        r#"{"name":"x"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(invalid_fields(&body), ["mesh"]);
    let (status, _, body) = call(
        &state,
        "/tokens/dataplane",
        r#"{"mesh":"default","validFor":"forever","type":"x"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["validFor", "type"]);
    // unknown mesh
    let (status, _, body) = call(
        &state,
        "/tokens/dataplane",
        r#"{"mesh":"nope"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["detail"], "Mesh is not found");
    assert_eq!(v["invalid_parameters"][0]["field"], "mesh");
    // not JSON
    let (status, _, body) = call(&state, "/tokens/dataplane", "{", admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["title"],
        "Bad Request"
    );
}

#[tokio::test]
async fn http_issues_user_and_zone_tokens() {
    let store = new_store();
    let state = TokensState::new(store.clone());
    let admin = Some(Identity::admin());

    let (status, ct, token) = call(
        &state,
        "/tokens/user",
        r#"{"name":"john","groups":["team"],"validFor":"8760h"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(ct.as_deref(), Some("text/plain"));
    let identity = UserTokenAuthenticator::new(store.clone())
        .authenticate(&token)
        .await
        .unwrap();
    assert_eq!(identity.name, "john");
    let claims = part(&token, 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        8760 * 3600 + 5
    );

    let (status, _, body) = call(&state, "/tokens/user", r#"{"name":"john"}"#, admin.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["validFor"]);
    let (status, _, body) = call(
        &state,
        "/tokens/user",
        r#"{"validFor":"0s"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["name", "validFor"]);
    assert!(body.contains("cannot be empty or nil"), "{body}");
    let (status, _, body) = call(
        &state,
        "/tokens/user",
        r#"{"name":"j","validFor":"10 parsecs"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["validFor"]);

    let (status, ct, token) = call(
        &state,
        "/tokens/zone",
        r#"{"zone":"zone-1","scope":["egress"],"validFor":"10m"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(ct.as_deref(), Some("text/plain"));
    TokenValidator::new(store.clone())
        .validate_zone_token(&token, "egress", "zone-1")
        .await
        .unwrap();
    let (status, _, body) = call(
        &state,
        "/tokens/zone",
        r#"{"zone":"zone-1"}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["scope"]);
    let (status, _, body) = call(
        &state,
        "/tokens/zone",
        r#"{"scope":["ingress","everything"]}"#,
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid_fields(&body), ["scope[1]"]);

    // a federated zone cannot issue zone tokens: 404 Signing Key not found
    let zone_state = TokensState::federated_zone(new_store());
    let (status, _, body) = call(
        &zone_state,
        "/tokens/zone",
        r#"{"scope":["ingress"]}"#,
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["title"],
        "Signing Key not found"
    );
}

#[tokio::test]
async fn http_refuses_non_admins() {
    let store = new_store();
    with_mesh(&store, "default").await;
    let state = TokensState::new(store.clone());
    let user = Identity {
        name: "john".into(),
        groups: strings(&["team", crate::auth::AUTHENTICATED_GROUP]),
    };
    for (path, body) in [
        ("/tokens/dataplane", r#"{"mesh":"default"}"#),
        ("/tokens", r#"{"mesh":"default"}"#),
        ("/tokens/zone", r#"{"scope":["ingress"]}"#),
        ("/tokens/user", r#"{"name":"x","validFor":"1h"}"#),
    ] {
        for who in [None, Some(Identity::anonymous()), Some(user.clone())] {
            let (status, ct, resp) = call(&state, path, body, who).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {resp}");
            assert_eq!(ct.as_deref(), Some("application/json"));
            let v: Value = serde_json::from_str(&resp).unwrap();
            assert_eq!(v["title"], "Access Denied");
            assert_eq!(v["status"], 403);
        }
    }
    // nothing was issued, so no key was created
    assert!(
        signing::signing_key_serials(&store, &KeyScope::user())
            .await
            .unwrap()
            .is_empty()
    );
    // a user allowed by name in the access list may issue
    let mut state = state;
    state.access.user.users.push("john".into());
    let (status, _, _) = call(
        &state,
        "/tokens/user",
        r#"{"name":"x","validFor":"1h"}"#,
        Some(user),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("24h").unwrap(), 24 * HOUR);
    assert_eq!(parse_go_duration("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(parse_go_duration("8760h").unwrap(), 8760 * HOUR);
    assert_eq!(
        parse_go_duration("1h30m").unwrap(),
        Duration::from_secs(5400)
    );
    assert_eq!(
        parse_go_duration("1.5h").unwrap(),
        Duration::from_secs(5400)
    );
    assert_eq!(
        parse_go_duration("300ms").unwrap(),
        Duration::from_millis(300)
    );
    assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    assert!(parse_go_duration("-1h").is_err());
    assert!(
        parse_go_duration("abc")
            .unwrap_err()
            .starts_with("is invalid: ")
    );
}

#[test]
fn registered_claims_default_is_empty() {
    assert_eq!(RegisteredClaims::default().exp, None);
}
