//! `/api/sessions` and `/api/me`: log in (password, then TOTP when it is on), the
//! caller's sessions and account, TOTP enrolment and password changes.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use identity::{Password, Session, TotpConfirmation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use workflows::{LoginError, LoginOutcome, PasswordStep, TotpStep};

use super::AppState;
use super::accounts::AccountView;
use super::auth::Caller;
use super::error::{ApiError, Body, FieldError, ProblemType};

/// Logging in and the caller's own account (the `identity` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(log_in, list, end_all))
        .routes(routes!(end_current))
        .routes(routes!(end_one))
        .routes(routes!(me))
        .routes(routes!(enroll_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(change_password))
}

/// A login step: an email and password first; then, if TOTP is on, the challenge and
/// a code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum LoginBody {
    /// The first step.
    Password {
        #[schema(max_length = 254, example = "admin@example.com")]
        email: String,
        #[schema(max_length = 256)]
        password: String,
    },
    /// The second step.
    Totp {
        /// As the first step returned it.
        #[schema(max_length = 64)]
        challenge: String,
        /// Six digits from the authenticator, or a recovery code.
        #[schema(max_length = 64)]
        code: String,
    },
}

/// A session, without its token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    id: Uuid,
    /// The client's user agent at login.
    user_agent: String,
    created_at: DateTime<Utc>,
    /// When it was last used (to the minute).
    last_used_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// Whether it is the session of this request.
    current: bool,
}

impl SessionView {
    fn of(session: Session, current: Uuid) -> Self {
        Self {
            current: session.id == current,
            id: session.id,
            user_agent: session.user_agent,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
        }
    }
}

/// A session started: its token is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionStarted {
    /// Send it as `Authorization: Bearer <token>`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    token: String,
    session: SessionView,
}

/// The password was right; TOTP is on: send a code with this challenge.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpRequired {
    #[schema(value_type = String, pattern = "^totp_required$")]
    status: &'static str,
    /// For the second step, within `identity.challenge_ttl`.
    challenge: String,
}

/// The client's address, as the server accepted the connection.
#[derive(Debug)]
pub(crate) struct Client(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string()),
        ))
    }
}

fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Logs in: the password step starts a session, or (with TOTP on) answers with a
/// challenge for the TOTP step, which starts it. Unknown emails and wrong passwords
/// get the same answer, in the same time.
#[utoipa::path(
    post,
    path = "/api/sessions",
    tag = "identity",
    operation_id = "log_in",
    security(()),
    request_body = LoginBody,
    responses(
        (status = 201, description = "Logged in: the token is shown once", body = SessionStarted),
        (status = 200, description = "The password was right; send a TOTP or recovery code with the challenge", body = TotpRequired),
        (status = 401, description = "`invalid-credentials`: no such account or a wrong password; `invalid-code`: a wrong or used code, or a challenge that is over"),
        (status = 403, description = "`account-not-active`: the account may not log in (`status`)"),
        (status = 429, description = "`throttled`: too many failures for this email or client",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(crate) async fn log_in(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Body(body): Body<LoginBody>,
) -> Result<Response, ApiError> {
    let user_agent = user_agent(&headers);
    let outcome = match &body {
        LoginBody::Password { email, password } => {
            state
                .login
                .password(&PasswordStep {
                    email,
                    password,
                    client: &client,
                    user_agent,
                })
                .await?
        }
        LoginBody::Totp { challenge, code } => {
            state
                .login
                .totp(&TotpStep {
                    challenge,
                    code,
                    client: &client,
                    user_agent,
                })
                .await?
        }
    };
    match outcome {
        LoginOutcome::SessionStarted { session, token } => {
            let current = session.id;
            Ok((
                StatusCode::CREATED,
                Json(SessionStarted {
                    token: token.as_str().to_owned(),
                    session: SessionView::of(session, current),
                }),
            )
                .into_response())
        }
        LoginOutcome::TotpRequired { challenge } => Ok(Json(TotpRequired {
            status: "totp_required",
            challenge: challenge.as_str().to_owned(),
        })
        .into_response()),
        LoginOutcome::InvalidCredentials => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::InvalidCredentials,
            "Invalid credentials",
            "no account has this email, or the password is wrong",
        )),
        LoginOutcome::InvalidCode => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ProblemType::InvalidCode,
            "Invalid code",
            "the code is wrong or used, or the challenge is over: log in again",
        )),
        LoginOutcome::AccountNotActive { status } => Err(ApiError::forbidden(
            ProblemType::AccountNotActive,
            "Account not active",
            format!("the account is {status} and may not log in"),
        )
        .with("status", json!(status.as_str()))),
        LoginOutcome::Throttled { retry_after } => Err(ApiError::throttled(
            "Too many failed logins",
            "too many failed logins",
            retry_after,
        )),
    }
}

