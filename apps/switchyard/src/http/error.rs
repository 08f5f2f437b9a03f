//! Errors at the edge: every 4xx and 5xx is `application/problem+json` (RFC 9457).
//! Details of 5xx errors are logged, not sent.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FieldError {
    /// The field's path, e.g. `lines[1].quantity`.
    pub(crate) field: String,
    /// What is wrong with it.
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl ToString) -> Self {
        Self {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

/// The value, or `None` with the reason recorded against `field` (so that every
/// invalid field of a body is reported at once).
pub(crate) fn check<T>(
    errors: &mut Vec<FieldError>,
    field: impl Into<String>,
    result: Result<T, impl ToString>,
) -> Option<T> {
    result
        .map_err(|e| errors.push(FieldError::new(field, e)))
        .ok()
}

/// A problem to report to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    extensions: Map<String, Value>,
    /// Response headers beside the content type (`Retry-After`, `Location`).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            extensions: Map::new(),
            headers: Vec::new(),
        }
    }

    /// How long a client should wait before sending a request again that failed
    /// because a database could not be used.
    const RETRY_AFTER_SECS: u32 = 1;

    /// An infrastructure failure: a 503 with `Retry-After` when `unavailable` (a
    /// database cannot be used right now: unreachable, restarting, a lock wait that
    /// timed out), so that a client tries again instead of giving up; otherwise an
    /// internal error. Either way the details are logged, not sent.
    pub(crate) fn failure(err: &dyn std::error::Error, unavailable: bool) -> Self {
        if !unavailable {
            return Self::internal(err);
        }
        tracing::warn!(error = %err, "request failed: a database is unavailable");
        let mut problem = Self::unavailable(
            "unavailable",
            "Service unavailable",
            "a database cannot be reached right now; try again shortly",
        );
        problem.headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(Self::RETRY_AFTER_SECS),
        ));
        problem
    }

    /// Adds a `Location` header (the status URL of what the request started).
    pub(crate) fn located(mut self, location: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(location) {
            self.headers.push((header::LOCATION, value));
        }
        self
    }

    pub(crate) fn bad_request(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, title, detail)
    }

    pub(crate) fn payment_required(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, kind, title, detail)
    }

    pub(crate) fn forbidden(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::FORBIDDEN, kind, title, detail)
    }

    pub(crate) fn unavailable(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, kind, title, detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub(crate) fn validation(errors: Vec<FieldError>) -> Self {
        Self::field_errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid request",
            errors,
        )
    }

    /// Invalid query parameters: 400, naming each one in `errors`.
    pub(crate) fn invalid_query(errors: Vec<FieldError>) -> Self {
        Self::field_errors(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query parameters",
            errors,
        )
    }

    fn field_errors(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        errors: Vec<FieldError>,
    ) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::new(status, kind, title, detail).with("errors", json!(errors))
    }

    pub(crate) fn unprocessable(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
    }

    pub(crate) fn conflict(
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::CONFLICT, kind, title, detail)
    }

    /// An infrastructure failure: logged in full, reported without detail.
    pub(crate) fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %err, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request failed; the server log has the details",
        )
    }

    /// Adds an extension member to the problem.
    pub(crate) fn with(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.title,
            self.status.as_u16(),
            self.detail
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extensions;
        body.insert(
            "type".into(),
            json!(format!("urn:switchyard:problem:{}", self.kind)),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => Self::new(
                status,
                "invalid-body",
                "Request body does not match the schema",
                detail,
            ),
            JsonRejection::JsonSyntaxError(_) => {
                Self::new(status, "malformed-json", "Malformed JSON", detail)
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                status,
                "unsupported-media-type",
                "Expected a JSON body",
                "send `Content-Type: application/json`",
            ),
            _ => Self::new(status, "bad-body", "Unreadable request body", detail),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            rejection.status(),
            "invalid-query",
            "Invalid query parameters",
            rejection.body_text(),
        )
    }
}

/// A JSON request body whose rejections are problems.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// Query parameters whose rejections are problems.
#[derive(Debug)]
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such resource")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this resource does not support the method",
    )
}

/// Turns error responses made by middleware (timeouts, body limits, caught panics)
/// into problems, so that clients see one error format.
pub(crate) async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    // A JSON error body (a problem, or a report such as `/health/ready`'s) is the
    // handler's answer; only bare ones (plain text or empty, from axum's extractors
    // and the tower layers) are rewritten.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        StatusCode::SERVICE_UNAVAILABLE => "the request took too long",
        StatusCode::INTERNAL_SERVER_ERROR => "the request failed; the server log has the details",
        _ => title,
    };
    ApiError::new(status, "http", title, detail).into_response()
}
