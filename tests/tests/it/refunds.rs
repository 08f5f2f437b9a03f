//! Refunds, cancellations and customer verification over HTTP, on every engine.

use orchestration::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::TestApp;

orchestration::engine_tests! {
    boundaries: (migrations::all());
    an_order_is_refunded_in_parts_then_whole,
    verifying_a_customer_lets_a_large_order_through,
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn an_order_is_refunded_in_parts_then_whole(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    app.create_product("REF-1", 10).await;
    let (dana, _) = app.client_of("dana@tests.example", &["customer"]).await;
    let (eve, _) = app.client_of("eve@tests.example", &["customer"]).await;
    let (status, order) = json_of(
        dana.post(app.url("/api/orders"))
            .json(&json!({"lines": [{"sku": "REF-1", "quantity": 3}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    let refund_url = app.url(&format!("/api/orders/{id}/refund"));

    // Another customer's order is answered as if there were none.
    let (status, problem) =
        json_of(eve.post(&refund_url).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    let (status, problem) = json_of(
        dana.post(&refund_url)
            .json(&json!({"lines": [{"sku": "REF-1", "quantity": 5}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["type"], "urn:switchyard:problem:refund-refused");
    assert_eq!(problem["refusal"]["kind"], "more_than_ordered");
    assert_eq!(problem["refusal"]["refundable"], 3);

    let one = || {
        dana.post(&refund_url)
            .header("Idempotency-Key", "first-refund")
            .json(&json!({"lines": [{"sku": "REF-1", "quantity": 1}]}))
    };
    let response = one().send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (status, first) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["amount_minor"], 100);
    assert_eq!(first["order"]["status"], "partly_refunded");
    assert_eq!(first["order"]["lines"][0]["refunded_quantity"], 1);
    assert_eq!(
        location,
        format!("/api/orders/{id}/refunds/{}", first["id"].as_str().unwrap())
    );
    let (status, again) = json_of(one().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["id"], first["id"], "the same refund");

    let (status, shown) = json_of(dana.get(app.url(&location)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"], "refunded");
    assert_eq!(shown["amount_minor"], 100);
    let product = app.get("/api/products/REF-1").await;
    assert_eq!(product["available"], 8, "10 - 3 + 1: {product}");

    // Staff refund the rest; then nothing is left.
    let (status, rest) = json_of(
        app.http
            .post(&refund_url)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{rest}");
    assert_eq!(rest["amount_minor"], 200);
    assert_eq!(rest["order"]["status"], "refunded");
    let (status, problem) = json_of(
        dana.post(&refund_url)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["refusal"]["kind"], "not_refundable");
    let product = app.get("/api/products/REF-1").await;
    assert_eq!(product["available"], 10, "{product}");

    let (status, listed) = json_of(
        dana.get(app.url(&format!("/api/orders/{id}/refunds")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let statuses: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["refunded", "refunded"]);
    // Operators see refunds by status across orders (failed ones by default).
    let failed = app.get("/api/ops/refunds").await;
    assert_eq!(failed["items"], json!([]), "{failed}");
    let done = app.get("/api/ops/refunds?status=refunded&limit=1").await;
    assert_eq!(done["items"][0]["order_id"], id.as_str(), "{done}");
    assert_eq!(done["items"][0]["id"], rest["id"], "newest first: {done}");
    let next = done["next"].as_str().expect("a second page");
    let second = app.get(next).await;
    assert_eq!(second["items"][0]["id"], first["id"], "{second}");
    assert_eq!(second["next"], Value::Null);
    let response = app
        .http
        .get(app.url("/api/ops/notifications?status=lost"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = dana.get(app.url("/api/ops/refunds")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // A placed order is refunded, not cancelled; an unknown one is not found.
    let (status, problem) = json_of(
        dana.post(app.url(&format!("/api/orders/{id}/cancellation")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:switchyard:problem:placement-ended");
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/orders/{unknown}/refund"),
        format!("/api/orders/{unknown}/cancellation"),
    ] {
        let response = dana
            .post(app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    app.stop().await;
}

async fn verifying_a_customer_lets_a_large_order_through(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    app.create_product("BIG-1", 2000).await;
    let (frank, frank_id) = app.client_of("frank@tests.example", &["customer"]).await;
    // 1001 × 1.00 EUR is above the threshold of 1,000.00.
    let large = || {
        frank
            .post(app.url("/api/orders"))
            .json(&json!({"lines": [{"sku": "BIG-1", "quantity": 1001}]}))
    };
    let (status, problem) = json_of(large().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:switchyard:problem:verification-required"
    );

    let url = app.url(&format!("/api/customers/{frank_id}/verification"));
    let response = frank.post(&url).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "customers.verify is staff's"
    );
    let (status, verified) = json_of(app.http.post(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["customer_id"], frank_id.as_str());
    let (_, again) = json_of(app.http.post(&url).send().await.unwrap()).await;
    assert_eq!(
        again["verified_at"], verified["verified_at"],
        "verified once"
    );
    let audit = app
        .get(&format!("/api/audit?subject=customer:{frank_id}"))
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["customer.verified"], "{audit}");

    let (status, order) = json_of(large().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    app.stop().await;
}
