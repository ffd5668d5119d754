//! Tag selectors: `{kuma.io/service: backend, version: "*"}` matched against a tag set, with
//! Kuma's ranking so that the most specific policy wins.

use std::cmp::Ordering;
use std::collections::HashMap;

/// The selector value that matches any value of a tag.
pub const WILDCARD: &str = "*";

/// How specifically a selector matched: the number of exact and of wildcard matches.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Rank {
    pub exact: usize,
    pub wildcard: usize,
}

impl Rank {
    pub fn total(self) -> usize {
        self.exact + self.wildcard
    }
}

impl Ord for Rank {
    /// More matched tags wins; on a tie, more exact matches wins.
    fn cmp(&self, other: &Self) -> Ordering {
        self.total()
            .cmp(&other.total())
            .then(self.exact.cmp(&other.exact))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `Some(rank)` when every tag of the selector is present in `tags` with an equal value, or
/// present with any value when the selector's value is `*`; `None` otherwise.
pub fn match_rank(
    selector: &HashMap<String, String>,
    tags: &HashMap<String, String>,
) -> Option<Rank> {
    let mut rank = Rank::default();
    for (key, wanted) in selector {
        match tags.get(key) {
            None => return None,
            Some(_) if wanted == WILDCARD => rank.wildcard += 1,
            Some(value) if value == wanted => rank.exact += 1,
            Some(_) => return None,
        }
    }
    Some(rank)
}

pub fn matches(selector: &HashMap<String, String>, tags: &HashMap<String, String>) -> bool {
    match_rank(selector, tags).is_some()
}

/// The best rank any of `selectors` reaches against `tags`.
pub fn best_rank<'a>(
    selectors: impl IntoIterator<Item = &'a HashMap<String, String>>,
    tags: &HashMap<String, String>,
) -> Option<Rank> {
    selectors
        .into_iter()
        .filter_map(|s| match_rank(s, tags))
        .max()
}

/// Kuma's list filter `tag=key:value`: the tag exists and its value contains `value`
/// (`*` matches anything).
pub fn matches_fuzzy(filter: &[(String, String)], tags: &HashMap<String, String>) -> bool {
    filter.iter().all(|(key, wanted)| match tags.get(key) {
        Some(value) => wanted == WILDCARD || value.contains(wanted.as_str()),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn exact_and_wildcard() {
        let dp = tags(&[("kuma.io/service", "backend"), ("version", "v1")]);
        assert_eq!(
            match_rank(&tags(&[("kuma.io/service", "*")]), &dp),
            Some(Rank {
                exact: 0,
                wildcard: 1
            })
        );
        assert_eq!(
            match_rank(
                &tags(&[("kuma.io/service", "backend"), ("version", "v1")]),
                &dp
            ),
            Some(Rank {
                exact: 2,
                wildcard: 0
            })
        );
        assert_eq!(match_rank(&tags(&[("kuma.io/service", "web")]), &dp), None);
        assert_eq!(match_rank(&tags(&[("region", "eu")]), &dp), None);
        assert_eq!(
            match_rank(&tags(&[("region", "*")]), &dp),
            None,
            "`*` needs the tag"
        );
    }

    #[test]
    fn ranking_prefers_more_tags_then_more_exact() {
        let two_wild = Rank {
            exact: 0,
            wildcard: 2,
        };
        let one_exact = Rank {
            exact: 1,
            wildcard: 0,
        };
        let one_wild = Rank {
            exact: 0,
            wildcard: 1,
        };
        assert!(two_wild > one_exact, "more matched tags wins");
        assert!(one_exact > one_wild, "on equal count, exact wins");
        let best = best_rank(
            [
                &tags(&[("kuma.io/service", "*")]),
                &tags(&[("kuma.io/service", "backend")]),
            ],
            &tags(&[("kuma.io/service", "backend")]),
        );
        assert_eq!(best, Some(one_exact));
    }

    #[test]
    fn fuzzy_filter() {
        let dp = tags(&[("kuma.io/service", "backend-api"), ("version", "v1")]);
        assert!(matches_fuzzy(
            &[("kuma.io/service".into(), "backend".into())],
            &dp
        ));
        assert!(matches_fuzzy(&[("version".into(), "*".into())], &dp));
        assert!(!matches_fuzzy(&[("zone".into(), "*".into())], &dp));
    }
}
