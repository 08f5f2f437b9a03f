//! The OpenAPI 3.1 document: generated from the handlers' `#[utoipa::path]` attributes
//! and the types they take and return, then completed here with what every operation
//! shares (the problem schema and the problems any request can meet) and the links
//! from what a request creates to where it can be read.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::AppState;
use super::auth::Access;
use super::error::ProblemType;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "Products, stock and orders over one modular monolith.",
    ),
    tags(
        (name = "identity", description = "Logging in, sessions, TOTP and account administration"),
        (name = "products", description = "The catalog and its stock"),
        (name = "orders", description = "Order placement, refunds (sagas) and orders"),
        (name = "payments", description = "Customer verification"),
        (name = "audit", description = "The audit log"),
        (name = "ops", description = "For operators"),
        (name = "health", description = "For load balancers and orchestrators"),
    ),
)]
pub(crate) struct ApiDoc;

/// The media type of every error body.
const PROBLEM_JSON: &str = "application/problem+json";

/// Serves the document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "This document", content_type = "application/json")),
)]
pub(crate) async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.to_string(),
    )
}

/// The document for the operations in `generated`, completed.
pub(crate) fn finish(generated: utoipa::openapi::OpenApi) -> Value {
    let mut document = serde_json::to_value(generated).expect("the document is JSON");
    document["info"]["description"] = json!(format!(
        "{}\n\n{}",
        document["info"]["description"].as_str().unwrap_or_default(),
        problem_table()
    ));
    document["components"]["schemas"]["Problem"] = problem_schema();
    document["components"]["securitySchemes"] = json!({
        super::auth::SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "A session token from `POST /api/sessions`. An operation's `security` lists the abilities it needs (one entry's all, of any entry); an empty list: any session."
        }
    });
    let paths = document["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for item in paths.values_mut() {
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|m| m.values_mut())
        {
            complete(operation);
        }
    }
    let by_sku = json!({ "sku": "$response.body#/sku" });
    let by_id = json!({ "id": "$response.body#/id" });
    link(
        &mut document,
        ("/api/products", "post", "201"),
        &[
            ("show_product", json!({ "parameters": by_sku })),
            ("restock_product", json!({ "parameters": by_sku })),
            // An order of the new product, so that placements get past the catalog.
            (
                "place_order",
                json!({ "requestBody": {
                    "lines": [{ "sku": "$response.body#/sku", "quantity": 1 }]
                } }),
            ),
        ],
    );
    for status in ["201", "202"] {
        link(
            &mut document,
            ("/api/orders", "post", status),
            &[("show_order", json!({ "parameters": by_id }))],
        );
    }
    document
}

/// Adds the problems every operation can answer with, and the problem body to every
/// error response.
fn complete(operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let access = super::auth::access_of(operation);
    let responses = operation["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    let mut shared = vec![
        (
            "500",
            "`internal`: a failure on the server; the log has the details",
        ),
        (
            "503",
            "`unavailable`: a database cannot be used right now (`Retry-After`); `timeout`: the request took longer than `http.request_timeout`",
        ),
    ];
    if let Some(Access::AnyOf(any_of)) = &access {
        shared.push((
            "401",
            "`unauthenticated`: no valid session (`Authorization: Bearer <token>`)",
        ));
        if any_of.iter().all(|abilities| !abilities.is_empty()) {
            shared.push((
                "403",
                "`forbidden`: the session's roles do not grant the ability this operation needs",
            ));
        }
    }
    if has_body {
        shared.extend([
            (
                "400",
                "`malformed-json`: the body is not JSON; `bad-body`: it cannot be read",
            ),
            (
                "413",
                "`payload-too-large`, `bad-body`: the body is larger than `http.body_limit_bytes`",
            ),
            (
                "415",
                "`unsupported-media-type`: the body is not sent as `application/json`",
            ),
            ("422", "`invalid-body`: the body does not match the schema"),
        ]);
    }
    for (status, description) in shared {
        match responses.get_mut(status) {
            Some(response) => {
                let known = response["description"].as_str().unwrap_or_default();
                if !known.contains(description) {
                    response["description"] = json!(format!("{known}; {description}"));
                }
            }
            None => {
                responses.insert(status.to_owned(), json!({ "description": description }));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if is_error && response.get("content").is_none() {
            response["content"] = json!({
                PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } }
            });
        }
    }
}

/// Links the response `from` (path, method, status) to the operations `to`: each an
/// operation id and the link's `parameters` or `requestBody`, made of runtime
/// expressions.
fn link(document: &mut Value, (path, method, status): (&str, &str, &str), to: &[(&str, Value)]) {
    let response = &mut document["paths"][path][method]["responses"][status];
    if response.is_null() {
        return;
    }
    let mut links = Map::new();
    for (operation_id, fields) in to {
        let mut link = json!({ "operationId": operation_id });
        if let (Some(link), Some(fields)) = (link.as_object_mut(), fields.as_object()) {
            link.extend(fields.clone());
        }
        links.insert((*operation_id).to_owned(), link);
    }
    response["links"] = Value::Object(links);
}

