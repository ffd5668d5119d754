//! Lists: the query parameters Kuma's lists take (`size`, `offset`, `name`,
//! `filter[labels.KEY]`, `tag`, `gateway`), one page of resources, and the `next` link.
//!
//! Errors and messages are Kuma's (`pkg/api-server/pagination.go`,
//! `pkg/api-server/filters/filtering.go`): a bad `size` is 400 "Invalid page size", a bad
//! `offset` 400 "Invalid offset", bad filters 400 naming each parameter.

use std::collections::{BTreeMap, HashMap};

use model::mesh_pb::dataplane::networking::gateway::GatewayType;
use model::{Resource, ResourceType, Spec, selector};
use store::{ListPage, ListQuery, ResourceStore, StoreError};

use super::context::Ctx;
use super::error::{ApiError, InvalidParameter};

/// Page size when the request names none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page a request may ask for.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Which proxies `gateway=` keeps (dataplanes only).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GatewayFilter {
    Any,
    /// `true`: gateways of either kind.
    Gateway,
    /// `false`: sidecars.
    NotGateway,
    Builtin,
    Delegated,
}

/// The parsed query of a list request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListParams {
    pub size: usize,
    pub offset: usize,
    /// `name=`: keep names containing it.
    pub name: Option<String>,
    /// `filter[labels.KEY]=VALUE`: keep resources with every one of these labels.
    pub labels: BTreeMap<String, String>,
    /// `tag=key:value` (repeatable): fuzzy tag match, dataplanes and external services.
    pub tags: Vec<(String, String)>,
    pub gateway: GatewayFilter,
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ListParams {
    /// Reads the list parameters of `query`; `title` is the title of any 400.
    pub fn parse(query: &[(String, String)], title: &str) -> Result<Self, ApiError> {
        let size = match first(query, "size").filter(|s| !s.is_empty()) {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => {
                let parsed = text.parse::<i64>();
                match parsed.as_ref().map(|n| usize::try_from(*n)) {
                    Ok(Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                    _ => {
                        let reason = match parsed {
                            Err(_) => "invalid format".to_string(),
                            Ok(n) if n <= 0 => "must be greater than 0".to_string(),
                            Ok(n) => format!(
                                "invalid page size of {n}. Maximum page size is {MAX_PAGE_SIZE}"
                            ),
                        };
                        return Err(ApiError::bad_request(title, "Invalid page size")
                            .with_parameters([InvalidParameter::new("size", reason)]));
                    }
                }
            }
        };
        let offset = match first(query, "offset").filter(|s| !s.is_empty()) {
            None => 0,
            Some(text) => text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(title, "Invalid offset")
                    .with_parameters([InvalidParameter::new("offset", "invalid format")])
            })?,
        };
        let mut violations = Vec::new();
        let mut labels = BTreeMap::new();
        for (key, value) in query {
            let Some(rest) = key.strip_prefix("filter[") else {
                continue;
            };
            let Some(rest) = rest.strip_prefix("labels.") else {
                violations.push(InvalidParameter::new(
                    key,
                    "filters are only supported on labels",
                ));
                continue;
            };
            match rest.find(']') {
                Some(end) if end + 1 == rest.len() && end > 0 => {
                    // The last value of a repeated key wins, as in Kuma.
                    labels.insert(rest[..end].to_string(), value.clone());
                }
                Some(end) if end + 1 == rest.len() => {
                    violations.push(InvalidParameter::new(key, "the label key cannot be empty"));
                }
                _ => violations.push(InvalidParameter::new(
                    key,
                    "advanced filters are not supported",
                )),
            }
        }
        let gateway = match first(query, "gateway")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") => GatewayFilter::Any,
            Some("true") => GatewayFilter::Gateway,
            Some("false") => GatewayFilter::NotGateway,
            Some("builtin") => GatewayFilter::Builtin,
            Some("delegated") => GatewayFilter::Delegated,
            Some(other) => {
                violations.push(InvalidParameter::new(
                    "gateway",
                    format!(
                        "should use `true`, `false`, `builtin` or `delegated` instead of {other}"
                    ),
                ));
                GatewayFilter::Any
            }
        };
        if !violations.is_empty() {
            return Err(ApiError::invalid(title, violations));
        }
        // `tag=key:value`, split on the first `:`; malformed ones are ignored (Kuma).
        let tags = query
            .iter()
            .filter(|(k, _)| k == "tag")
            .filter_map(|(_, v)| v.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(ListParams {
            size,
            offset,
            name: first(query, "name")
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            labels,
            tags,
            gateway,
        })
    }

    /// Whether `kind` has filters the store cannot apply (tags, gateway mode).
    fn filters_locally(&self, kind: ResourceType) -> bool {
        match kind {
            ResourceType::Dataplane => !self.tags.is_empty() || self.gateway != GatewayFilter::Any,
            ResourceType::ExternalService => !self.tags.is_empty(),
            _ => false,
        }
    }

    /// Whether `resource` passes the tag and gateway filters.
    fn keep(&self, resource: &Resource) -> bool {
        match &resource.spec {
            Spec::Dataplane(dp) => {
                let networking = dp.networking.as_ref();
                let gateway = networking.and_then(|n| n.gateway.as_ref());
                let builtin = gateway.is_some_and(|g| g.r#type == GatewayType::Builtin as i32);
                let mode_ok = match self.gateway {
                    GatewayFilter::Any => true,
                    GatewayFilter::Gateway => gateway.is_some(),
                    GatewayFilter::NotGateway => gateway.is_none(),
                    GatewayFilter::Builtin => builtin,
                    GatewayFilter::Delegated => gateway.is_some() && !builtin,
                };
                let tags_ok = self.tags.is_empty()
                    || networking.is_some_and(|n| {
                        n.inbound
                            .iter()
                            .map(|i| &i.tags)
                            .chain(n.gateway.as_ref().map(|g| &g.tags))
                            .any(|tags| selector::matches_fuzzy(&self.tags, tags))
                    });
                mode_ok && tags_ok
            }
            Spec::ExternalService(es) => selector::matches_fuzzy(&self.tags, &es.tags),
            _ => true,
        }
    }

    /// The store query for `kind` in `mesh` with these filters, paged or not.
    fn query(&self, kind: ResourceType, mesh: Option<&str>, paged: bool) -> ListQuery {
        ListQuery {
            kind,
            mesh: mesh.map(str::to_string),
            name_contains: self.name.clone(),
            labels: self.labels.clone(),
            offset: if paged { self.offset } else { 0 },
            size: paged.then_some(self.size),
        }
    }

    /// One page of `kind` in `mesh` (every mesh when `None`), sorted by (mesh, name).
    pub async fn fetch(
        &self,
        store: &dyn ResourceStore,
        kind: ResourceType,
        mesh: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        if !self.filters_locally(kind) {
            return store.list(&self.query(kind, mesh, true)).await;
        }
        let all = store.list(&self.query(kind, mesh, false)).await?;
        let kept: Vec<Resource> = all.items.into_iter().filter(|r| self.keep(r)).collect();
        let total = kept.len();
        let items: Vec<Resource> = kept.into_iter().skip(self.offset).take(self.size).collect();
        let next = self.offset.saturating_add(items.len());
        Ok(ListPage {
            next_offset: (!items.is_empty() && next < total).then_some(next),
            items,
            total,
        })
    }

    /// Every resource of `kind` in `mesh` with the name and label filters (for joining
    /// insights to a page).
    pub async fn fetch_all(
        &self,
        store: &dyn ResourceStore,
        kind: ResourceType,
        mesh: Option<&str>,
    ) -> Result<HashMap<(String, String), Resource>, StoreError> {
        let query = ListQuery {
            labels: BTreeMap::new(),
            ..self.query(kind, mesh, false)
        };
        let page = store.list(&query).await?;
        Ok(page
            .items
            .into_iter()
            .map(|r| ((r.meta.mesh.clone(), r.meta.name.clone()), r))
            .collect())
    }
}

