//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// The process is up.
pub(crate) async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

/// Every database answers and no migration is pending.
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let databases = state.fabric.health().await;
    let reachable = databases.iter().all(|d| d.error.is_none());
    let mut pending = Vec::new();
    if reachable && !state.migrated.load(Ordering::Relaxed) {
        match state.fabric.migration_status().await {
            Ok(states) => {
                pending = states
                    .iter()
                    .flat_map(|s| s.pending.iter().map(move |m| format!("{}/{m}", s.boundary)))
                    .collect();
                if pending.is_empty() {
                    state.migrated.store(true, Ordering::Relaxed);
                }
            }
            Err(err) => pending.push(format!("unknown: {err}")),
        }
    }
    let ready = reachable && state.migrated.load(Ordering::Relaxed);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "databases": databases.iter().map(|d| json!({
            "database": d.database.to_string(),
            "boundaries": d.boundaries,
            "ok": d.error.is_none(),
            "error": d.error,
        })).collect::<Vec<_>>(),
        "pending_migrations": pending,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
