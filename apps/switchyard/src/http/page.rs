//! Collections a page at a time: `limit` and an opaque `cursor` in, the items and a
//! `next` link out. Pages are keyed by a unique, stable order, so walking `next` from
//! the first page sees every item that existed throughout, once.

use serde::Serialize;
use utoipa::ToSchema;

use super::error::{FieldError, check};

/// Items per page unless the query says otherwise.
pub(crate) const DEFAULT_LIMIT: u64 = 50;
/// The most items one page may carry.
pub(crate) const MAX_LIMIT: u64 = 1000;

/// The `limit` parameter: a whole number from 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] if
/// absent; `None` with the reason recorded in `errors` otherwise.
pub(crate) fn limit(errors: &mut Vec<FieldError>, raw: Option<&str>) -> Option<u64> {
    match raw {
        None => Some(DEFAULT_LIMIT),
        Some(raw) => check(
            errors,
            "limit",
            raw.parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIMIT}")),
        ),
    }
}

/// The `cursor` parameter of a collection keyed by UUID: the hyphenated form only, as
/// the document's `format: uuid` says. `None` if absent, or with the reason recorded in
/// `errors`.
pub(crate) fn uuid_cursor(errors: &mut Vec<FieldError>, raw: Option<&str>) -> Option<uuid::Uuid> {
    let raw = raw?;
    check(
        errors,
        "cursor",
        uuid::Uuid::try_parse(raw)
            .ok()
            .filter(|_| raw.len() == 36)
            .ok_or("is not a cursor of this collection"),
    )
}

/// One page of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T> {
    /// The items, in the collection's order.
    items: Vec<T>,
    /// The next page's URL, with the same filters and limit; `null` on the last page.
    next: Option<String>,
}

impl<T> Page<T> {
    /// The page made of `items`, fetched with a limit of `limit + 1` so that a further
    /// item says there is a next page. Its link repeats `path` and `filters` with the
    /// cursor of the last item kept.
    pub(crate) fn new(
        mut items: Vec<T>,
        limit: u64,
        path: &str,
        filters: &[(&str, Option<&str>)],
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let keep = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = (items.len() > keep).then(|| {
            items.truncate(keep);
            let cursor = items.last().map(&cursor_of).unwrap_or_default();
            let limit = limit.to_string();
            let mut query: Vec<(&str, &str)> = filters
                .iter()
                .filter_map(|(name, value)| value.map(|v| (*name, v)))
                .collect();
            query.push(("limit", &limit));
            query.push(("cursor", &cursor));
            let query = serde_urlencoded::to_string(&query).unwrap_or_default();
            format!("{path}?{query}")
        });
        Self { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_further_item_makes_a_next_link_with_the_filters_and_the_last_cursor() {
        let page = Page::new(
            vec![1, 2, 3],
            2,
            "/api/x",
            &[("who", Some("a&b c")), ("none", None)],
            ToString::to_string,
        );
        assert_eq!(page.items, [1, 2]);
        assert_eq!(
            page.next.as_deref(),
            Some("/api/x?who=a%26b+c&limit=2&cursor=2")
        );
        let last = Page::new(vec![1, 2], 2, "/api/x", &[], ToString::to_string);
        assert_eq!(last.items, [1, 2]);
        assert_eq!(last.next, None);
    }

    #[test]
    fn the_limit_defaults_and_is_bounded() {
        let mut errors = Vec::new();
        assert_eq!(limit(&mut errors, None), Some(DEFAULT_LIMIT));
        assert_eq!(limit(&mut errors, Some("1000")), Some(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            assert_eq!(limit(&mut errors, Some(bad)), None, "{bad}");
        }
        assert_eq!(errors.len(), 5);
        assert!(errors.iter().all(|e| e.field == "limit"));
    }
}
