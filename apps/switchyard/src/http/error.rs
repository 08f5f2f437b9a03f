//! Errors at the edge: every 4xx and 5xx is `application/problem+json` (RFC 9457).
//! Details of 5xx errors are logged, not sent.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
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

/// The kinds of problem the API reports, each a `type` URN
/// (`urn:switchyard:problem:<slug>`). The OpenAPI document lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemType {
    MalformedJson,
    InvalidBody,
    BadBody,
    UnsupportedMediaType,
    Validation,
    InvalidQuery,
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    NotFound,
    MethodNotAllowed,
    DuplicateSku,
    DuplicateOrder,
    OutOfStock,
    UnknownProduct,
    InvalidOrder,
    StockOverflow,
    InvalidTransition,
    ReservationNotHeld,
    InvalidAuditEntry,
    VerificationRequired,
    PaymentDeclined,
    PlacementAbandoned,
    PlacementEnded,
    RefundRefused,
    RefundWindowClosed,
    RefundFailed,
    Unauthenticated,
    Forbidden,
    InvalidCredentials,
    InvalidCode,
    AccountNotActive,
    Throttled,
    DuplicateEmail,
    UnknownRole,
    TotpAlreadyEnabled,
    InvalidToken,
    Unavailable,
    Timeout,
    PayloadTooLarge,
    Http,
    Internal,
}

impl ProblemType {
    /// Every problem type, for the document.
    pub(crate) const ALL: [Self; 41] = [
        Self::MalformedJson,
        Self::InvalidBody,
        Self::BadBody,
        Self::UnsupportedMediaType,
        Self::Validation,
        Self::InvalidQuery,
        Self::InvalidIdempotencyKey,
        Self::IdempotencyKeyReused,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::DuplicateSku,
        Self::DuplicateOrder,
        Self::OutOfStock,
        Self::UnknownProduct,
        Self::InvalidOrder,
        Self::StockOverflow,
        Self::InvalidTransition,
        Self::ReservationNotHeld,
        Self::InvalidAuditEntry,
        Self::VerificationRequired,
        Self::PaymentDeclined,
        Self::PlacementAbandoned,
        Self::PlacementEnded,
        Self::RefundRefused,
        Self::RefundWindowClosed,
        Self::RefundFailed,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::InvalidCredentials,
        Self::InvalidCode,
        Self::AccountNotActive,
        Self::Throttled,
        Self::DuplicateEmail,
        Self::UnknownRole,
        Self::TotpAlreadyEnabled,
        Self::InvalidToken,
        Self::Unavailable,
        Self::Timeout,
        Self::PayloadTooLarge,
        Self::Http,
        Self::Internal,
    ];

