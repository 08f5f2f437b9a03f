//! `/api/{{name}}`: the {{name}} module's routes. Created by `cargo xtask new-module
//! {{name}}`; the handlers parse input into domain types, call the module in a unit of
//! work, and map its errors to problems. Each operation's `security` says who may call
//! it: adding needs the ability `{{name}}.write` (the `admin` role grants every
//! ability; define a role for others), showing needs a session.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use {{name}}::{Item, ItemName};

use super::AppState;
use super::error::{ApiError, Body, FieldError};

/// The {{name}} module.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_item))
        .routes(routes!(show_item))
}

/// A new item.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewItem {
    /// 1 to 200 characters, not blank, no control characters.
    #[schema(min_length = 1, max_length = 200, example = "First")]
    name: String,
}

/// A stored item.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ItemView {
    id: i64,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<Item> for ItemView {
    fn from(item: Item) -> Self {
        Self {
            id: item.id,
            name: item.name.as_str().to_owned(),
            created_at: item.created_at,
        }
    }
}

/// Adds an item.
#[utoipa::path(
    post,
    path = "/api/{{name}}/items",
    tag = "{{name}}",
    operation_id = "add_{{name}}_item",
    security(("session" = ["{{name}}.write"])),
    request_body = NewItem,
    responses(
        (status = 201, description = "Added", body = ItemView,
            headers(("Location" = String, description = "The item's URL"))),
        (status = 422, description = "`validation`: fields that break a rule, each named in `errors`"),
    ),
)]
pub(crate) async fn add_item(
    State(state): State<AppState>,
    Body(body): Body<NewItem>,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<ItemView>), ApiError> {
    let name = ItemName::parse(&body.name)
        .map_err(|err| ApiError::validation(vec![FieldError::new("name", err)]))?;
    let now = state.now();
    let added = state
        .fabric
        .unit_of_work("add_{{name}}_item")
        .run(async |uow| -> Result<_, ApiError> {
            uow.step({{name}}::SCHEMA, "add_item", async |tx| {
                {{name}}::add_item(tx, &name, now).await
            })
            .await
        })
        .await?;
    let location = format!("/api/{{name}}/items/{}", added.value.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(added.value.into()),
    ))
}

/// Shows one item.
#[utoipa::path(
    get,
    path = "/api/{{name}}/items/{id}",
    tag = "{{name}}",
    operation_id = "show_{{name}}_item",
    security(("session" = [])),
    params(("id" = i64, Path, description = "The item's id")),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 404, description = "`not-found`: no item with this id"),
    ),
)]
pub(crate) async fn show_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ItemView>, ApiError> {
    let not_found = || ApiError::not_found(format!("no item with id {id}"));
    let parsed: i64 = id.parse().map_err(|_| not_found())?;
    let item = {{name}}::get_item(state.fabric.connection({{name}}::SCHEMA)?, parsed)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(item.into()))
}

impl From<{{name}}::Error> for ApiError {
    fn from(err: {{name}}::Error) -> Self {
        use {{name}}::Error;
        match err {
            Error::Database(ref cause) => {
                ApiError::failure(&err, orchestration::failure::is_unavailable(cause))
            }
            Error::Corrupt(_) => ApiError::internal(&err),
        }
    }
}
