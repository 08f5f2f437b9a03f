//! `/api/accounts`: account administration behind `identity.admin`: open accounts,
//! move them through their lifecycle, grant and revoke roles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use identity::{
    AccountId, AccountKind, AccountStatus, DisplayName, Email, Password, PasswordPolicy, RoleName,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Body, FieldError, Params, ProblemType, check};
use super::page::{self, Page};
use crate::accounts::{self, AdminError, Opening};

/// Account administration (the `identity` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, open))
        .routes(routes!(show))
        .routes(routes!(set_status))
        .routes(routes!(grant, revoke))
}

/// An account, with its roles and the abilities they grant.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountView {
    id: Uuid,
    email: String,
    display_name: String,
    kind: KindView,
    status: StatusView,
    roles: Vec<String>,
    abilities: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AccountView {
    /// Account `id` as it is now, if there is one.
    pub(crate) async fn read(state: &AppState, id: AccountId) -> Result<Option<Self>, ApiError> {
        let conn = state.fabric.connection(identity::SCHEMA)?;
        let Some(account) = identity::get_account(conn, id).await? else {
            return Ok(None);
        };
        Self::of(state, account).await.map(Some)
    }

    async fn of(state: &AppState, account: identity::Account) -> Result<Self, ApiError> {
        let conn = state.fabric.connection(identity::SCHEMA)?;
        let roles = identity::roles_of(conn, account.id).await?;
        let abilities = identity::abilities_of(conn, account.id).await?;
        Ok(Self {
            id: account.id.0,
            email: account.email.as_str().to_owned(),
            display_name: account.display_name.as_str().to_owned(),
            kind: match account.kind {
                AccountKind::Staff => KindView::Staff,
                AccountKind::Customer => KindView::Customer,
            },
            status: StatusView::from(account.status),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            abilities: abilities.iter().map(|a| a.as_str().to_owned()).collect(),
            created_at: account.created_at,
            updated_at: account.updated_at,
        })
    }
}

/// Staff (runs the shop) or customer (buys).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum KindView {
    #[default]
    Staff,
    Customer,
}

/// Where an account is in its life: `pending` (to be verified) → `active` ⇄
/// `suspended` → `disabled` (for good).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum StatusView {
    Pending,
    Active,
    Suspended,
    Disabled,
}

impl From<AccountStatus> for StatusView {
    fn from(status: AccountStatus) -> Self {
        match status {
            AccountStatus::Pending => Self::Pending,
            AccountStatus::Active => Self::Active,
            AccountStatus::Suspended => Self::Suspended,
            AccountStatus::Disabled => Self::Disabled,
        }
    }
}

impl From<StatusView> for AccountStatus {
    fn from(status: StatusView) -> Self {
        match status {
            StatusView::Pending => Self::Pending,
            StatusView::Active => Self::Active,
            StatusView::Suspended => Self::Suspended,
            StatusView::Disabled => Self::Disabled,
        }
    }
}

/// An account to open: active, with its password and roles.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct OpenAccount {
    #[schema(max_length = 254, example = "clerk@example.com")]
    email: String,
    /// 1 to 200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, example = "Clerk")]
    display_name: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    password: String,
    #[serde(default)]
    kind: KindView,
    /// Roles to grant (`admin`, `operator`, `catalog`, `customer`, or one defined since).
    #[serde(default)]
    #[schema(max_items = 32)]
    roles: Vec<String>,
}

/// `GET /api/accounts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListAccounts {
    /// Accounts per page, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Where the page starts: from the `next` link of the page before.
    #[param(value_type = Option<uuid::Uuid>)]
    cursor: Option<String>,
}

