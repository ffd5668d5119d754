//! What the SQL backends (SQLite, PostgreSQL) share: turning a `resources` or `changes` row
//! into model values, the labels column encoding, and sorting database errors into
//! [`StoreError`]s.

use std::collections::BTreeMap;
use std::fmt::Display;

use model::{Meta, Resource, ResourceKey, Spec};
use time::OffsetDateTime;

use crate::engine::{action_from_name, kind_from_name};
use crate::{ChangeEvent, Revision, StoreError, Stored};

/// The columns of a `resources` row, as every SQL backend reads them.
pub(crate) struct RawResource {
    pub kind: String,
    pub mesh: String,
    pub name: String,
    pub version: i64,
    pub spec: String,
    pub labels: Option<String>,
    pub creation_time: OffsetDateTime,
    pub modification_time: OffsetDateTime,
    pub revision: i64,
}

impl RawResource {
    /// The model value of the row; `Ok(None)` for a type this build does not know.
    pub(crate) fn decode(self, backend: &'static str) -> Result<Option<Stored>, StoreError> {
        let Some(kind) = kind_from_name(&self.kind) else {
            tracing::warn!(backend, kind = %self.kind, mesh = %self.mesh, name = %self.name,
                "skipping a resource of a type this build does not know");
            return Ok(None);
        };
        let key = ResourceKey::new(kind, self.mesh.clone(), self.name.clone());
        let corrupt = |message: String| StoreError::Corrupt {
            key: key.clone(),
            message,
        };
        let spec = Spec::from_json_str(kind, &self.spec).map_err(|e| corrupt(e.to_string()))?;
        let labels =
            decode_labels(self.labels.as_deref()).map_err(|e| corrupt(format!("labels: {e}")))?;
        let version = u64::try_from(self.version)
            .map_err(|_| corrupt(format!("negative version {}", self.version)))?;
        let revision = u64::try_from(self.revision)
            .map_err(|_| corrupt(format!("negative revision {}", self.revision)))?;
        let meta = Meta {
            name: self.name,
            mesh: self.mesh,
            version,
            creation_time: self.creation_time,
            modification_time: self.modification_time,
            labels,
        };
        Ok(Some(Stored {
            resource: Resource { meta, spec },
            revision,
        }))
    }
}

/// A row of the `changes` table.
pub(crate) struct RawChange {
    pub revision: i64,
    pub action: String,
    pub kind: String,
    pub mesh: String,
    pub name: String,
}

impl RawChange {
    /// The revision and the event; the event is `None` for a type this build does not know.
    pub(crate) fn decode(
        self,
        backend: &'static str,
    ) -> Result<(Revision, Option<ChangeEvent>), StoreError> {
        let revision = u64::try_from(self.revision).map_err(|_| StoreError::Backend {
            backend,
            message: format!("change log holds a negative revision {}", self.revision),
        })?;
        let Some(kind) = kind_from_name(&self.kind) else {
            return Ok((revision, None));
        };
        let action = action_from_name(&self.action).ok_or_else(|| StoreError::Backend {
            backend,
            message: format!(
                "change log revision {revision}: unknown action {:?}",
                self.action
            ),
        })?;
        Ok((
            revision,
            Some(ChangeEvent {
                revision,
                action,
                kind,
                mesh: self.mesh,
                name: self.name,
            }),
        ))
    }
}

/// The labels column: a JSON object of strings.
pub(crate) fn encode_labels(labels: &BTreeMap<String, String>) -> String {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

pub(crate) fn decode_labels(
    text: Option<&str>,
) -> Result<BTreeMap<String, String>, serde_json::Error> {
    match text {
        None | Some("null") | Some("") => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(text),
    }
}

/// A counter value read from the database as a revision.
pub(crate) fn revision_from_db(backend: &'static str, value: i64) -> Result<Revision, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Backend {
        backend,
        message: format!("negative revision {value} in the database"),
    })
}

/// A revision as the database stores it.
pub(crate) fn revision_to_db(backend: &'static str, value: Revision) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend {
        backend,
        message: format!("revision {value} does not fit the database"),
    })
}

/// Sorts a database error: connection trouble is [`StoreError::Unavailable`], the rest is
/// [`StoreError::Backend`]. `context` says what was being done (naming the resource).
pub(crate) fn db_error(
    backend: &'static str,
    context: impl Display,
    error: sqlx::Error,
) -> StoreError {
    let message = format!("{context}: {error}");
    if is_unavailable(backend, &error) {
        StoreError::Unavailable { backend, message }
    } else {
        StoreError::Backend { backend, message }
    }
}

fn is_unavailable(backend: &'static str, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                let code = code.as_ref();
                if backend == crate::sqlite::BACKEND {
                    // SQLite: busy (5), locked (6), I/O error (10), full (13), cannot open
                    // (14); extended codes keep the primary code in the low byte.
                    code.parse::<i64>()
                        .map(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
                        .unwrap_or(false)
                } else {
                    // PostgreSQL: connection exception (08…), operator intervention such as
                    // pg_terminate_backend or shutdown (57P0…), too many connections or out of
                    // resources (53…).
                    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
                }
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_roundtrip_and_tolerate_null() {
        let labels: BTreeMap<String, String> = [("kuma.io/zone", "z\"1"), ("a", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let text = encode_labels(&labels);
        assert_eq!(decode_labels(Some(&text)).ok(), Some(labels));
        assert_eq!(decode_labels(None).ok(), Some(BTreeMap::new()));
        assert_eq!(decode_labels(Some("null")).ok(), Some(BTreeMap::new()));
        assert!(decode_labels(Some("[1]")).is_err());
    }

    #[test]
    fn connection_errors_are_unavailable() {
        let io = || {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            ))
        };
        assert!(db_error("postgres", "reading x", io()).is_transient());
        assert!(db_error("postgres", "reading x", sqlx::Error::PoolTimedOut).is_transient());
        let other = db_error("sqlite", "reading x", sqlx::Error::RowNotFound);
        assert!(!other.is_transient());
        assert!(other.to_string().contains("reading x"), "{other}");
    }

    #[test]
    fn rows_of_unknown_types_are_skipped_and_bad_specs_are_corrupt() {
        let raw = |kind: &str, spec: &str| RawResource {
            kind: kind.into(),
            mesh: "m".into(),
            name: "n".into(),
            version: 1,
            spec: spec.into(),
            labels: None,
            creation_time: OffsetDateTime::UNIX_EPOCH,
            modification_time: OffsetDateTime::UNIX_EPOCH,
            revision: 1,
        };
        assert!(matches!(
            raw("MeshFutureThing", "{}").decode("sqlite"),
            Ok(None)
        ));
        match raw("TrafficRoute", "not json").decode("sqlite") {
            Err(e @ StoreError::Corrupt { .. }) => assert!(e.to_string().contains("\"n\""), "{e}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(matches!(
            raw("TrafficRoute", "{}").decode("sqlite"),
            Ok(Some(_))
        ));
    }
}
