//! `/api/customers/{id}/verification`: staff verify a customer, so that their orders
//! above `payments.verification_threshold_minor` go through; audited.

use audit::{Action, Actor, NewEntry, Subject};
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use orders::CustomerId;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// Customer verification (the `payments` module).
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

/// A verified customer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VerificationView {
    customer_id: String,
    /// When the customer was first verified.
    verified_at: DateTime<Utc>,
}

/// The audit entry's parts cannot be stored: a bug, not a request error.
#[derive(Debug, thiserror::Error)]
#[error("audit entry of a verification: {0}")]
struct BadEntry(audit::Invalid);

/// Verifies a customer (an account id, or another system's customer id): their
/// payments above the verification threshold go through from now on. Verifying a
/// verified customer changes nothing. The first verification is audited as
/// `customer.verified` on `customer:<id>`, by `account:<staff id>`, in the same unit
/// of work.
#[utoipa::path(
    post,
    path = "/api/customers/{id}/verification",
    tag = "payments",
    operation_id = "verify_customer",
    security(("session" = ["customers.verify"])),
    params(("id" = String, Path, description = "The customer's id: 1 to 64 visible ASCII characters")),
    responses(
        (status = 200, description = "Verified (now or before)", body = VerificationView),
        (status = 404, description = "`not-found`: not a customer id"),
    ),
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, ApiError> {
    let customer = CustomerId::parse(&id)
        .map_err(|_| ApiError::not_found(format!("no customer with id {id}")))?;
    let now = state.now();
    let entry = NewEntry {
        actor: Actor::parse(&format!("account:{}", caller.account.id))
            .map_err(|e| ApiError::internal(&BadEntry(e)))?,
        action: Action::parse("customer.verified").map_err(|e| ApiError::internal(&BadEntry(e)))?,
        subject: Subject::parse(&format!("customer:{}", customer.as_str()))
            .map_err(|e| ApiError::internal(&BadEntry(e)))?,
        occurred_at: now,
        data: serde_json::json!({ "session": caller.session.id }),
    };
    let verified_at = state
        .fabric
        .unit_of_work("verify_customer")
        .run(async |uow| -> Result<_, ApiError> {
            let newly = uow
                .step(payments::SCHEMA, "verify_customer", async |tx| {
                    payments::verify_customer(tx, customer.as_str(), now).await
                })
                .await?;
            if newly {
                uow.step(audit::SCHEMA, "record_entry", async |tx| {
                    audit::record(tx, &entry).await
                })
                .await?;
            }
            uow.step(payments::SCHEMA, "verified_at", async |tx| {
                payments::verified_at(tx, customer.as_str()).await
            })
            .await
        })
        .await?
        .value
        .unwrap_or(now);
    Ok(Json(VerificationView {
        customer_id: customer.as_str().to_owned(),
        verified_at,
    }))
}

impl From<payments::Error> for ApiError {
    fn from(err: payments::Error) -> Self {
        match err {
            payments::Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            _ => ApiError::internal(&err),
        }
    }
}
