//! A cache of resources rendered to their kumactl JSON form. Rendering a spec goes through
//! protobuf reflection and costs tens of microseconds; a list of hundreds of resources would
//! spend most of its time there. An entry is reused only while the resource's version and
//! times are unchanged, so an update or a delete-and-recreate always renders anew.

use std::sync::Arc;

use dashmap::DashMap;
use model::format::to_json_value;
use model::{Resource, ResourceKey};
use serde_json::Value;
use time::OffsetDateTime;

/// Entries beyond this are dropped all at once (deleted resources leave entries behind).
const MAX_ENTRIES: usize = 200_000;

struct Entry {
    version: u64,
    created: OffsetDateTime,
    modified: OffsetDateTime,
    json: Arc<Value>,
}

#[derive(Default)]
pub struct RenderCache {
    entries: DashMap<ResourceKey, Entry>,
}

impl RenderCache {
    /// The JSON form of `resource`, rendered once per stored version.
    pub fn render(&self, resource: &Resource) -> Arc<Value> {
        let key = resource.key();
        let meta = &resource.meta;
        if let Some(entry) = self.entries.get(&key)
            && entry.version == meta.version
            && entry.created == meta.creation_time
            && entry.modified == meta.modification_time
        {
            return entry.json.clone();
        }
        let json = Arc::new(to_json_value(resource));
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(
            key,
            Entry {
                version: meta.version,
                created: meta.creation_time,
                modified: meta.modification_time,
                json: json.clone(),
            },
        );
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::test_util::traffic_permission;

    #[test]
    fn a_new_version_renders_anew() {
        let cache = RenderCache::default();
        let mut tp = traffic_permission("default", "tp", "web", "backend");
        tp.meta.version = 1;
        let first = cache.render(&tp);
        assert!(
            Arc::ptr_eq(&first, &cache.render(&tp)),
            "same version: reused"
        );
        tp = traffic_permission("default", "tp", "web", "payments");
        tp.meta.version = 2;
        let second = cache.render(&tp);
        assert_eq!(
            second["destinations"][0]["match"]["kuma.io/service"],
            "payments"
        );
    }
}