/// The caller's sessions, oldest first.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "identity",
    operation_id = "list_sessions",
    security(("session" = [])),
    responses((status = 200, description = "The caller's sessions", body = Vec<SessionView>)),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    let sessions = identity::list_sessions(
        state.fabric.connection(identity::SCHEMA)?,
        caller.account.id,
    )
    .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView::of(s, caller.session.id))
            .collect(),
    ))
}

/// Ends every session of the caller, this one too.
#[utoipa::path(
    delete,
    path = "/api/sessions",
    tag = "identity",
    operation_id = "end_all_sessions",
    security(("session" = [])),
    responses((status = 204, description = "Every session ended")),
)]
pub(crate) async fn end_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    identity::revoke_all_sessions(
        state.fabric.connection(identity::SCHEMA)?,
        caller.account.id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Logs out: ends this request's session.
#[utoipa::path(
    delete,
    path = "/api/sessions/current",
    tag = "identity",
    operation_id = "log_out",
    security(("session" = [])),
    responses((status = 204, description = "The session ended")),
)]
pub(crate) async fn end_current(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    identity::revoke_session(
        state.fabric.connection(identity::SCHEMA)?,
        caller.account.id,
        caller.session.id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/api/sessions/{id}",
    tag = "identity",
    operation_id = "end_session",
    security(("session" = [])),
    params(("id" = String, Path, description = "The session's id (from `GET /api/sessions`)")),
    responses(
        (status = 204, description = "The session ended"),
        (status = 404, description = "`not-found`: the caller has no session with this id"),
    ),
)]
pub(crate) async fn end_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::not_found(format!("you have no session {id}"));
    let parsed = Uuid::try_parse(&id).map_err(|_| not_found())?;
    let ended = identity::revoke_session(
        state.fabric.connection(identity::SCHEMA)?,
        caller.account.id,
        parsed,
    )
    .await?;
    if !ended {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account, roles and abilities.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "identity",
    operation_id = "me",
    security(("session" = [])),
    responses((status = 200, description = "The caller's account", body = AccountView)),
)]
pub(crate) async fn me(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(
        AccountView::read(&state, caller.account.id)
            .await?
            .ok_or_else(|| ApiError::not_found("the account is gone"))?,
    ))
}

/// What an authenticator needs: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnrolmentView {
    /// The secret in base32, to type into an authenticator.
    secret_base32: String,
    /// The `otpauth://totp/…` URI, for a QR code.
    otpauth_uri: String,
}

/// Starts TOTP enrolment (again, while unconfirmed): add the secret to an
/// authenticator, then confirm with its first code. TOTP is off until confirmed.
#[utoipa::path(
    post,
    path = "/api/me/totp",
    tag = "identity",
    operation_id = "enroll_totp",
    security(("session" = [])),
    responses(
        (status = 201, description = "Enrolment started", body = TotpEnrolmentView),
        (status = 409, description = "`totp-already-enabled`"),
    ),
)]
pub(crate) async fn enroll_totp(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<(StatusCode, Json<TotpEnrolmentView>), ApiError> {
    let now = state.now();
    let account = caller.account.clone();
    let enrolment = state
        .fabric
        .unit_of_work("enroll_totp")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step(identity::SCHEMA, "enroll_totp", async |tx| {
                identity::enroll_totp(tx, account.id, account.email.as_str(), now).await
            })
            .await
        })
        .await?
        .value;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolmentView {
            secret_base32: enrolment.secret_base32,
            otpauth_uri: enrolment.otpauth_uri,
        }),
    ))
}

