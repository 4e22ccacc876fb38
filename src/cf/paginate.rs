//! Paging over CF's list conventions: list queries ([`ListParams`]) and paginate-all (following
//! `pagination.next.href` and merging `included`).

use std::collections::{BTreeMap, HashSet};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::cf::client::{CfClient, Req, Target};
use crate::cf::error::{Error, Result};
use crate::cf::types::{Link, null_as_default};

/// Characters left as they are in query values (RFC 3986 unreserved); everything else is percent-encoded, so a
/// comma inside a value becomes `%2C` while the commas between values stay literal.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The most pages paginate-all follows (5000 per page would be 50 million objects).
const MAX_PAGES: usize = 10_000;

/// Query parameters for a CF list: plural filters with comma-separated values, `include`, `label_selector`,
/// `per_page`, `order_by`. Empty values are kept (`paths=` matches the empty path).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    pairs: Vec<(String, String)>,
}

impl ListParams {
    pub fn new() -> Self {
        Self::default()
    }

    /// A filter such as `names=a,b`: the values are OR'ed by CF. An empty list of values sends nothing; a list
    /// holding one empty string sends `key=`.
    pub fn filter<I, S>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let values: Vec<String> =
            values.into_iter().map(|v| utf8_percent_encode(v.as_ref(), QUERY_VALUE).to_string()).collect();
        if !values.is_empty() {
            self.pairs.push((key.to_owned(), values.join(",")));
        }
        self
    }

    /// A single-valued parameter (encoded whole).
    pub fn param(mut self, key: &str, value: impl AsRef<str>) -> Self {
        self.pairs.push((key.to_owned(), utf8_percent_encode(value.as_ref(), QUERY_VALUE).to_string()));
        self
    }

    /// `label_selector=…` (e.g. `bg-role=green,!old`).
    pub fn label_selector(self, selector: impl AsRef<str>) -> Self {
        self.param("label_selector", selector)
    }

    /// `include=space.organization` and the like.
    pub fn include(self, what: impl AsRef<str>) -> Self {
        self.param("include", what)
    }

    pub fn per_page(self, n: u32) -> Self {
        self.param("per_page", n.to_string())
    }

    /// `order_by=created_at` or `-created_at`.
    pub(crate) fn order_by(self, key: impl AsRef<str>) -> Self {
        self.param("order_by", key)
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// `a=1&b=x,y`.
    pub(crate) fn to_query(&self) -> String {
        self.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    }

    /// `path?query` (or `path&query` if `path` already has a query).
    pub fn apply(&self, path: &str) -> String {
        if self.pairs.is_empty() {
            path.to_owned()
        } else {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}{}", self.to_query())
        }
    }
}

/// `pagination` of a list answer.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Pagination {
    #[serde(default)]
    pub total_results: Option<u64>,
    #[serde(default)]
    pub first: Option<Link>,
    #[serde(default)]
    pub last: Option<Link>,
    #[serde(default)]
    pub next: Option<Link>,
    #[serde(default)]
    pub previous: Option<Link>,
}

/// One page of a list.
#[derive(Clone, Debug, Deserialize)]
pub struct Page<T> {
    #[serde(default)]
    pub pagination: Option<Pagination>,
    #[serde(default = "Vec::new", deserialize_with = "null_as_default", bound(deserialize = "T: Deserialize<'de>"))]
    pub resources: Vec<T>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub included: Included,
}

/// The `included` objects (`{"spaces":[…],"organizations":[…]}`), kept as JSON until asked for by type.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Included(pub BTreeMap<String, Vec<serde_json::Value>>);

impl Included {
    /// Adds another page's included objects, skipping guids already present.
    pub fn merge(&mut self, other: Included) {
        for (kind, objects) in other.0 {
            let mine = self.0.entry(kind).or_default();
            let mut seen: HashSet<String> =
                mine.iter().filter_map(|o| o.get("guid").and_then(|g| g.as_str()).map(str::to_owned)).collect();
            for object in objects {
                match object.get("guid").and_then(|g| g.as_str()) {
                    Some(guid) if !seen.insert(guid.to_owned()) => {}
                    _ => mine.push(object),
                }
            }
        }
    }

