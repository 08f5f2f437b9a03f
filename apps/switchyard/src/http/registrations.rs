//! `/api/registrations`: customers register themselves and verify their email.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use identity::{DisplayName, Email, Password};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use workflows::{Registering, RegistrationError, RegistrationOutcome, VerificationOutcome};

use super::AppState;
use super::accounts::AccountView;
use super::error::{ApiError, Body, ProblemType, check};
use super::sessions::Client;

/// Registration (the `identity` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(verify))
}

/// A registration.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Register {
    #[schema(max_length = 254, example = "alice@example.com")]
    email: String,
    /// 1 to 200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, example = "Alice")]
    display_name: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    password: String,
}

/// The same answer whatever the email's account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    #[schema(value_type = String, pattern = "^verification_sent$")]
    status: &'static str,
}

/// Registers a customer: a pending account, and a mail with a verification token to
/// the email. The answer is the same for an email that has an account already (a
/// pending one gets a new token; an active one nothing), so that it tells no one which
/// emails have accounts.
#[utoipa::path(
    post,
    path = "/api/registrations",
    tag = "identity",
    operation_id = "register",
    security(()),
    request_body = Register,
    responses(
        (status = 202, description = "A verification mail is on its way (if the email may register)", body = Registered),
        (status = 422, description = "`validation`: fields that break a rule, each named in `errors`"),
        (status = 429, description = "`throttled`: too many registrations from this client",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    Client(client): Client,
    Body(body): Body<Register>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    let mut errors = Vec::new();
    let email = check(&mut errors, "email", Email::parse(&body.email));
    let display_name = check(
        &mut errors,
        "display_name",
        DisplayName::parse(&body.display_name),
    );
    let password = check(&mut errors, "password", Password::new(&body.password));
    let (Some(email), Some(display_name), Some(password)) = (email, display_name, password) else {
        return Err(ApiError::validation(errors));
    };
    let registering = Registering {
        email,
        display_name,
        password,
    };
    match state.registration.register(registering, &client).await? {
        RegistrationOutcome::Accepted => Ok((
            StatusCode::ACCEPTED,
            Json(Registered {
                status: "verification_sent",
            }),
        )),
        RegistrationOutcome::Throttled { retry_after } => Err(ApiError::throttled(
            "Too many registrations",
            "too many registrations from this client",
            retry_after,
        )),
    }
}

/// A verification token, from the mail.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Verify {
    #[schema(max_length = 64)]
    token: String,
}

/// Verifies a registration's email: the account becomes active and can log in.
#[utoipa::path(
    post,
    path = "/api/registrations/verify",
    tag = "identity",
    operation_id = "verify_registration",
    security(()),
    request_body = Verify,
    responses(
        (status = 200, description = "Verified: the account is active", body = AccountView),
        (status = 422, description = "`invalid-token`: unknown, used or expired"),
    ),
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Body(body): Body<Verify>,
) -> Result<Json<AccountView>, ApiError> {
    match state.registration.verify(&body.token).await? {
        VerificationOutcome::Verified(account) => AccountView::read(&state, account.id)
            .await?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("the account is gone")),
        VerificationOutcome::InvalidToken => Err(ApiError::unprocessable(
            ProblemType::InvalidToken,
            "Invalid token",
            "the verification token is unknown, used or expired: register again for a new one",
        )),
    }
}

impl From<RegistrationError> for ApiError {
    fn from(err: RegistrationError) -> Self {
        match err {
            RegistrationError::Identity(err) => err.into(),
            RegistrationError::UnitOfWork(err) => err.into(),
            RegistrationError::Fabric(err) => err.into(),
            RegistrationError::Hashing(_) => ApiError::internal(&err),
        }
    }
}
