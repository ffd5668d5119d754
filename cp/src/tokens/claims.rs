//! The claim sets of the three token kinds, serialised exactly as Kuma's Go structs (which
//! have no json tags) serialise: capitalised field names first, then the registered claims
//! `exp`, `nbf`, `iat`, `jti` in golang-jwt's order.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{TokenError, TokenKind};

/// The JWT registered claims Kuma sets. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegisteredClaims {
    /// `jti`: a UUID, the handle used by revocation lists.
    pub jti: String,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    /// Kuma always sets it; a token without it never expires (golang-jwt does not require it).
    pub exp: Option<i64>,
}

/// A user token (`POST /tokens/user`): who the API caller is.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserClaims {
    #[serde(rename = "Name", default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "Groups", default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    #[serde(skip)]
    pub registered: RegisteredClaims,
}

/// A dataplane token (`POST /tokens/dataplane`): which proxies may use it. Empty fields do not
/// restrict.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataplaneClaims {
    #[serde(rename = "Name", default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(rename = "Mesh", default, deserialize_with = "null_default")]
    pub mesh: String,
    /// Tag -> allowed values. Kuma always writes a map (`{}` when unbound).
    #[serde(rename = "Tags", default, deserialize_with = "null_default")]
    pub tags: BTreeMap<String, Vec<String>>,
    /// `""`, `dataplane`, `ingress` or `egress`.
    #[serde(rename = "Type", default, deserialize_with = "null_default")]
    pub proxy_type: String,
    #[serde(rename = "Workload", default, deserialize_with = "null_default")]
    pub workload: String,
    #[serde(skip)]
    pub registered: RegisteredClaims,
}

/// A zone token (`POST /tokens/zone`): for zone proxies (`ingress`, `egress`) and zone control
/// planes (`cp`). An empty `Zone` does not restrict.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ZoneClaims {
    #[serde(rename = "Zone", default, deserialize_with = "null_default")]
    pub zone: String,
    #[serde(rename = "Scope", default, deserialize_with = "null_default")]
    pub scope: Vec<String>,
    #[serde(skip)]
    pub registered: RegisteredClaims,
}

/// Go's `null` (a nil slice or map) reads as the empty value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Claims of one token kind.
pub(crate) trait Claims: Serialize + DeserializeOwned {
    const KIND: TokenKind;
    fn registered(&self) -> &RegisteredClaims;
    fn registered_mut(&mut self) -> &mut RegisteredClaims;
}

macro_rules! claims {
    ($ty:ty, $kind:expr) => {
        impl Claims for $ty {
            const KIND: TokenKind = $kind;
            fn registered(&self) -> &RegisteredClaims {
                &self.registered
            }
            fn registered_mut(&mut self) -> &mut RegisteredClaims {
                &mut self.registered
            }
        }
    };
}

claims!(UserClaims, TokenKind::User);
claims!(DataplaneClaims, TokenKind::Dataplane);
claims!(ZoneClaims, TokenKind::Zone);

/// The JSON payload: custom claims, then `exp`, `nbf`, `iat`, `jti` (golang-jwt's order,
/// empty ones left out).
pub(crate) fn to_payload<C: Claims>(claims: &C) -> Result<Vec<u8>, TokenError> {
    let kind = C::KIND;
    let mut map = match serde_json::to_value(claims) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(TokenError::Crypto {
                kind,
                reason: "could not serialise the claims",
            });
        }
    };
    let r = claims.registered();
    if let Some(exp) = r.exp {
        map.insert("exp".into(), exp.into());
    }
    if let Some(nbf) = r.nbf {
        map.insert("nbf".into(), nbf.into());
    }
    if let Some(iat) = r.iat {
        map.insert("iat".into(), iat.into());
    }
    if !r.jti.is_empty() {
        map.insert("jti".into(), r.jti.clone().into());
    }
    serde_json::to_vec(&Value::Object(map)).map_err(|_| TokenError::Crypto {
        kind,
        reason: "could not serialise the claims",
    })
}

/// Reads a JSON payload into claims of kind `C`.
pub(crate) fn from_payload<C: Claims>(payload: &[u8]) -> Result<C, TokenError> {
    let kind = C::KIND;
    let malformed = |reason| TokenError::Malformed { kind, reason };
    let map: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| malformed("claims are not a JSON object"))?;
    let registered = RegisteredClaims {
        jti: match map.get("jti") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(malformed("claim jti is not a string")),
        },
        iat: numeric_date(&map, "iat").map_err(|_| malformed("claim iat is not a number"))?,
        nbf: numeric_date(&map, "nbf").map_err(|_| malformed("claim nbf is not a number"))?,
        exp: numeric_date(&map, "exp").map_err(|_| malformed("claim exp is not a number"))?,
    };
    let mut claims: C = serde_json::from_value(Value::Object(map))
        .map_err(|_| malformed("claims do not have the types Kuma uses for this token kind"))?;
    *claims.registered_mut() = registered;
    Ok(claims)
}

/// A JWT NumericDate: integer or fractional seconds.
fn numeric_date(map: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            None => n.as_f64().map(|f| Some(f.floor() as i64)).ok_or(()),
        },
        Some(_) => Err(()),
    }
}