    /// The included objects of one kind (`"spaces"`, `"organizations"`, `"service_instances"`, …) as `T`.
    pub fn get<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>> {
        self.0
            .get(kind)
            .map(|objects| {
                objects
                    .iter()
                    .map(|o| {
                        serde_json::from_value(o.clone()).map_err(|e| Error::Decode {
                            method: "GET".into(),
                            path: format!("included.{kind}"),
                            message: e.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_else(|| Ok(Vec::new()))
    }
}

/// Every resource of a list across all pages, plus the merged `included`.
#[derive(Clone, Debug)]
pub struct Listed<T> {
    pub resources: Vec<T>,
    pub included: Included,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed { resources: Vec::new(), included: Included::default() }
    }
}

impl CfClient {
    /// Every object of a list endpoint: follows `pagination.next.href` until it is `null`, merging
    /// `included`. Use `per_page` in `params` to choose the page size (CF's default is 50, max 5000).
    pub(crate) async fn list_all<T: DeserializeOwned>(&self, path: &str, params: &ListParams) -> Result<Listed<T>> {
        let mut target = Target::Path(params.apply(path));
        let mut listed = Listed::default();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            let answer = self.answer(&Req::new(Method::GET, target)).await?;
            let page: Page<T> = answer.json()?;
            listed.resources.extend(page.resources);
            listed.included.merge(page.included);
            let next = page.pagination.and_then(|p| p.next).map(|l| l.href).filter(|h| !h.is_empty());
            let Some(href) = next else {
                return Ok(listed);
            };
            let url = self.resolve(&href)?;
            if !seen.insert(url.to_string()) {
                return Err(Error::Decode {
                    method: "GET".into(),
                    path: path.to_owned(),
                    message: format!("pagination loops back to {href}"),
                });
            }
            target = Target::Url(url);
        }
        Err(Error::Decode {
            method: "GET".into(),
            path: path.to_owned(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_join_values_and_escape_commas_inside_them() {
        let q = ListParams::new()
            .filter("names", ["a", "b,c", "d e"])
            .filter("space_guids", ["s1"])
            .filter("paths", [""])
            .filter("hosts", Vec::<String>::new())
            .label_selector("bg-role=green,!old")
            .per_page(2);
        assert_eq!(
            q.to_query(),
            "names=a,b%2Cc,d%20e&space_guids=s1&paths=&label_selector=bg-role%3Dgreen%2C%21old&per_page=2"
        );
        assert_eq!(ListParams::new().apply("/v3/apps"), "/v3/apps");
        assert_eq!(ListParams::new().per_page(1).apply("/v3/apps?x=1"), "/v3/apps?x=1&per_page=1");
    }

    #[test]
    fn included_merges_without_duplicates() {
        let mut a: Included = serde_json::from_str(r#"{"spaces":[{"guid":"s1","name":"one"}]}"#).unwrap();
        let b: Included = serde_json::from_str(
            r#"{"spaces":[{"guid":"s1","name":"one"},{"guid":"s2","name":"two"}],"organizations":[{"guid":"o1"}]}"#,
        )
        .unwrap();
        a.merge(b);
        #[derive(Deserialize)]
        struct Named {
            guid: String,
        }
        let spaces: Vec<Named> = a.get("spaces").unwrap();
        assert_eq!(spaces.iter().map(|s| s.guid.as_str()).collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(a.get::<Named>("organizations").unwrap().len(), 1);
        assert!(a.get::<Named>("domains").unwrap().is_empty());
    }

    #[test]
    fn pages_tolerate_null_links() {
        let page: Page<serde_json::Value> = serde_json::from_str(
            r#"{"pagination":{"total_results":1,"total_pages":1,"first":{"href":"/x?page=1"},"last":{"href":"/x?page=1"},"next":null,"previous":null},"resources":[{}]}"#,
        )
        .unwrap();
        assert!(page.pagination.unwrap().next.is_none());
        assert_eq!(page.resources.len(), 1);
    }
}
