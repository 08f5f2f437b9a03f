//! The HTTP API end to end over a real socket: concurrent clients against limited
//! stock on every engine, the audit log, and bad input answered with problems.

use std::collections::BTreeMap;
use std::time::Instant;

use orchestration::testing::{Engine, TestDatabase};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::{StoreSnapshot, TestApp};

// Every boundary the app migrates: on MariaDB the harness drops only the databases it
// was given, and refuses to reuse one it did not create.
orchestration::engine_tests! {
    boundaries: (migrations::all());
    fifty_clients_never_oversell,
    the_audit_log_is_read_by_subject,
    bad_input_gets_problems_not_500s,
    products_and_orders_are_listed_a_page_at_a_time,
    metrics_show_a_placement,
    a_placed_order_is_mailed_to_its_customer,
}

const SKUS: [&str; 4] = ["E2E-A", "E2E-B", "E2E-C", "E2E-D"];
const INITIAL: i64 = 60;
const CLIENTS: usize = 50;
const ORDERS_PER_CLIENT: usize = 8;

async fn fifty_clients_never_oversell(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    let http = app.http.clone();
    for sku in SKUS {
        let created = http
            .post(app.url("/api/products"))
            .json(&json!({"sku": sku, "name": sku, "price_minor": 199, "currency": "EUR", "stock": INITIAL}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
    }

    // Each client is a customer of its own.
    let mut customers = Vec::with_capacity(CLIENTS);
    for client in 0..CLIENTS {
        let email = format!("client-{client}@tests.example");
        customers.push(app.client_of(&email, &["customer"]).await.0);
    }
    let started = Instant::now();
    let clients: Vec<_> = customers
        .into_iter()
        .map(|http| {
            let url = app.url("/api/orders");
            let base = app.url("");
            tokio::spawn(async move {
                let mut placed: Vec<Value> = Vec::new();
                let mut refused = 0;
                for _ in 0..ORDERS_PER_CLIENT {
                    let mut skus = SKUS.to_vec();
                    fastrand::shuffle(&mut skus);
                    let lines: Vec<Value> = skus[..fastrand::usize(1..=3)]
                        .iter()
                        .map(|sku| json!({"sku": sku, "quantity": fastrand::i64(1..=3)}))
                        .collect();
                    let response = http
                        .post(&url)
                        .json(&json!({"lines": lines}))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let body: Value = response.json().await.unwrap();
                    match status {
                        StatusCode::CREATED => placed.push(body),
                        StatusCode::CONFLICT => {
                            assert_eq!(
                                body["type"], "urn:switchyard:problem:out-of-stock",
                                "{body}"
                            );
                            assert!(
                                body["available"].as_i64().unwrap()
                                    < body["requested"].as_i64().unwrap(),
                                "{body}"
                            );
                            refused += 1;
                        }
                        // Still placing after the placement wait (SQLite under load):
                        // the status URL says how it ends.
                        StatusCode::ACCEPTED => {
                            let now = tests::placement_outcome(&http, &base, &body).await;
                            match now["status"].as_str() {
                                Some("refused") => {
                                    assert_eq!(now["refusal"]["kind"], "out_of_stock", "{now}");
                                    refused += 1;
                                }
                                Some("confirmed") => placed.push(now),
                                _ => panic!("unexpected outcome: {now}"),
                            }
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                }
                (placed, refused)
            })
        })
        .collect();
    let mut placed = Vec::new();
    let mut refused = 0;
    for client in clients {
        let (orders, refusals) = client.await.unwrap();
        placed.extend(orders);
        refused += refusals;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "[e2e {:?}] {CLIENTS} clients: {} orders placed, {refused} refused out of stock in {elapsed:.2?} = {:.0} requests/s",
        db.engine(),
        placed.len(),
        (placed.len() + refused) as f64 / elapsed.as_secs_f64(),
    );
    assert!(refused > 0, "the stock was meant to run out");

    // What the API says agrees with what was placed, and nothing was oversold.
    let mut ordered: BTreeMap<&str, i64> = BTreeMap::new();
    for order in &placed {
        for line in order["lines"].as_array().unwrap() {
            *ordered.entry(line["sku"].as_str().unwrap()).or_default() +=
                line["quantity"].as_i64().unwrap();
        }
    }
    for sku in SKUS {
        let product: Value = app.get(&format!("/api/products/{sku}")).await;
        let (available, reserved) = (
            product["available"].as_i64().unwrap(),
            product["reserved"].as_i64().unwrap(),
        );
        assert!(available >= 0, "{sku} oversold: {product}");
        assert_eq!(available + reserved, INITIAL, "{sku}: {product}");
        assert_eq!(
            reserved,
            ordered.get(sku).copied().unwrap_or_default(),
            "{sku}: {product}"
        );
    }
    let initial = SKUS.iter().map(|s| ((*s).to_owned(), INITIAL)).collect();
    let snapshot = StoreSnapshot::read(db.fabric()).await;
    assert_eq!(snapshot.order_count(), placed.len());
    snapshot.check(&initial).unwrap();
    snapshot.check_events().unwrap();

    // Every placed order is audited, exactly once, by the app's outbox dispatcher.
    let audit_db = db.fabric().connection(audit::SCHEMA).unwrap();
    db.scenario().wait_until_delivered().await;
    let status = db.fabric().events().status().await.unwrap();
    assert!(status.iter().all(|s| s.dead == 0), "{status:?}");
    for order in &placed {
        let subject =
            audit::Subject::parse(&format!("order:{}", order["id"].as_str().unwrap())).unwrap();
        let entries = audit::entries_for(audit_db, &subject, None, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1, "{subject}: {entries:?}");
    }

    let sample = &placed[0];
    let fetched: Value = app
        .get(&format!("/api/orders/{}", sample["id"].as_str().unwrap()))
        .await;
    assert_eq!(&fetched, sample);
    app.stop().await;
}

/// `GET /api/audit` lists one subject's entries, oldest first, up to `limit`.
async fn the_audit_log_is_read_by_subject(db: TestDatabase) {
    let conn = db.connection(audit::SCHEMA);
    let occurred_at = chrono::DateTime::parse_from_rfc3339("2026-11-22T09:00:00.123456Z")
        .unwrap()
        .to_utc();
    for (subject, action) in [
        ("order:1", "order.placed"),
        ("order:2", "order.placed"),
        ("order:1", "order.paid"),
    ] {
        let entry = audit::NewEntry {
            actor: audit::Actor::parse("user:42").unwrap(),
            action: audit::Action::parse(action).unwrap(),
            subject: audit::Subject::parse(subject).unwrap(),
            occurred_at,
            data: json!({"lines": [{"sku": "W-1", "quantity": 2}]}),
        };
        audit::record(conn, &entry).await.unwrap();
    }
    let app = TestApp::spawn(&db).await;

    let listed = app.get("/api/audit?subject=order%3A1").await;
    let entries = listed["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["order.placed", "order.paid"], "{listed}");
    assert!(
        entries[0]["id"].as_i64() < entries[1]["id"].as_i64(),
        "{listed}"
    );
    assert_eq!(entries[0]["actor"], "user:42");
    assert_eq!(entries[0]["subject"], "order:1");
    assert_eq!(entries[0]["occurred_at"], "2026-11-22T09:00:00.123456Z");
    assert_eq!(
        entries[0]["data"],
        json!({"lines": [{"sku": "W-1", "quantity": 2}]})
    );

    assert_eq!(listed["next"], Value::Null, "{listed}");

    // A page at a time: the `next` link leads to the rest.
    let first = app.get("/api/audit?subject=order:1&limit=1").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["items"][0], entries[0]);
    let next = first["next"].as_str().expect("a next link");
    let second = app.get(next).await;
    assert_eq!(second["items"], json!([entries[1]]), "{next}: {second}");
    assert_eq!(second["next"], Value::Null, "{second}");
    let unknown = app.get("/api/audit?subject=order:404").await;
    assert_eq!(unknown, json!({"items": [], "next": null}));
    app.stop().await;
}

/// Every bad request gets a 4xx `application/problem+json` naming what is wrong, on
/// every engine (a NUL byte, which PostgreSQL cannot store, among them).
async fn bad_input_gets_problems_not_500s(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    let http = app.http.clone();
    let product =
        json!({"sku": "OK-1", "name": "Fine", "price_minor": 100, "currency": "EUR", "stock": 1});
    let created = http
        .post(app.url("/api/products"))
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let json_post = |path: &str, body: &str| {
        http.post(app.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let cases = [
        (
            "malformed JSON",
            json_post("/api/orders", "{\"lines\": "),
            400,
            "malformed-json",
            vec![],
        ),
        (
            "not JSON",
            http.post(app.url("/api/orders")).body("hello"),
            415,
            "unsupported-media-type",
            vec![],
        ),
        (
            "wrong type",
            json_post(
                "/api/products",
                r#"{"sku":"X","name":"Y","price_minor":"ten","currency":"EUR"}"#,
            ),
            422,
            "invalid-body",
            vec![],
        ),
        (
            "missing field",
            json_post("/api/orders", r#"{}"#),
            422,
            "invalid-body",
            vec![],
        ),
        (
            "invalid product fields",
            json_post(
                "/api/products",
                r#"{"sku":"has space","name":"  ","price_minor":-5,"currency":"eur","stock":-1}"#,
            ),
            422,
            "validation",
            vec!["sku", "name", "currency", "stock"],
        ),
        (
            "invalid order fields",
            json_post(
                "/api/orders",
                r#"{"lines":[{"sku":"OK-1","quantity":0},{"sku":"??","quantity":2}]}"#,
            ),
            422,
            "validation",
            vec!["lines[0].quantity", "lines[1].sku"],
        ),
        (
            "a NUL byte in a name",
            json_post(
                "/api/products",
                r#"{"sku":"NUL-1","name":"a\u0000b","price_minor":100,"currency":"EUR","stock":1}"#,
            ),
            422,
            "validation",
            vec!["name"],
        ),
        (
            "a zero price",
            json_post(
                "/api/products",
                r#"{"sku":"FREE-1","name":"Free","price_minor":0,"currency":"EUR","stock":1}"#,
            ),
            422,
            "validation",
            vec!["price_minor"],
        ),
        (
            "a customer id in the body (the session says who orders)",
            json_post(
                "/api/orders",
                r#"{"customer_id":"c","lines":[{"sku":"OK-1","quantity":1}]}"#,
            ),
            422,
            "invalid-body",
            vec![],
        ),
        (
            "no lines",
            json_post("/api/orders", r#"{"lines":[]}"#),
            422,
            "validation",
            vec!["lines"],
        ),
        (
            "unknown product",
            json_post("/api/orders", r#"{"lines":[{"sku":"NOPE","quantity":1}]}"#),
            422,
            "unknown-product",
            vec!["lines[0].sku"],
        ),
        (
            "out of stock",
            json_post("/api/orders", r#"{"lines":[{"sku":"OK-1","quantity":2}]}"#),
            409,
            "out-of-stock",
            vec![],
        ),
        (
            "duplicate product",
            json_post("/api/products", &product.to_string()),
            409,
            "duplicate-sku",
            vec![],
        ),
        (
            "restock zero",
            json_post("/api/products/OK-1/restock", r#"{"quantity":0}"#),
            422,
            "validation",
            vec!["quantity"],
        ),
        (
            "restock unknown",
            json_post("/api/products/NOPE/restock", r#"{"quantity":1}"#),
            404,
            "not-found",
            vec![],
        ),
        (
            "unknown product page",
            http.get(app.url("/api/products/NOPE")),
            404,
            "not-found",
            vec![],
        ),
        (
            "order id not a uuid",
            http.get(app.url("/api/orders/not-a-uuid")),
            404,
            "not-found",
            vec![],
        ),
        (
            "unknown order",
            http.get(app.url("/api/orders/01a2002d-6529-736a-a951-89db6c0c5d5c")),
            404,
            "not-found",
            vec![],
        ),
        (
            "audit without a subject",
            http.get(app.url("/api/audit")),
            400,
            "invalid-query",
            vec!["subject"],
        ),
        (
            "audit with a blank subject and a limit too large",
            http.get(app.url("/api/audit?subject=%20&limit=1001")),
            400,
            "invalid-query",
            vec!["subject", "limit"],
        ),
        (
            "audit with the subject twice",
            http.get(app.url("/api/audit?subject=a&subject=b")),
            400,
            "invalid-query",
            vec![],
        ),
        (
            "unknown route",
            http.get(app.url("/api/nothing")),
            404,
            "not-found",
            vec![],
        ),
        (
            "wrong method",
            http.delete(app.url("/api/orders")),
            405,
            "method-not-allowed",
            vec![],
        ),
        (
            "body too large",
            json_post("/api/orders", &" ".repeat(200_000)),
            413,
            "payload-too-large",
            vec![],
        ),
    ];
    for (name, request, status, kind, fields) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        if status == 413 {
            // The body went unread: the server closes the connection and says so.
            assert_eq!(response.headers()["connection"], "close", "{name}");
        }
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/problem+json", "{name}");
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status, "{name}: {body}");
        assert_eq!(body["request_id"], request_id, "{name}: {body}");
        assert_eq!(
            body["type"],
            format!("urn:switchyard:problem:{kind}"),
            "{name}: {body}"
        );
        let named: Vec<&str> = body["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| e["field"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(named, fields, "{name}: {body}");
    }
    // Nothing above changed the stock.
    let product: Value = app.get("/api/products/OK-1").await;
    assert_eq!(
        (product["available"].as_i64(), product["reserved"].as_i64()),
        (Some(1), Some(0))
    );
    app.stop().await;
}

/// The place-order slice with `inventory` on its own PostgreSQL database: every order
/// commits across the two databases by two-phase commit.
#[tokio::test]
async fn orders_place_with_inventory_on_its_own_postgres_database() {
    let Some((main, inventory_db)) = tests::split_postgres().await else {
        return;
    };
    let mut config = switchyard::Config::default();
    config.database.url = main.topology().default_url().connection_string();
    config.database.boundaries.insert(
        "inventory".to_owned(),
        switchyard::config::BoundaryConfig {
            url: inventory_db.topology().default_url().connection_string(),
        },
    );
    let app = TestApp::spawn_with(config).await;
    let http = app.http.clone();
    let product = json!({"sku": "SPLIT-1", "name": "Split", "price_minor": 700, "currency": "EUR", "stock": 5});
    let created = http
        .post(app.url("/api/products"))
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let place = |quantity: i64| {
        http.post(app.url("/api/orders"))
            .json(&json!({"lines": [{"sku": "SPLIT-1", "quantity": quantity}]}))
            .send()
    };
    let placed = place(3).await.unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order: Value = placed.json().await.unwrap();
    assert_eq!(order["total_minor"], 2100);
    assert_eq!(place(3).await.unwrap().status(), StatusCode::CONFLICT);
    let fetched: Value = app
        .get(&format!("/api/orders/{}", order["id"].as_str().unwrap()))
        .await;
    assert_eq!(fetched, order);
    let stock: Value = app.get("/api/products/SPLIT-1").await;
    assert_eq!(
        (stock["available"].as_i64(), stock["reserved"].as_i64()),
        (Some(2), Some(3))
    );
    app.stop().await;
}

/// With `metrics.addr`, `/metrics` is served there alone, and the API's listener does
/// not serve it (nor describe it).
#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let db = TestDatabase::create(Engine::Sqlite, migrations::all())
        .await
        .expect("SQLite is embedded");
    let mut config = switchyard::Config::default();
    config.database.url = db.topology().default_url().connection_string();
    config.metrics.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let app = TestApp::spawn_with(config).await;
    assert_ne!(app.metrics, app.addr);
    let _ = app.get("/health/live").await;
    let scraped = reqwest::get(format!("http://{}/metrics", app.metrics))
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains("route=\"/health/live\""),
        "the API's requests are counted: {text}"
    );
    let on_api = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
    let document = app.get("/openapi.json").await;
    assert!(
        document["paths"]["/metrics"].is_null(),
        "not described where not served"
    );
    let elsewhere = reqwest::get(format!("http://{}/api/products", app.metrics))
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        StatusCode::NOT_FOUND,
        "only /metrics there"
    );
    app.stop().await;
}

/// A topology under which order placement could never commit (inventory on PostgreSQL,
/// orders on SQLite) stops the app at start with the typed error.
#[tokio::test]
async fn an_unworkable_topology_is_refused_at_start() {
    let Some(inventory_db) =
        TestDatabase::create(Engine::Postgres, [migrations::inventory()]).await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchyard::Config::default();
    config.http.addr = "127.0.0.1:0".parse().unwrap();
    config.database.url = format!("sqlite://{}", dir.path().display());
    config.database.boundaries.insert(
        "inventory".to_owned(),
        switchyard::config::BoundaryConfig {
            url: inventory_db.topology().default_url().connection_string(),
        },
    );
    let err = switchyard::Application::build(&config, switchyard::ServeOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            switchyard::StartError::Fabric(orchestration::FabricError::InvalidSaga {
                saga: "place_order",
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("different engines"), "{err}");
}

/// Walks a collection by its `next` links from `first`, returning every item.
async fn walk(app: &TestApp, first: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let page = app.get(&url).await;
        items.extend(
            page["items"]
                .as_array()
                .unwrap_or_else(|| panic!("{url}: {page}"))
                .iter()
                .cloned(),
        );
        next = page["next"].as_str().map(str::to_owned);
        assert!(items.len() < 1000, "the links go round in circles");
    }
    items
}

/// `GET /api/products` and `GET /api/orders`: filters, a bounded limit, and `next`
/// links that visit every item once.
async fn products_and_orders_are_listed_a_page_at_a_time(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    for sku in ["LIST-A1", "LIST-A2", "LIST-A3", "LIST-B1", "OTHER-1"] {
        app.create_product(sku, 100).await;
    }
    let skus = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|p| p["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = walk(&app, "/api/products?limit=2").await;
    assert_eq!(all.len(), 5, "{all:?}");
    let mut sorted = skus(&all);
    sorted.sort();
    assert_eq!(
        sorted,
        ["LIST-A1", "LIST-A2", "LIST-A3", "LIST-B1", "OTHER-1"]
    );
    let prefixed = walk(&app, "/api/products?sku_prefix=LIST-A&limit=1").await;
    let mut prefixed = skus(&prefixed);
    prefixed.sort();
    assert_eq!(prefixed, ["LIST-A1", "LIST-A2", "LIST-A3"]);

    let (ann, ann_id) = app.client_of("ann@tests.example", &["customer"]).await;
    let (bob, _) = app.client_of("bob@tests.example", &["customer"]).await;
    let mut placed = Vec::new();
    for (customer, sku) in [(&ann, "LIST-A1"), (&bob, "LIST-A2"), (&ann, "LIST-B1")] {
        let response = customer
            .post(app.url("/api/orders"))
            .json(&json!({"lines": [{"sku": sku, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let order: Value = response.json().await.unwrap();
        placed.push(order["id"].as_str().unwrap().to_owned());
    }
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The administrator (`orders.read.any`) sees every order, and filters by customer.
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();
    assert_eq!(ids(&walk(&app, "/api/orders?limit=1").await), newest_first);
    assert_eq!(
        ids(&walk(
            &app,
            &format!("/api/orders?customer_id={ann_id}&status=confirmed&limit=1")
        )
        .await),
        [placed[2].clone(), placed[0].clone()]
    );
    // A customer sees their own orders only, and another's as if it did not exist.
    let list = |client: &reqwest::Client, path: &str| {
        let request = client.get(app.url(path)).send();
        async move {
            let page: Value = request.await.unwrap().json().await.unwrap();
            ids(page["items"].as_array().unwrap())
        }
    };
    assert_eq!(
        list(&ann, "/api/orders").await,
        [placed[2].clone(), placed[0].clone()]
    );
    assert!(
        list(&bob, &format!("/api/orders?customer_id={ann_id}"))
            .await
            .is_empty()
    );
    let theirs = bob
        .get(app.url(&format!("/api/orders/{}", placed[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let own = ann
        .get(app.url(&format!("/api/orders/{}", placed[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert!(walk(&app, "/api/orders?status=cancelled").await.is_empty());

    for bad in [
        "/api/orders?status=lost",
        "/api/orders?limit=0",
        "/api/orders?limit=1001",
        "/api/orders?cursor=nope",
        "/api/products?sku_prefix=%20",
        "/api/products?cursor=%00",
    ] {
        let response = app.http.get(app.url(bad)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["type"], "urn:switchyard:problem:invalid-query",
            "{bad}"
        );
        assert!(
            problem["errors"][0]["field"].is_string(),
            "{bad}: {problem}"
        );
    }
    app.stop().await;
}

/// `GET /metrics` after a placement: HTTP requests by route, units of work and their
/// steps, the saga, and the pools, in Prometheus's text format.
async fn metrics_show_a_placement(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    app.create_product("METRIC-1", 10).await;
    let placed = app
        .http
        .post(app.url("/api/orders"))
        .json(&json!({"lines": [{"sku": "METRIC-1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let has = |name: &str, labels: &[&str]| {
        text.lines().any(|line| {
            line.starts_with(&format!("{name}{{")) && labels.iter().all(|l| line.contains(l))
        })
    };
    for (name, labels) in [
        (
            "http_server_request_duration_seconds_count",
            &["method=\"POST\"", "route=\"/api/orders\"", "status=\"201\""][..],
        ),
        (
            "http_server_request_duration_seconds_bucket",
            &["route=\"/api/products\"", "status=\"201\"", "le=\"0.5\""],
        ),
        (
            "switchyard_unit_of_work_runs_total",
            &["pipeline=\"add_product\"", "outcome=\"committed\""],
        ),
        (
            "switchyard_unit_of_work_steps_total",
            &[
                "step=\"add_product\"",
                "boundary=\"inventory\"",
                "outcome=\"ok\"",
            ],
        ),
        (
            "switchyard_saga_runs_started_total",
            &["saga=\"place_order\""],
        ),
        (
            "switchyard_saga_runs_finished_total",
            &["saga=\"place_order\"", "state=\"completed\""],
        ),
        (
            "switchyard_db_pool_connections",
            &["pool=\"main\"", "state=\"idle\""],
        ),
        ("switchyard_db_pool_max_connections", &["pool=\"main\""]),
    ] {
        assert!(has(name, labels), "no {name} with {labels:?} in:\n{text}");
    }
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    app.stop().await;
}

/// A customer's confirmed order reaches them as a mail file under
/// `notifications.dir`, delivered by the app's own workers.
async fn a_placed_order_is_mailed_to_its_customer(db: TestDatabase) {
    let app = TestApp::spawn(&db).await;
    app.create_product("MAIL-1", 10).await;
    let (carol, _) = app.client_of("carol@tests.example", &["customer"]).await;
    let placed = carol
        .post(app.url("/api/orders"))
        .json(&json!({"lines": [{"sku": "MAIL-1", "quantity": 3}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let order: Value = placed.json().await.unwrap();
    let mail = orchestration::testing::Scenario::new(db.fabric())
        .within(std::time::Duration::from_secs(30))
        .wait_for_state(
            "the confirmation written",
            async |_| {
                // Whole mails only: the sender writes `<id>.eml.partial`, then renames.
                std::fs::read_dir(app.mail_dir())
                    .map(|entries| {
                        entries
                            .filter_map(|e| {
                                let path = e.ok()?.path();
                                let whole = path.extension().is_some_and(|x| x == "eml");
                                whole.then(|| std::fs::read_to_string(path).ok()).flatten()
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            },
            |mails| !mails.is_empty(),
        )
        .await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("To: carol@tests.example"), "{}", mail[0]);
    assert!(
        mail[0].contains(&format!(
            "Your order {} is confirmed",
            order["id"].as_str().unwrap()
        )),
        "{}",
        mail[0]
    );
    assert!(mail[0].contains("3.00 EUR"), "{}", mail[0]);
    app.stop().await;
}
