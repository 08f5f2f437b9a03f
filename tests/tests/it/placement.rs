//! Order placement over HTTP: an `Idempotency-Key` makes a placement repeatable (same
//! key and body, same response; same key, other body, a 422 problem); a slow gateway
//! answers `202 Accepted` with a status URL that shows the placement until the order
//! exists; refusals are problems.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::Config;
use tests::TestApp;

async fn app(configure: impl FnOnce(&mut Config)) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.path().display());
    configure(&mut config);
    let app = TestApp::spawn_with(config).await;
    let created = app
        .http
        .post(app.url("/api/products"))
        .json(
            &json!({"sku": "P-1", "name": "P", "price_minor": 250, "currency": "EUR", "stock": 10}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    (app, dir)
}

async fn place(
    app: &TestApp,
    key: Option<&str>,
    quantity: i64,
) -> (StatusCode, Option<String>, Value) {
    let mut request = app
        .http
        .post(app.url("/api/orders"))
        .json(&json!({"lines": [{"sku": "P-1", "quantity": quantity}]}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, location, response.json().await.unwrap())
}

async fn stock(app: &TestApp) -> (i64, i64) {
    let product = app.get("/api/products/P-1").await;
    (
        product["available"].as_i64().unwrap(),
        product["reserved"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_repeats_the_response_and_nothing_else() {
    let (app, _dir) = app(|_| {}).await;
    let (status, location, first) = place(&app, Some("k-1"), 2).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "confirmed");
    let (again_status, again_location, again) = place(&app, Some("k-1"), 2).await;
    assert_eq!(
        (again_status, &again_location, &again),
        (status, &location, &first)
    );
    assert_eq!(stock(&app).await, (8, 2), "held once");

    let (status, _, problem) = place(&app, Some("k-1"), 3).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["type"], "urn:switchyard:problem:idempotency-key-reused",
        "{problem}"
    );
    assert_eq!(problem["placement"], first["id"]);

    let (status, _, problem) = place(&app, Some(&"x".repeat(300)), 1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(
        problem["type"], "urn:switchyard:problem:invalid-idempotency-key",
        "{problem}"
    );

    // A refusal repeats too, and holds nothing.
    let (status, _, refused) = place(&app, Some("k-2"), 50).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["type"], "urn:switchyard:problem:out-of-stock");
    let (_, _, mut again) = place(&app, Some("k-2"), 50).await;
    // The same problem; only the request id is the new request's own.
    assert_ne!(again["request_id"], refused["request_id"]);
    again["request_id"] = refused["request_id"].clone();
    assert_eq!(again, refused);
    assert_eq!(stock(&app).await, (8, 2));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_placement_answers_202_with_a_status_url() {
    let (app, _dir) = app(|config| {
        config.orders.placement_wait = Duration::from_millis(100);
        config.payments.gateway.latency = Duration::from_millis(800);
    })
    .await;
    let (status, location, body) = place(&app, Some("slow"), 1).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let location = location.expect("a status URL");
    assert_eq!(body["status"], "placing");
    assert_eq!(body["status_url"], location.as_str());
    assert_eq!(app.get(&location).await["status"], "placing");
    let deadline = Instant::now() + Duration::from_secs(30);
    let order = loop {
        let shown = app.get(&location).await;
        if shown["status"] == "confirmed" {
            break shown;
        }
        assert_eq!(shown["status"], "placing", "{shown}");
        assert!(Instant::now() < deadline, "never placed: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(order["total_minor"], 250);
    // The same key now answers with the order.
    let (status, _, again) = place(&app, Some("slow"), 1).await;
    assert_eq!((status, &again), (StatusCode::CREATED, &order));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_payments_and_unverified_large_orders_are_problems() {
    let (app, _dir) = app(|config| {
        config.payments.gateway.decline_rate = 1.0;
        config.payments.verification_threshold_minor = 1_000;
    })
    .await;
    let (status, _, problem) = place(&app, None, 2).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{problem}");
    assert_eq!(problem["type"], "urn:switchyard:problem:payment-declined");
    let placement = problem["placement"].as_str().unwrap().to_owned();
    let shown = app.get(&format!("/api/orders/{placement}")).await;
    assert_eq!(shown["status"], "refused", "{shown}");
    assert_eq!(shown["refusal"]["kind"], "payment_declined");

    let (status, _, problem) = place(&app, None, 5).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:switchyard:problem:verification-required"
    );
    assert_eq!(problem["amount_minor"], 1_250);
    assert_eq!(stock(&app).await, (10, 0), "every hold released");
    app.stop().await;
}
