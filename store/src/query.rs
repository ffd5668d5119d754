//! Evaluates a [`ListQuery`] over resources held in memory (memory backend and cache): the
//! filters, then the page of the (mesh, name)-sorted result.

use model::Resource;

use crate::{ListPage, ListQuery};

/// Whether `resource` passes the mesh, name and label filters of `query` (its type is the
/// caller's business).
pub(crate) fn matches(query: &ListQuery, resource: &Resource) -> bool {
    if let Some(mesh) = &query.mesh
        && query.kind.is_mesh_scoped()
        && resource.meta.mesh != *mesh
    {
        return false;
    }
    if let Some(part) = &query.name_contains
        && !resource.meta.name.contains(part.as_str())
    {
        return false;
    }
    query
        .labels
        .iter()
        .all(|(k, v)| resource.meta.labels.get(k) == Some(v))
}

/// The page of `sorted` (already filtered and sorted by (mesh, name)) that `query` asks for.
pub(crate) fn page<'a>(query: &ListQuery, sorted: impl Iterator<Item = &'a Resource>) -> ListPage {
    let mut total = 0usize;
    let mut items = Vec::new();
    let end = query.size.map(|size| query.offset.saturating_add(size));
    for resource in sorted {
        if total >= query.offset && end.is_none_or(|end| total < end) {
            items.push(resource.clone());
        }
        total += 1;
    }
    ListPage {
        next_offset: next_offset(query.offset, items.len(), total),
        items,
        total,
    }
}

/// The offset of the page after the one at `offset` with `len` items, `None` when it was the
/// last one.
pub(crate) fn next_offset(offset: usize, len: usize, total: usize) -> Option<usize> {
    let next = offset.saturating_add(len);
    (len > 0 && next < total).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ResourceType, Spec};

    fn route(mesh: &str, name: &str) -> Resource {
        Resource::new(mesh, name, Spec::default_for(ResourceType::TrafficRoute))
    }

    #[test]
    fn next_offset_is_none_on_the_last_page() {
        assert_eq!(next_offset(0, 10, 25), Some(10));
        assert_eq!(next_offset(20, 5, 25), None);
        assert_eq!(next_offset(30, 0, 25), None);
        assert_eq!(
            next_offset(0, 0, 25),
            None,
            "an empty page never points to itself"
        );
    }

    #[test]
    fn page_slices_and_counts() {
        let all: Vec<Resource> = (0..5).map(|i| route("m", &format!("r{i}"))).collect();
        let query = ListQuery {
            offset: 1,
            size: Some(2),
            ..ListQuery::all(ResourceType::TrafficRoute)
        };
        let page = page(&query, all.iter());
        assert_eq!(page.total, 5);
        assert_eq!(page.next_offset, Some(3));
        let names: Vec<&str> = page.items.iter().map(|r| r.meta.name.as_str()).collect();
        assert_eq!(names, ["r1", "r2"]);
    }

    #[test]
    fn mesh_filter_ignored_for_global_types() {
        let zone = Resource::new("", "z", Spec::default_for(ResourceType::Zone));
        let query = ListQuery::in_mesh(ResourceType::Zone, "default");
        assert!(matches(&query, &zone));
        let query = ListQuery::in_mesh(ResourceType::TrafficRoute, "default");
        assert!(!matches(&query, &route("other", "r")));
        assert!(matches(&query, &route("default", "r")));
    }
}
