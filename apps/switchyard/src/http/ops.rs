//! Operators' views: the background workers.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Every worker's state, as in `/api/ops/health`.
pub(crate) async fn workers(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "workers": state.workers.snapshot() }))
}