/// RFC 9457's members, the API's extensions, and every `type` the API sends.
fn problem_schema() -> Value {
    let types: Vec<String> = ProblemType::ALL.iter().map(|t| t.urn()).collect();
    json!({
        "description": "An error (RFC 9457). Problems about one thing carry it as extension members (`sku`, `placement`, ...).",
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": { "type": "string", "enum": types },
            "title": { "type": "string" },
            "status": { "type": "integer", "minimum": 400, "maximum": 599 },
            "detail": { "type": "string" },
            "errors": {
                "description": "Each invalid field or parameter, for `validation` and `invalid-query`.",
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {
                        "field": { "type": "string" },
                        "message": { "type": "string" }
                    }
                }
            },
            "request_id": { "description": "The request's `x-request-id`.", "type": "string" },
            "trace_id": { "description": "The request's trace, when traces are exported.", "type": "string" },
            "placement": { "description": "The placement the problem is about.", "type": "string", "format": "uuid" }
        },
        "additionalProperties": true
    })
}

/// The problem types as a Markdown table.
fn problem_table() -> String {
    let mut table = String::from(
        "## Problems\n\nEvery error is `application/problem+json`; its `type` is one of:\n\n| type | status | meaning |\n|---|---|---|\n",
    );
    for problem in ProblemType::ALL {
        let statuses: Vec<String> = problem.statuses().iter().map(u16::to_string).collect();
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            problem.urn(),
            statuses.join(", "),
            problem.meaning()
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::Config;

    /// The route templates the router holds, read from its debug form (axum has no
    /// other way to list them): its path router's, not the fallback's. Fails loudly
    /// if the form changes.
    fn routes_of(router: &axum::Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        let (paths, _fallback) = debug
            .split_once("fallback_router:")
            .expect("axum's debug form changed: no fallback_router");
        let routes: BTreeSet<String> = paths
            .split("RouteId(")
            .skip(1)
            .filter_map(|rest| {
                let path = rest.split_once("): \"")?.1;
                Some(path.split_once('"')?.0.to_owned())
            })
            .collect();
        assert!(
            routes.len() > 5,
            "axum's debug form changed; no routes found in {debug}"
        );
        routes
    }

    fn methods_of(document: &Value, path: &str) -> BTreeSet<String> {
        document["paths"][path]
            .as_object()
            .map(|item| item.keys().map(|m| m.to_uppercase()).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn every_route_and_method_the_router_serves_is_in_the_document() {
        for metrics_apart in [false, true] {
            let mut config = Config::default();
            if metrics_apart {
                config.metrics.addr = Some(([127, 0, 0, 1], 0).into());
            }
            let (router, _db) =
                crate::http::testing::sqlite_router(&config, std::time::Duration::from_secs(1))
                    .await;
            let document = crate::http::document(&config);
            let documented: BTreeSet<String> = document["paths"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(
                routes_of(&router),
                documented,
                "metrics apart: {metrics_apart}"
            );
            assert_eq!(documented.contains("/metrics"), !metrics_apart);

            // Every method on every route: the documented ones are served, every
            // other one is refused with a 405 problem.
            for path in &documented {
                let concrete = path.replace("{sku}", "NO-SUCH").replace("{id}", "x");
                let served = methods_of(&document, path);
                for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                    let response = router
                        .clone()
                        .oneshot(
                            Request::builder()
                                .method(Method::from_bytes(method.as_bytes()).unwrap())
                                .uri(&concrete)
                                .body(Body::empty())
                                .unwrap(),
                        )
                        .await
                        .unwrap();
                    let status = response.status();
                    if served.contains(method) {
                        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                        let documented = &document["paths"][path][method.to_lowercase()]["responses"]
                            [status.as_str()];
                        assert!(
                            documented.is_object(),
                            "{method} {path}: {status} is not documented"
                        );
                    } else {
                        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                        assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
                    }
                }
            }
        }
    }

    /// The committed `openapi.json` is the document the code makes, so that a change
    /// of the contract shows in review.
    #[test]
    fn the_committed_document_is_current() {
        let generated =
            serde_json::to_string_pretty(&crate::http::document(&Config::default())).unwrap();
        let committed = include_str!("../../openapi.json");
        assert!(
            committed.trim_end() == generated,
            "apps/switchyard/openapi.json is out of date: run `just openapi` and commit it"
        );
    }

    #[test]
    fn every_error_response_is_a_problem_and_every_problem_type_is_listed() {
        let document = crate::http::document(&Config::default());
        let types = &document["components"]["schemas"]["Problem"]["properties"]["type"]["enum"];
        assert_eq!(types.as_array().unwrap().len(), ProblemType::ALL.len());
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        let content = response["content"].as_object().unwrap();
                        assert!(
                            content.contains_key(PROBLEM_JSON)
                                || path.starts_with("/health")
                                || path == "/api/ops/health",
                            "{method} {path} {status}: {content:?}"
                        );
                    }
                }
            }
        }
        let place = &document["paths"]["/api/orders"]["post"];
        assert_eq!(place["parameters"][0]["name"], "Idempotency-Key");
        assert_eq!(place["parameters"][0]["in"], "header");
        assert!(place["responses"]["202"]["headers"]["Location"].is_object());
        assert_eq!(
            place["responses"]["202"]["links"]["show_order"]["parameters"]["id"],
            "$response.body#/id"
        );
        assert_eq!(document["openapi"], "3.1.0");
    }
}
