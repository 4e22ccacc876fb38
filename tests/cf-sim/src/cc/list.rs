//! List endpoints: query parsing (plural comma-separated filters, `page`, `per_page`, `order_by`,
//! `label_selector`) and the one pagination helper every list uses, with absolute `first/last/next/previous` hrefs
//! that keep the other query parameters.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::metadata::LabelSelector;

/// Parameters every list accepts besides its own filters.
const COMMON: &[&str] = &["page", "per_page", "order_by", "label_selector", "created_ats", "updated_ats", "guids"];

#[derive(Debug, Clone)]
pub struct ListQuery {
    pub page: usize,
    pub per_page: usize,
    pub order_by: String,
    /// The parameters as given (decoded), minus `page`, for the pagination links.
    params: Vec<(String, String)>,
    values: BTreeMap<String, String>,
    label_selector: Option<LabelSelector>,
}

/// Something a list can sort and filter generically.
pub trait Listable {
    fn guid(&self) -> &str;
    fn sequence(&self) -> u64;
    fn sort_name(&self) -> Option<&str> {
        None
    }
    fn updated_seq(&self) -> u64 {
        self.sequence()
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

/// A list message's allowed keys: ListMessage's own (`page`, `per_page`, `order_by`, `created_ats`, `updated_ats`,
/// `guids`), then the message's, in the order `register_allowed_keys` adds them.
macro_rules! list_keys {
    ($($key:literal),* $(,)?) => {
        &["page", "per_page", "order_by", "created_ats", "updated_ats", "guids", $($key),*]
    };
}
pub(crate) use list_keys;

/// A Cloud Controller list message: its `allowed_keys` in the order `register_allowed_keys` builds them (ListMessage's
/// `page`, `per_page`, `order_by`, `created_ats`, `updated_ats`, `guids`, the message's own, then
/// MetadataListMessage's `label_selector`), its
/// `valid_order_by_values`, and the keys of it cf-sim does not model, refused by name.
pub struct ListMessage {
    pub keys: &'static [&'static str],
    pub orders: &'static [&'static str],
    pub unmodelled: &'static [&'static str],
}

/// ListMessage's `valid_order_by_values`, which a message without its own keeps.
pub const DEFAULT_ORDERS: &[&str] = &["created_at", "updated_at"];

impl ListQuery {
    /// Parses `raw` as `message` does ([`ListQuery::parse_message`]); then a key of it cf-sim does not model is a 400
    /// naming it.
    pub fn parse_list(raw: Option<&str>, message: &ListMessage, default_per_page: usize) -> ApiResult<Self> {
        let q = Self::parse_message(raw, message.keys, message.orders, default_per_page)?;
        let unmodelled: Vec<&str> =
            message.unmodelled.iter().copied().filter(|k| q.params.iter().any(|(p, _)| base_key(p) == *k)).collect();
        if !unmodelled.is_empty() {
            return Err(ApiError::bad_query(format!(
                "cf-sim does not model the query parameter(s) '{}'",
                unmodelled.join("', '")
            )));
        }
        Ok(q)
    }

    /// Parses `raw` (the URL query) accepting the common parameters plus `allowed`.
    pub fn parse(raw: Option<&str>, allowed: &[&str], default_per_page: usize) -> ApiResult<Self> {
        let mut valid: Vec<&str> = COMMON.iter().chain(allowed).copied().collect();
        valid.sort();
        Self::parse_message(raw, &valid, &["created_at", "updated_at", "name", "state", "position"], default_per_page)
    }

    /// Parses `raw` as a list message whose keys are exactly `keys`, in its `register_allowed_keys` order
    /// (ListMessage's `page`, `per_page`, `order_by`, `created_ats`, `updated_ats`, `guids` first), and whose
    /// `valid_order_by_values` are `orders`. The failing rules answer together, joined as `full_messages`, in
    /// ListMessage's order and wording: PaginationPageValidator, PaginationOrderValidator, then the message's
    /// NoAdditionalParamsValidator.
    pub fn parse_message(
        raw: Option<&str>,
        keys: &[&str],
        orders: &[&str],
        default_per_page: usize,
    ) -> ApiResult<Self> {
        let params: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let values: BTreeMap<String, String> = params.iter().cloned().collect();
        let mut errors = Vec::new();
        // `value.to_i > 0`, then at most 5000 for `per_page`.
        let mut number = |key: &str, default: usize| match values.get(key).map(|v| v.parse::<usize>()) {
            None => default,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                errors.push(format!("{} must be a positive integer", title(key)));
                default
            }
        };
        let page = number("page", 1);
        let per_page = number("per_page", default_per_page);
        if per_page > 5000 {
            errors.push("Per page must be between 1 and 5000".to_owned());
        }
        // PaginationOrderValidator checks an `order_by` that is present; a blank one is the default.
        let order_by = values.get("order_by").filter(|o| !o.trim().is_empty()).cloned();
        let order_by = order_by.unwrap_or_else(|| "created_at".to_string());
        if !orders.contains(&order_by.strip_prefix(['-', '+']).unwrap_or(&order_by)) {
            let valid: Vec<String> = orders.iter().map(|o| format!("'{o}'")).collect();
            errors.push(format!("Order by can only be: {}", valid.join(", ")));
        }
        let unknown: Vec<&str> = params.iter().map(|(k, _)| base_key(k)).filter(|k| !keys.contains(k)).collect();
        if !unknown.is_empty() {
            errors.push(format!(
                "Unknown query parameter(s): '{}'. Valid parameters are: '{}'",
                unknown.join("', '"),
                keys.join("', '")
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::bad_query(errors.join(", ")));
        }
        let label_selector = values.get("label_selector").map(|s| LabelSelector::parse(s)).transpose()?;
        Ok(ListQuery {
            page,
            per_page,
            order_by,
            params: params.into_iter().filter(|(k, _)| k != "page").collect(),
            values,
            label_selector,
        })
    }

