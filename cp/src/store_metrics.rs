//! A store wrapper that times every operation into `store_operation_duration_seconds`
//! (labels: operation, result), for the diagnostics `/metrics`.

use std::sync::Arc;

use async_trait::async_trait;
use model::ResourceKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use store::{
    Applied, ChangeFeed, ListPage, ListQuery, Op, ResourceStore, Result, Revision, Snapshot, Stored,
};
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    result: &'static str,
}

type Durations = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    // 50 µs .. ~3 s
    Histogram::new(exponential_buckets(0.000_05, 3.0, 11))
}

/// Delegates to the inner store and records how long each operation took.
pub struct MeteredStore {
    inner: Arc<dyn ResourceStore>,
    durations: Durations,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ResourceStore>, registry: &mut Registry) -> Self {
        let durations = Durations::new_with_constructor(histogram);
        registry.register(
            "store_operation_duration_seconds",
            "Time taken by store operations",
            durations.clone(),
        );
        MeteredStore { inner, durations }
    }

    fn observe<T>(&self, operation: &'static str, started: Instant, result: &Result<T>) {
        let labels = OperationLabels {
            operation,
            result: if result.is_ok() { "ok" } else { "error" },
        };
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl ResourceStore for MeteredStore {
    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        let started = Instant::now();
        let result = self.inner.list(query).await;
        self.observe("list", started, &result);
        result
    }

    async fn revision(&self) -> Result<Revision> {
        self.inner.revision().await
    }

    fn changes(&self, after: Revision) -> ChangeFeed {
        self.inner.changes(after)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<Applied>> {
        let started = Instant::now();
        let result = self.inner.commit(ops).await;
        self.observe("commit", started, &result);
        result
    }

    async fn get_stored(&self, key: &ResourceKey) -> Result<Option<Stored>> {
        let started = Instant::now();
        let result = self.inner.get_stored(key).await;
        self.observe("get", started, &result);
        result
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let started = Instant::now();
        let result = self.inner.snapshot().await;
        self.observe("snapshot", started, &result);
        result
    }

    async fn prune_changes(&self, keep_after: Revision) -> Result<u64> {
        self.inner.prune_changes(keep_after).await
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::test_util::mesh;
    use store::memory::MemoryStore;

    #[tokio::test]
    async fn operations_are_timed() {
        let mut registry = Registry::default();
        let store = MeteredStore::new(Arc::new(MemoryStore::new()), &mut registry);
        store.create(mesh("default"), None).await.expect("create");
        let key = ResourceKey::global(model::ResourceType::Mesh, "nope");
        assert!(store.get(&key).await.is_err());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                r#"store_operation_duration_seconds_count{operation="commit",result="ok"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"store_operation_duration_seconds_count{operation="get",result="ok"} 1"#
            ),
            "{text}"
        );
    }
}
