//! `/api/audit`: read the audit log by subject.

use audit::{Entry, Subject};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, FieldError, Params, ProblemType, check};
use super::page::{self, Page};

/// The audit log (the `audit` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// `GET /api/audit`: taken as text, so that a bad value is reported against its
/// parameter rather than as an unreadable query string.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// What the entries are about, e.g. `order:<id>`: 1 to 255 characters without
    /// control characters, surrounding whitespace ignored.
    #[param(required = true, max_length = 255, value_type = String,
        pattern = "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f](?:[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?\\s*$")]
    subject: Option<String>,
    /// Entries per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(pattern = "^[0-9]{1,18}$")]
    cursor: Option<String>,
}

/// A recorded audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EntryView {
    /// Ids grow in the order entries were recorded.
    id: i64,
    /// Who acted, e.g. `user:42`.
    actor: String,
    /// What they did, e.g. `order.placed`.
    action: String,
    /// What they did it to, e.g. `order:<id>`.
    subject: String,
    /// When it happened, to the microsecond.
    occurred_at: DateTime<Utc>,
    /// The data recorded with it.
    data: Value,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        Self {
            id: entry.id,
            actor: entry.actor.as_str().to_owned(),
            action: entry.action.as_str().to_owned(),
            subject: entry.subject.as_str().to_owned(),
            occurred_at: entry.occurred_at,
            data: entry.data,
        }
    }
}

fn parse_query(query: &AuditQuery) -> Result<(Subject, Option<i64>, u64), ApiError> {
    let mut errors = Vec::new();
    let subject = match &query.subject {
        // The document bounds the parameter as sent, padding and all.
        Some(subject) if subject.chars().count() > Subject::MAX_CHARS => {
            errors.push(FieldError::new("subject", "must be 1 to 255 characters"));
            None
        }
        Some(subject) => check(&mut errors, "subject", Subject::parse(subject)),
        None => {
            errors.push(FieldError::new("subject", "is required"));
            None
        }
    };
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let cursor = query.cursor.as_deref().and_then(|cursor| {
        check(
            &mut errors,
            "cursor",
            cursor
                .parse::<i64>()
                .ok()
                .filter(|_| cursor.bytes().all(|b| b.is_ascii_digit()))
                .ok_or("is not a cursor of this collection"),
        )
    });
    match (subject, limit) {
        (Some(subject), Some(limit)) if errors.is_empty() => Ok((subject, cursor, limit)),
        _ => Err(ApiError::invalid_query(errors)),
    }
}

/// Lists the entries about one subject, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/audit",
    tag = "audit",
    operation_id = "list_audit_entries",
    security(("session" = ["audit.read"])),
    params(AuditQuery),
    responses(
        (status = 200, description = "One page", body = Page<EntryView>),
        (status = 400, description = "`invalid-query`: a missing subject or a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Params(query): Params<AuditQuery>,
) -> Result<Json<Page<EntryView>>, ApiError> {
    let (subject, cursor, limit) = parse_query(&query)?;
    let entries = audit::entries_for(
        state.fabric.connection(audit::SCHEMA)?,
        &subject,
        cursor,
        limit + 1,
    )
    .await?;
    Ok(Json(Page::new(
        entries.into_iter().map(EntryView::from).collect(),
        limit,
        "/api/audit",
        &[("subject", Some(subject.as_str()))],
        |entry| entry.id.to_string(),
    )))
}

impl From<audit::Error> for ApiError {
    fn from(err: audit::Error) -> Self {
        use audit::Error;
        match err {
            Error::Invalid(_) => ApiError::unprocessable(
                ProblemType::InvalidAuditEntry,
                "Invalid audit entry",
                err.to_string(),
            ),
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            Error::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(subject: Option<&str>, limit: Option<&str>) -> AuditQuery {
        AuditQuery {
            subject: subject.map(str::to_owned),
            limit: limit.map(str::to_owned),
            cursor: None,
        }
    }

    #[test]
    fn the_limit_defaults_to_50_and_may_be_1_to_1000() {
        for (limit, expected) in [(None, 50), (Some("1"), 1), (Some("1000"), 1000)] {
            let (subject, _, parsed) = parse_query(&query(Some(" order:1 "), limit)).unwrap();
            assert_eq!((subject.as_str(), parsed), ("order:1", expected));
        }
        let mut bad_cursor = query(Some("order:1"), None);
        bad_cursor.cursor = Some("x".into());
        let err = parse_query(&bad_cursor).unwrap_err().to_string();
        assert!(err.contains("cursor: is not a cursor"), "{err}");
    }

    #[test]
    fn bad_parameters_are_each_named() {
        let long = "s".repeat(256);
        for (subject, limit, bad) in [
            (None, None, "subject: is required"),
            (Some(""), None, "subject: must be 1 to 255"),
            (Some("   "), None, "subject: must be 1 to 255"),
            (Some(long.as_str()), None, "subject: must be 1 to 255"),
            (Some("order:1"), Some("0"), "limit: must be a whole number"),
            (
                Some("order:1"),
                Some("1001"),
                "limit: must be a whole number",
            ),
            (Some("order:1"), Some("-1"), "limit: must be a whole number"),
            (
                Some("order:1"),
                Some("ten"),
                "limit: must be a whole number",
            ),
            (Some("order:1"), Some(""), "limit: must be a whole number"),
            (None, Some("ten"), "subject: is required; limit: must be"),
        ] {
            let err = parse_query(&query(subject, limit)).unwrap_err().to_string();
            assert!(
                err.starts_with("Invalid query parameters (400): ") && err.contains(bad),
                "{subject:?} {limit:?}: {err}"
            );
        }
    }
}