    /// A comma-separated filter as its values; `None` when absent. `names=` yields `[""]`, as CC matches the empty
    /// string then.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.values.get(key).map(|v| v.split(',').map(str::to_string).collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The parameters of `keys` that are present, refused as a message's own validation words them (e.g.
    /// `app_nested_request`): 400 "Unknown query parameter(s): 'a', 'b'", in `keys` order.
    pub fn refuse_present(&self, keys: &[&str]) -> ApiResult<()> {
        let present: Vec<&str> = keys.iter().copied().filter(|k| self.get(k).is_some()).collect();
        if present.is_empty() {
            return Ok(());
        }
        Err(ApiError::bad_query(format!("Unknown query parameter(s): '{}'", present.join("', '"))))
    }

    /// `include=a,b` as a list (empty when absent).
    pub fn includes(&self) -> Vec<String> {
        self.list("include").unwrap_or_default()
    }

    /// `include=a,b` checked as CC's `IncludeParamValidator` (app/messages/base_message.rb) does against the values
    /// the list accepts: 400 naming an invalid or a repeated value.
    pub fn includes_of(&self, valid: &[&str]) -> ApiResult<Vec<String>> {
        let includes = self.includes();
        let mut problems = Vec::new();
        for (i, include) in includes.iter().enumerate() {
            if !valid.contains(&include.as_str()) {
                problems.push(format!(
                    "Invalid included resource: '{include}'. Valid included resources are: '{}'",
                    valid.join("', '")
                ));
            } else if includes[..i].iter().filter(|earlier| *earlier == include).count() == 1 {
                problems.push(format!("Duplicate included resource: '{include}'"));
            }
        }
        if problems.is_empty() { Ok(includes) } else { Err(ApiError::bad_query(problems.join(", "))) }
    }

    /// A single-valued filter with an `inclusion` validation: 400 "<Key> must be one of 'a', 'b'".
    pub fn one_of(&self, key: &str, allowed: &[&str]) -> ApiResult<Option<&str>> {
        match self.get(key) {
            Some(value) if !allowed.contains(&value) => {
                Err(ApiError::bad_query(format!("{} must be one of '{}'", title(key), allowed.join("', '"))))
            }
            value => Ok(value),
        }
    }

    /// Applies the common filters (guids, label_selector) and the order; returns the items in list order.
    pub fn select<'a, T: Listable>(&self, items: impl IntoIterator<Item = &'a T>) -> Vec<&'a T> {
        let guids = self.list("guids");
        let mut selected: Vec<&T> = items
            .into_iter()
            .filter(|item| guids.as_ref().is_none_or(|g| g.iter().any(|g| g == item.guid())))
            .filter(|item| {
                self.label_selector.as_ref().is_none_or(|s| item.labels().is_some_and(|labels| s.matches(labels)))
            })
            .collect();
        let descending = self.order_by.starts_with('-');
        match self.order_by.trim_start_matches(['-', '+']) {
            "name" => selected.sort_by(|a, b| {
                a.sort_name().unwrap_or("").cmp(b.sort_name().unwrap_or("")).then(a.sequence().cmp(&b.sequence()))
            }),
            "updated_at" => selected.sort_by_key(|item| item.updated_seq()),
            _ => selected.sort_by_key(|item| item.sequence()),
        }
        if descending {
            selected.reverse();
        }
        selected
    }

    /// The page of `items` (already filtered and ordered) as CC's paginated list body.
    pub fn paginate(&self, base_url: &str, path: &str, items: Vec<Value>) -> Value {
        let total = items.len();
        let total_pages = total.div_ceil(self.per_page).max(1);
        let resources: Vec<Value> =
            items.into_iter().skip((self.page - 1) * self.per_page).take(self.per_page).collect();
        let href = |page: usize| json!({"href": self.page_href(base_url, path, page)});
        json!({
            "pagination": {
                "total_results": total,
                "total_pages": total_pages,
                "first": href(1),
                "last": href(total_pages),
                "next": if self.page < total_pages { href(self.page + 1) } else { Value::Null },
                "previous": if self.page > 1 { href((self.page - 1).min(total_pages)) } else { Value::Null },
            },
            "resources": resources,
        })
    }

    fn page_href(&self, base_url: &str, path: &str, page: usize) -> String {
        const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
        let mut query = format!("page={page}");
        if !self.params.iter().any(|(k, _)| k == "per_page") {
            query.push_str(&format!("&per_page={}", self.per_page));
        }
        for (key, value) in &self.params {
            query.push('&');
            query.push_str(&utf8_percent_encode(key, QUERY_VALUE).to_string());
            query.push('=');
            query.push_str(&utf8_percent_encode(value, QUERY_VALUE).to_string());
        }
        format!("{base_url}{path}?{query}")
    }
}