/// Lists accounts, oldest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/accounts",
    tag = "identity",
    operation_id = "list_accounts",
    security(("session" = ["identity.admin"])),
    params(ListAccounts),
    responses(
        (status = 200, description = "One page", body = Page<AccountView>),
        (status = 400, description = "`invalid-query`: a parameter that cannot be used, named in `errors`"),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Params(query): Params<ListAccounts>,
) -> Result<Json<Page<AccountView>>, ApiError> {
    let mut errors = Vec::new();
    let limit = page::limit(&mut errors, query.limit.as_deref());
    let after = page::uuid_cursor(&mut errors, query.cursor.as_deref()).map(AccountId);
    let Some(limit) = limit.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid_query(errors));
    };
    let found =
        identity::list_accounts(state.fabric.connection(identity::SCHEMA)?, after, limit + 1)
            .await?;
    let mut views = Vec::with_capacity(found.len());
    for account in found {
        views.push(AccountView::of(&state, account).await?);
    }
    Ok(Json(Page::new(
        views,
        limit,
        "/api/accounts",
        &[],
        |account| account.id.to_string(),
    )))
}

/// Opens an active account (staff by default) with a password and roles.
#[utoipa::path(
    post,
    path = "/api/accounts",
    tag = "identity",
    operation_id = "open_account",
    security(("session" = ["identity.admin"])),
    request_body = OpenAccount,
    responses(
        (status = 201, description = "Opened", body = AccountView,
            headers(("Location" = String, description = "The account's URL"))),
        (status = 409, description = "`duplicate-email`: an account has this email"),
        (status = 422, description = "`validation`: fields that break a rule, each named in `errors`; `unknown-role`"),
    ),
)]
pub(crate) async fn open(
    State(state): State<AppState>,
    Body(body): Body<OpenAccount>,
) -> Result<
    (
        StatusCode,
        [(header::HeaderName, String); 1],
        Json<AccountView>,
    ),
    ApiError,
> {
    let mut errors = Vec::new();
    let email = check(&mut errors, "email", Email::parse(&body.email));
    let display_name = check(
        &mut errors,
        "display_name",
        DisplayName::parse(&body.display_name),
    );
    let password = check(&mut errors, "password", Password::new(&body.password));
    let roles: Vec<RoleName> = body
        .roles
        .iter()
        .enumerate()
        .filter_map(|(i, role)| check(&mut errors, format!("roles[{i}]"), RoleName::parse(role)))
        .collect();
    let (Some(email), Some(display_name), Some(password)) = (email, display_name, password) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let opening = Opening {
        email,
        display_name,
        kind: match body.kind {
            KindView::Staff => AccountKind::Staff,
            KindView::Customer => AccountKind::Customer,
        },
        password,
        roles,
    };
    let account = accounts::open(&state.fabric, policy(&state), opening).await?;
    let location = format!("/api/accounts/{}", account.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AccountView::of(&state, account).await?),
    ))
}

fn policy(state: &AppState) -> PasswordPolicy {
    state.login.settings().password
}

fn account_id(id: &str) -> Result<AccountId, ApiError> {
    Uuid::try_parse(id)
        .ok()
        .filter(|_| id.len() == 36)
        .map(AccountId)
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))
}

/// Shows an account.
#[utoipa::path(
    get,
    path = "/api/accounts/{id}",
    tag = "identity",
    operation_id = "show_account",
    security(("session" = ["identity.admin"])),
    params(("id" = String, Path, description = "The account's id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 404, description = "`not-found`: no account with this id"),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    let parsed = account_id(&id)?;
    AccountView::read(&state, parsed)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))
}

/// A status to move an account to.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SetStatus {
    status: StatusView,
}

/// The caller may not do this to their own account (and lock themselves out).
fn not_yourself(caller: &Caller, id: AccountId, what: &str) -> Result<(), ApiError> {
    if caller.account.id == id {
        return Err(ApiError::unprocessable(
            ProblemType::Validation,
            "Not your own account",
            format!("you cannot {what} your own account; ask another administrator"),
        )
        .with(
            "errors",
            json!([FieldError::new("id", "is your own account")]),
        ));
    }
    Ok(())
}

