//! `/api/audit`: read the audit log by subject.

use audit::{Entry, Subject};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, FieldError, Params, check};

/// `GET /api/audit?subject=…&limit=…`. Both taken as text, so that a bad value is
/// reported against its parameter rather than as an unreadable query string.
#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    subject: Option<String>,
    limit: Option<String>,
}

/// The entries about one subject, oldest first.
#[derive(Debug, Serialize)]
pub(crate) struct EntriesView {
    entries: Vec<Entry>,
}

/// Entries per response unless the query says otherwise.
const DEFAULT_LIMIT: u64 = 100;
/// The most entries one response may carry.
const MAX_LIMIT: u64 = 1000;

fn parse_query(query: &AuditQuery) -> Result<(Subject, u64), ApiError> {
    let mut errors = Vec::new();
    let subject = match &query.subject {
        Some(subject) => check(&mut errors, "subject", Subject::parse(subject)),
        None => {
            errors.push(FieldError::new("subject", "is required"));
            None
        }
    };
    let limit = match &query.limit {
        None => Some(DEFAULT_LIMIT),
        Some(limit) => check(
            &mut errors,
            "limit",
            limit
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| format!("must be a whole number from 1 to {MAX_LIMIT}")),
        ),
    };
    match (subject, limit) {
        (Some(subject), Some(limit)) => Ok((subject, limit)),
        _ => Err(ApiError::invalid_query(errors)),
    }
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Params(query): Params<AuditQuery>,
) -> Result<Json<EntriesView>, ApiError> {
    let (subject, limit) = parse_query(&query)?;
    let entries =
        audit::entries_for(state.fabric.connection(audit::SCHEMA)?, &subject, limit).await?;
    Ok(Json(EntriesView { entries }))
}

impl From<audit::Error> for ApiError {
    fn from(err: audit::Error) -> Self {
        use audit::Error;
        match err {
            Error::Invalid(_) => ApiError::unprocessable(
                "invalid-audit-entry",
                "Invalid audit entry",
                err.to_string(),
            ),
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::is_unavailable(cause))
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
        }
    }

    #[test]
    fn the_limit_defaults_to_100_and_may_be_1_to_1000() {
        for (limit, expected) in [(None, 100), (Some("1"), 1), (Some("1000"), 1000)] {
            let (subject, parsed) = parse_query(&query(Some(" order:1 "), limit)).unwrap();
            assert_eq!((subject.as_str(), parsed), ("order:1", expected));
        }
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