    /// The last part of the `type` URN.
    pub(crate) fn slug(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed-json",
            Self::InvalidBody => "invalid-body",
            Self::BadBody => "bad-body",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::Validation => "validation",
            Self::InvalidQuery => "invalid-query",
            Self::InvalidIdempotencyKey => "invalid-idempotency-key",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::DuplicateSku => "duplicate-sku",
            Self::DuplicateOrder => "duplicate-order",
            Self::OutOfStock => "out-of-stock",
            Self::UnknownProduct => "unknown-product",
            Self::InvalidOrder => "invalid-order",
            Self::StockOverflow => "stock-overflow",
            Self::InvalidTransition => "invalid-transition",
            Self::ReservationNotHeld => "reservation-not-held",
            Self::InvalidAuditEntry => "invalid-audit-entry",
            Self::VerificationRequired => "verification-required",
            Self::PaymentDeclined => "payment-declined",
            Self::PlacementAbandoned => "placement-abandoned",
            Self::PlacementEnded => "placement-ended",
            Self::RefundRefused => "refund-refused",
            Self::RefundWindowClosed => "refund-window-closed",
            Self::RefundFailed => "refund-failed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::InvalidCredentials => "invalid-credentials",
            Self::InvalidCode => "invalid-code",
            Self::AccountNotActive => "account-not-active",
            Self::Throttled => "throttled",
            Self::DuplicateEmail => "duplicate-email",
            Self::UnknownRole => "unknown-role",
            Self::TotpAlreadyEnabled => "totp-already-enabled",
            Self::InvalidToken => "invalid-token",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::PayloadTooLarge => "payload-too-large",
            Self::Http => "http",
            Self::Internal => "internal",
        }
    }

    /// The `type` member: `urn:switchyard:problem:<slug>`.
    pub(crate) fn urn(self) -> String {
        format!("urn:switchyard:problem:{}", self.slug())
    }

    /// What it means, for the document.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Self::MalformedJson => "A request body that is not JSON.",
            Self::InvalidBody => {
                "A JSON body of the wrong shape (a missing field, a string for a number)."
            }
            Self::BadBody => "A body that cannot be read (cut off, or over the size limit).",
            Self::UnsupportedMediaType => "A body without `Content-Type: application/json`.",
            Self::Validation => "Fields that break a rule of the domain; `errors` names each.",
            Self::InvalidQuery => "Query parameters that cannot be used; `errors` names each.",
            Self::InvalidIdempotencyKey => "An `Idempotency-Key` header that is not a valid key.",
            Self::IdempotencyKeyReused => {
                "An `Idempotency-Key` already used for a different request."
            }
            Self::NotFound => "No such resource.",
            Self::MethodNotAllowed => "The resource does not support the method.",
            Self::DuplicateSku => "A product with this SKU exists.",
            Self::DuplicateOrder => "An order with this id exists.",
            Self::OutOfStock => "Less stock is available than asked for.",
            Self::UnknownProduct => "An order names a product that does not exist.",
            Self::InvalidOrder => "An order breaks a rule of the orders domain.",
            Self::StockOverflow => "A stock level would pass its maximum.",
            Self::InvalidTransition => {
                "A status change the lifecycle (of an order, of an account) does not allow."
            }
            Self::ReservationNotHeld => "A reservation that is no longer held.",
            Self::InvalidAuditEntry => "An audit entry that cannot be stored.",
            Self::VerificationRequired => "The customer must be verified before paying this much.",
            Self::PaymentDeclined => "The payment gateway declined the charge.",
            Self::PlacementAbandoned => "A placement that was undone; nothing was charged.",
            Self::PlacementEnded => {
                "A placement that has ended: an order is refunded, not cancelled."
            }
            Self::RefundRefused => {
                "A refund the order does not allow (`refusal` says why); nothing changed."
            }
            Self::RefundWindowClosed => {
                "The customer's refund window has closed; staff with `orders.refund` may refund."
            }
            Self::RefundFailed => {
                "The payment gateway refused the refund or kept failing; the order is unchanged."
            }
            Self::Unauthenticated => {
                "No valid session: send `Authorization: Bearer <token>` from `POST /api/sessions`."
            }
            Self::Forbidden => "The session's roles do not grant an ability the operation needs.",
            Self::InvalidCredentials => "No account has this email, or the password is wrong.",
            Self::InvalidCode => {
                "The TOTP or recovery code is wrong or used, or the challenge is over."
            }
            Self::AccountNotActive => "The account may not log in (`status` says why).",
            Self::Throttled => "Too many failed logins: wait `Retry-After` seconds.",
            Self::DuplicateEmail => "An account with this email exists.",
            Self::UnknownRole => "No role of this name is defined.",
            Self::TotpAlreadyEnabled => "TOTP is on for the account already.",
            Self::InvalidToken => "A verification token that is unknown, used or expired.",
            Self::Unavailable => {
                "A database cannot be used right now (`Retry-After` says when to try again)."
            }
            Self::Timeout => "The request took longer than `http.request_timeout`.",
            Self::PayloadTooLarge => "The request body is larger than `http.body_limit_bytes`.",
            Self::Http => "Any other HTTP-level error.",
            Self::Internal => "A failure on the server; the log has the details.",
        }
    }

    /// The statuses it is sent with, for the document.
    pub(crate) fn statuses(self) -> &'static [u16] {
        match self {
            Self::MalformedJson | Self::InvalidQuery | Self::InvalidIdempotencyKey => &[400],
            Self::BadBody => &[400, 413],
            Self::InvalidBody
            | Self::Validation
            | Self::IdempotencyKeyReused
            | Self::UnknownProduct
            | Self::InvalidOrder
            | Self::StockOverflow
            | Self::InvalidAuditEntry
            | Self::UnknownRole
            | Self::InvalidToken => &[422],
            Self::UnsupportedMediaType => &[415],
            Self::NotFound => &[404],
            Self::MethodNotAllowed => &[405],
            Self::DuplicateSku
            | Self::DuplicateOrder
            | Self::OutOfStock
            | Self::InvalidTransition
            | Self::ReservationNotHeld
            | Self::DuplicateEmail
            | Self::TotpAlreadyEnabled
            | Self::PlacementEnded => &[409],
            Self::RefundRefused => &[409, 422],
            Self::VerificationRequired
            | Self::Forbidden
            | Self::AccountNotActive
            | Self::RefundWindowClosed => &[403],
            Self::RefundFailed => &[502],
            Self::Unauthenticated | Self::InvalidCredentials | Self::InvalidCode => &[401],
            Self::Throttled => &[429],
            Self::PaymentDeclined => &[402],
            Self::PlacementAbandoned | Self::Unavailable | Self::Timeout => &[503],
            Self::PayloadTooLarge => &[413],
            Self::Http => &[400, 408, 411, 431],
            Self::Internal => &[500],
        }
    }
}