/// A code from the authenticator.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ConfirmTotp {
    #[schema(max_length = 64, example = "123456")]
    code: String,
}

/// TOTP is on: the one-time recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnabled {
    /// Each works once in place of a TOTP code.
    recovery_codes: Vec<String>,
}

/// Confirms TOTP enrolment with a first valid code: from the next login on, a code is
/// asked for after the password.
#[utoipa::path(
    post,
    path = "/api/me/totp/confirm",
    tag = "identity",
    operation_id = "confirm_totp",
    security(("session" = [])),
    request_body = ConfirmTotp,
    responses(
        (status = 200, description = "TOTP is on", body = TotpEnabled),
        (status = 422, description = "`invalid-code`: not a valid code now, or no enrolment to confirm"),
    ),
)]
pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ConfirmTotp>,
) -> Result<Json<TotpEnabled>, ApiError> {
    let now = state.now();
    let account = caller.account.id;
    let confirmation = state
        .fabric
        .unit_of_work("confirm_totp")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step(identity::SCHEMA, "confirm_totp", async |tx| {
                identity::confirm_totp(tx, account, &body.code, now).await
            })
            .await
        })
        .await?
        .value;
    match confirmation {
        TotpConfirmation::Confirmed { recovery_codes } => Ok(Json(TotpEnabled {
            recovery_codes: recovery_codes
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
        })),
        TotpConfirmation::InvalidCode => Err(ApiError::unprocessable(
            ProblemType::InvalidCode,
            "Invalid code",
            "not a valid code now, or TOTP enrolment was not started",
        )),
    }
}

/// A new password, with the current one.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ChangePassword {
    #[schema(max_length = 256)]
    current_password: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    new_password: String,
}

/// Changes the caller's password: every session of the account ends, this one too.
#[utoipa::path(
    put,
    path = "/api/me/password",
    tag = "identity",
    operation_id = "change_password",
    security(("session" = [])),
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; log in again"),
        (status = 422, description = "`invalid-credentials`: the current password is wrong; `validation`: the new one breaks a rule"),
    ),
)]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let new = Password::new(&body.new_password)
        .map_err(|e| ApiError::validation(vec![FieldError::new("new_password", e)]))?;
    let current = Password::attempt(&body.current_password).ok();
    let conn = state.fabric.connection(identity::SCHEMA)?;
    let stored = identity::stored_password(conn, caller.account.id).await?;
    let policy = state.login.settings().password;
    let hashed = tokio::task::spawn_blocking(move || {
        let matches = current.is_some_and(|current| {
            matches!(
                identity::verify_password(&current, stored.as_ref(), &policy),
                Ok(identity::PasswordCheck::Matches { .. })
            )
        });
        matches.then(|| identity::hash_password(&new, &policy))
    })
    .await
    .map_err(|err| ApiError::internal(&err))?;
    let Some(hashed) = hashed else {
        return Err(ApiError::unprocessable(
            ProblemType::InvalidCredentials,
            "Invalid credentials",
            "the current password is wrong",
        ));
    };
    let hashed = hashed?;
    let now = state.now();
    let account = caller.account.id;
    state
        .fabric
        .unit_of_work("change_password")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step(identity::SCHEMA, "set_password", async |tx| {
                identity::set_password(tx, account, &hashed, now).await
            })
            .await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<LoginError> for ApiError {
    fn from(err: LoginError) -> Self {
        match err {
            LoginError::Identity(err) => err.into(),
            LoginError::UnitOfWork(err) => err.into(),
            LoginError::Fabric(err) => err.into(),
            LoginError::Hashing(_) => ApiError::internal(&err),
        }
    }
}