/// The absolute URL of the page at `next_offset`: the request's URL with `offset` replaced,
/// query keys sorted as Go's `url.Values.Encode` does; `None` on the last page.
pub(crate) fn next_url(ctx: &Ctx, next_offset: Option<usize>) -> Option<String> {
    let offset = next_offset?;
    let mut pairs: Vec<(&str, String)> = ctx
        .query
        .iter()
        .filter(|(k, _)| k != "offset")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    pairs.push(("offset", offset.to_string()));
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    Some(format!(
        "{}://{}{}?{}",
        ctx.scheme,
        ctx.host,
        ctx.path,
        query.join("&")
    ))
}

/// Go's `url.QueryEscape`: unreserved characters kept, space as `+`, the rest `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The JSON list envelope Kuma writes: `{total, items, next}` (`next` always present).
pub(crate) fn envelope(
    total: usize,
    items: Vec<serde_json::Value>,
    next: Option<String>,
) -> serde_json::Value {
    serde_json::json!({
        "total": total,
        "items": items,
        "next": next,
    })
}

/// The envelope of one store page: its total, `items` (the page's resources rendered) and
/// the `next` link built from the request.
pub(crate) fn page_envelope(
    ctx: &Ctx,
    page: &store::ListPage,
    items: Vec<serde_json::Value>,
) -> serde_json::Value {
    envelope(page.total, items, next_url(ctx, page.next_offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn size_error(text: &str) -> String {
        let err = ListParams::parse(&q(&[("size", text)]), "t").expect_err(text);
        assert_eq!(err.detail, "Invalid page size");
        assert_eq!(err.invalid_parameters.len(), 1);
        assert_eq!(err.invalid_parameters[0].field, "size");
        err.invalid_parameters[0].reason.clone()
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(size_error("abc"), "invalid format");
        assert_eq!(size_error("0"), "must be greater than 0");
        assert_eq!(size_error("-3"), "must be greater than 0");
        assert_eq!(
            size_error("1001"),
            "invalid page size of 1001. Maximum page size is 1000"
        );
        assert_eq!(size_error("99999999999999999999"), "invalid format");
        assert_eq!(
            ListParams::parse(&q(&[("size", "1000")]), "t").map(|p| p.size),
            Ok(1000)
        );
        assert_eq!(ListParams::parse(&q(&[]), "t").map(|p| p.size), Ok(100));
        assert_eq!(
            ListParams::parse(&q(&[("size", "")]), "t").map(|p| p.size),
            Ok(100)
        );
    }

    #[test]
    fn offset_rules() {
        assert_eq!(
            ListParams::parse(&q(&[("offset", "20")]), "t").map(|p| p.offset),
            Ok(20)
        );
        for bad in ["x", "-1", "1.5"] {
            let err = ListParams::parse(&q(&[("offset", bad)]), "t").expect_err(bad);
            assert_eq!(err.detail, "Invalid offset");
            assert_eq!(err.invalid_parameters[0].field, "offset");
        }
    }

    #[test]
    fn label_filters() {
        let p = ListParams::parse(
            &q(&[
                ("filter[labels.env]", "prod"),
                ("filter[labels.kuma.io/zone]", "z1"),
            ]),
            "t",
        )
        .expect("valid");
        assert_eq!(p.labels.get("env").map(String::as_str), Some("prod"));
        assert_eq!(p.labels.get("kuma.io/zone").map(String::as_str), Some("z1"));
        let err = ListParams::parse(
            &q(&[("filter[name]", "x"), ("filter[labels.a]b", "y")]),
            "t",
        )
        .expect_err("bad");
        let reasons: Vec<(&str, &str)> = err
            .invalid_parameters
            .iter()
            .map(|p| (p.field.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("filter[name]", "filters are only supported on labels"),
                ("filter[labels.a]b", "advanced filters are not supported")
            ]
        );
    }

    #[test]
    fn tags_and_gateway() {
        let p = ListParams::parse(
            &q(&[
                ("tag", "kuma.io/service:web:v1"),
                ("tag", "bad"),
                ("gateway", "TRUE"),
            ]),
            "t",
        )
        .expect("valid");
        assert_eq!(
            p.tags,
            vec![("kuma.io/service".to_string(), "web:v1".to_string())]
        );
        assert_eq!(p.gateway, GatewayFilter::Gateway);
        let err = ListParams::parse(&q(&[("gateway", "maybe")]), "t").expect_err("bad");
        assert_eq!(err.invalid_parameters[0].field, "gateway");
    }

    #[test]
    fn escaping_like_go() {
        assert_eq!(query_escape("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(query_escape("filter[labels.x]"), "filter%5Blabels.x%5D");
    }
}