/// Moves an account through its lifecycle: suspend (`suspended`), reactivate
/// (`active`), disable for good (`disabled`). An account that can no longer log in
/// loses its sessions at once.
#[utoipa::path(
    put,
    path = "/api/accounts/{id}/status",
    tag = "identity",
    operation_id = "set_account_status",
    security(("session" = ["identity.admin"])),
    params(("id" = String, Path, description = "The account's id")),
    request_body = SetStatus,
    responses(
        (status = 200, description = "The account as it is now", body = AccountView),
        (status = 404, description = "`not-found`: no account with this id"),
        (status = 409, description = "`invalid-transition`: the lifecycle does not allow it"),
        (status = 422, description = "`validation`: the caller's own account"),
    ),
)]
pub(crate) async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<SetStatus>,
) -> Result<Json<AccountView>, ApiError> {
    let parsed = account_id(&id)?;
    not_yourself(&caller, parsed, "change the status of")?;
    let account = accounts::set_status(&state.fabric, parsed, body.status.into()).await?;
    Ok(Json(AccountView::of(&state, account).await?))
}

/// Grants a role.
#[utoipa::path(
    put,
    path = "/api/accounts/{id}/roles/{role}",
    tag = "identity",
    operation_id = "grant_role",
    security(("session" = ["identity.admin"])),
    params(
        ("id" = String, Path, description = "The account's id"),
        ("role" = String, Path, description = "The role's name"),
    ),
    responses(
        (status = 200, description = "The account as it is now", body = AccountView),
        (status = 404, description = "`not-found`: no account with this id"),
        (status = 422, description = "`unknown-role`: no role of this name; `validation`: the caller's own account"),
    ),
)]
pub(crate) async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, role)): Path<(String, String)>,
) -> Result<Json<AccountView>, ApiError> {
    change_role(&state, &caller, &id, &role, true).await
}

/// Revokes a role (one the account does not hold changes nothing).
#[utoipa::path(
    delete,
    path = "/api/accounts/{id}/roles/{role}",
    tag = "identity",
    operation_id = "revoke_role",
    security(("session" = ["identity.admin"])),
    params(
        ("id" = String, Path, description = "The account's id"),
        ("role" = String, Path, description = "The role's name"),
    ),
    responses(
        (status = 200, description = "The account as it is now", body = AccountView),
        (status = 404, description = "`not-found`: no account with this id"),
        (status = 422, description = "`unknown-role`: no role of this name; `validation`: the caller's own account"),
    ),
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, role)): Path<(String, String)>,
) -> Result<Json<AccountView>, ApiError> {
    change_role(&state, &caller, &id, &role, false).await
}

async fn change_role(
    state: &AppState,
    caller: &Caller,
    id: &str,
    role: &str,
    granted: bool,
) -> Result<Json<AccountView>, ApiError> {
    let parsed = account_id(id)?;
    let role = RoleName::parse(role).map_err(|_| unknown_role(role))?;
    not_yourself(caller, parsed, "change the roles of")?;
    accounts::set_role(&state.fabric, parsed, &role, granted).await?;
    AccountView::read(state, parsed)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no account {id}")))
}

fn unknown_role(name: &str) -> ApiError {
    ApiError::unprocessable(
        ProblemType::UnknownRole,
        "Unknown role",
        format!("no role `{name}`"),
    )
}

impl From<identity::Error> for ApiError {
    fn from(err: identity::Error) -> Self {
        use identity::Error;
        match err {
            Error::DuplicateEmail { ref email } => ApiError::conflict(
                ProblemType::DuplicateEmail,
                "Account exists",
                err.to_string(),
            )
            .with("email", json!(email.as_str())),
            Error::UnknownAccount { .. } => ApiError::not_found(err.to_string()),
            Error::InvalidTransition { .. } => ApiError::conflict(
                ProblemType::InvalidTransition,
                "Invalid status change",
                err.to_string(),
            ),
            Error::UnknownRole { ref name } => unknown_role(name),
            Error::TotpAlreadyEnabled => ApiError::conflict(
                ProblemType::TotpAlreadyEnabled,
                "TOTP already on",
                err.to_string(),
            ),
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            Error::Hashing(_) | Error::Corrupt(_) => ApiError::internal(&err),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Identity(err) => err.into(),
            AdminError::UnitOfWork(err) => err.into(),
            AdminError::Fabric(err) => err.into(),
            AdminError::Hashing(_) => ApiError::internal(&err),
        }
    }
}