/// A problem to report to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    kind: ProblemType,
    title: &'static str,
    detail: String,
    extensions: Map<String, Value>,
    /// Response headers beside the content type (`Retry-After`, `Location`).
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: ProblemType,
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
            ProblemType::Unavailable,
            "Service unavailable",
            "a database cannot be reached right now; try again shortly",
        );
        problem.headers.push((
            header::RETRY_AFTER,
            HeaderValue::from(Self::RETRY_AFTER_SECS),
        ));
        problem
    }

    /// Adds a response header.
    pub(crate) fn header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a `Location` header (the status URL of what the request started).
    pub(crate) fn located(mut self, location: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(location) {
            self.headers.push((header::LOCATION, value));
        }
        self
    }

    pub(crate) fn bad_request(
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, title, detail)
    }

    pub(crate) fn payment_required(
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, kind, title, detail)
    }

    pub(crate) fn forbidden(
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::FORBIDDEN, kind, title, detail)
    }

    pub(crate) fn unavailable(
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, kind, title, detail)
    }

    /// Too many attempts: 429 with `Retry-After` (at least a second), the detail
    /// saying what (`"too many failed logins"`) and when to try again.
    pub(crate) fn throttled(
        title: &'static str,
        what: &str,
        retry_after: chrono::Duration,
    ) -> Self {
        let seconds = retry_after.num_seconds().max(1);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ProblemType::Throttled,
            title,
            format!("{what}: try again in {seconds} s"),
        )
        .header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ProblemType::NotFound,
            "Not found",
            detail,
        )
    }

    pub(crate) fn validation(errors: Vec<FieldError>) -> Self {
        Self::field_errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::Validation,
            "Invalid request",
            errors,
        )
    }

    /// Invalid query parameters: 400, naming each one in `errors`.
    pub(crate) fn invalid_query(errors: Vec<FieldError>) -> Self {
        Self::field_errors(
            StatusCode::BAD_REQUEST,
            ProblemType::InvalidQuery,
            "Invalid query parameters",
            errors,
        )
    }

    fn field_errors(
        status: StatusCode,
        kind: ProblemType,
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
        kind: ProblemType,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, kind, title, detail)
    }

    pub(crate) fn conflict(
        kind: ProblemType,
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
            ProblemType::Internal,
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
        body.insert("type".into(), json!(self.kind.urn()));
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        if let Ok(ids) = REQUEST.try_with(Clone::clone) {
            body.insert("request_id".into(), json!(ids.request_id));
            if let Some(trace_id) = ids.trace_id {
                body.insert("trace_id".into(), json!(trace_id));
            }
        }
        let mut response = (self.status, Json(Value::Object(body))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// The ids of the request being handled, for the problems it answers with.
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    /// The `x-request-id` header (the client's, or one made for the request).
    pub(crate) request_id: String,
    /// The trace the request's span belongs to, when traces are exported.
    pub(crate) trace_id: Option<String>,
}

tokio::task_local! {
    static REQUEST: RequestIds;
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => Self::new(
                status,
                ProblemType::InvalidBody,
                "Request body does not match the schema",
                detail,
            ),
            JsonRejection::JsonSyntaxError(_) => {
                Self::new(status, ProblemType::MalformedJson, "Malformed JSON", detail)
            }
            JsonRejection::MissingJsonContentType(_) => Self::new(
                status,
                ProblemType::UnsupportedMediaType,
                "Expected a JSON body",
                "send `Content-Type: application/json`",
            ),
            _ => Self::new(
                status,
                ProblemType::BadBody,
                "Unreadable request body",
                detail,
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            rejection.status(),
            ProblemType::InvalidQuery,
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
        ProblemType::MethodNotAllowed,
        "Method not allowed",
        "this resource does not support the method",
    )
}

/// Middleware around every handler: problems carry the request's ids, and error
/// responses made by middleware (timeouts, body limits, caught panics) become problems,
/// so that clients see one error format.
pub(crate) async fn problems(request: Request, next: Next) -> Response {
    let ids = RequestIds {
        request_id: request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        trace_id: crate::telemetry::trace_id(),
    };
    REQUEST
        .scope(ids, async move {
            let response = next.run(request).await;
            problem_for_bare_errors(response)
        })
        .await
}

fn problem_for_bare_errors(response: Response) -> Response {
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
    let (kind, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            ProblemType::PayloadTooLarge,
            "the request body is too large",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (ProblemType::Timeout, "the request took too long"),
        StatusCode::INTERNAL_SERVER_ERROR => (
            ProblemType::Internal,
            "the request failed; the server log has the details",
        ),
        _ => (ProblemType::Http, title),
    };
    let mut problem = ApiError::new(status, kind, title, detail);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body is refused unread, so the server closes the connection after this
        // answer; saying so keeps a client from sending its next request down it (a
        // pooled client that does gets a broken pipe).
        problem = problem.header(header::CONNECTION, HeaderValue::from_static("close"));
    }
    problem.into_response()
}