/// `created_ats[gt]` → `created_ats`.
fn base_key(key: &str) -> &str {
    key.split('[').next().unwrap_or(key)
}

fn title(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// Whether `value` is in the filter (case-insensitively for names, as CC compares names).
pub fn matches_any(filter: &Option<Vec<String>>, value: &str, ignore_case: bool) -> bool {
    filter.as_ref().is_none_or(|values| {
        values.iter().any(|v| if ignore_case { v.eq_ignore_ascii_case(value) } else { v == value })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_links_are_absolute_and_keep_filters() {
        let q = ListQuery::parse(Some("names=a,b&per_page=2"), &["names"], 50).unwrap();
        let body = q.paginate("http://127.0.0.1:1", "/v3/apps", (0..5).map(|i| json!(i)).collect());
        assert_eq!(body["pagination"]["total_results"], 5);
        assert_eq!(body["pagination"]["total_pages"], 3);
        assert_eq!(body["pagination"]["next"]["href"], "http://127.0.0.1:1/v3/apps?page=2&names=a%2Cb&per_page=2");
        assert_eq!(body["pagination"]["previous"], Value::Null);
        assert_eq!(body["resources"], json!([0, 1]));
    }

    /// `IncludeParamValidator` and an `inclusion` validation of a single-valued filter, as list messages have them.
    #[test]
    fn includes_and_single_values_are_validated_like_cc() {
        let q = ListQuery::parse(Some("include=space,bogus,space&type=key"), &["include", "type"], 50).unwrap();
        let err = q.includes_of(&["domain", "space"]).unwrap_err();
        assert_eq!((err.code, err.status.as_u16()), (10005, 400));
        assert_eq!(
            err.detail,
            "The query parameter is invalid: Invalid included resource: 'bogus'. Valid included resources are: \
             'domain', 'space', Duplicate included resource: 'space'"
        );
        assert_eq!(q.one_of("type", &["app", "key"]).unwrap(), Some("key"));
        let err = q.one_of("type", &["managed", "user-provided"]).unwrap_err();
        assert_eq!(err.detail, "The query parameter is invalid: Type must be one of 'managed', 'user-provided'");
    }

    /// ListMessage's PaginationPageValidator (`to_i > 0`, then at most 5000) and PaginationOrderValidator.
    #[test]
    fn bad_paging_values_are_rejected_like_cc() {
        let cases = [
            ("per_page=0", "Per page must be a positive integer"),
            ("per_page=5001", "Per page must be between 1 and 5000"),
            ("per_page=x", "Per page must be a positive integer"),
            ("page=0", "Page must be a positive integer"),
            ("order_by=+name", "Order by can only be: 'created_at', 'updated_at'"),
            ("bogus=1", "Unknown query parameter(s): 'bogus'. Valid parameters are: 'page', 'per_page', 'order_by'"),
        ];
        for (query, detail) in cases {
            let keys = ["page", "per_page", "order_by"];
            let err = ListQuery::parse_message(Some(query), &keys, &["created_at", "updated_at"], 50).unwrap_err();
            assert_eq!((err.code, err.status.as_u16()), (10005, 400), "{query}");
            assert_eq!(err.detail, format!("The query parameter is invalid: {detail}"), "{query}");
        }
        let keys = ["page", "per_page", "order_by"];
        let all = ListQuery::parse_message(Some("bogus=1&per_page=0&order_by=name"), &keys, &["created_at"], 50);
        assert_eq!(
            all.unwrap_err().detail,
            "The query parameter is invalid: Per page must be a positive integer, Order by can only be: 'created_at', \
             Unknown query parameter(s): 'bogus'. Valid parameters are: 'page', 'per_page', 'order_by'",
            "every failing rule, in ListMessage's order"
        );
        let q =
            ListQuery::parse_message(Some("order_by=-updated_at"), &["order_by"], &["created_at", "updated_at"], 50);
        assert_eq!(q.unwrap().order_by, "-updated_at");
    }
}
