//! Product feeds on every engine: the `vendor_sync` job imports the configured feed on
//! its schedule and skips it once imported; a feed over HTTP is asked for with the
//! validators of the version imported last, and a `304` costs nothing more.

use orchestration::testing::TestDatabase;
use tests::TestApp;

orchestration::engine_tests! {
    boundaries: (migrations::all());
    the_vendor_sync_job_imports_its_feed_once,
    a_feed_over_http_is_fetched_again_only_when_it_changed,
    placements_during_vendor_syncs_never_oversell,
}

/// A feed server: answers `GET` with `body` and `ETag: "<etag>"`, or `304` when the
/// request's `If-None-Match` names that tag; `status` instead when set. Records each
/// request's `If-None-Match`.
#[derive(Debug, Default)]
struct Served {
    etag: String,
    body: String,
    status: Option<u16>,
    asked_with: Vec<Option<String>>,
}

async fn serve(served: std::sync::Arc<std::sync::Mutex<Served>>) -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut if_none_match = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("if-none-match")
                    {
                        if_none_match = Some(value.trim().to_owned());
                    }
                }
                let response = {
                    let mut served = served.lock().unwrap();
                    served.asked_with.push(if_none_match.clone());
                    let tag = format!("\"{}\"", served.etag);
                    match served.status {
                        Some(status) => format!(
                            "HTTP/1.1 {status} Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        ),
                        None if if_none_match.as_deref() == Some(tag.as_str()) => {
                            "HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n".to_owned()
                        }
                        None => format!(
                            "HTTP/1.1 200 OK\r\netag: {tag}\r\ncontent-type: text/csv\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                            served.body.len(),
                            served.body
                        ),
                    }
                };
                let _ = write.write_all(response.as_bytes()).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

struct Quiet;

impl switchyard::import::Progress for Quiet {
    fn advance(&mut self, _done: u64, _total: u64) {}
    fn finish(&mut self) {}
}

async fn a_feed_over_http_is_fetched_again_only_when_it_changed(db: TestDatabase) {
    let served = std::sync::Arc::new(std::sync::Mutex::new(Served {
        etag: "v1".to_owned(),
        body: "sku,name,price_minor,currency,stock\nWEB-1,One,100,EUR,3\nWEB-2,Two,100,EUR,1\n"
            .to_owned(),
        ..Served::default()
    }));
    let addr = serve(served.clone()).await;
    let source =
        switchyard::import::FeedSource::parse(&format!("http://{addr}/feeds/products.csv"));
    assert!(matches!(source, switchyard::import::FeedSource::Url(_)));
    let import = async || {
        switchyard::import::import_products(db.fabric(), &source, 100, &mut Quiet, None).await
    };
    db.fabric().databases().migrate().await.unwrap();

    let first = import().await.unwrap();
    assert!(!first.already_imported);
    assert_eq!(first.counts.inserted, 2);
    // Unchanged at the server: a 304, nothing imported.
    let second = import().await.unwrap();
    assert!(second.already_imported, "{second:?}");
    // A new version.
    {
        let mut served = served.lock().unwrap();
        served.etag = "v2".to_owned();
        served.body = "sku,name,price_minor,currency,stock\nWEB-1,One,150,EUR,3\n".to_owned();
    }
    let third = import().await.unwrap();
    assert!(!third.already_imported);
    assert_eq!((third.counts.updated, third.counts.inserted), (1, 0));
    let asked: Vec<Option<String>> = served.lock().unwrap().asked_with.clone();
    assert_eq!(
        asked,
        [None, Some("\"v1\"".to_owned()), Some("\"v1\"".to_owned())]
    );
    let product = inventory::get(
        db.connection(inventory::SCHEMA),
        &inventory::Sku::parse("WEB-1").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(product.price.minor, 150);

    // A server error is an error, naming the feed; nothing changes.
    served.lock().unwrap().status = Some(500);
    let err = import().await.unwrap_err();
    assert!(err.to_string().contains("answered 500"), "{err}");
    // A feed without a needed column is refused, naming the column and the URL.
    {
        let mut served = served.lock().unwrap();
        served.status = None;
        served.etag = "v3".to_owned();
        served.body = "sku,name\nWEB-3,Three\n".to_owned();
    }
    let err = import().await.unwrap_err().to_string();
    assert!(
        err.contains("has no `price_minor` column") && err.contains(&format!("http://{addr}/")),
        "{err}"
    );
}

async fn the_vendor_sync_job_imports_its_feed_once(db: TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("vendor.csv");
    std::fs::write(
        &feed,
        "sku,name,price_minor,currency,stock\nVEN-1,One,100,EUR,3\nVEN-2,Two,250,EUR,0\n",
    )
    .unwrap();
    let mut config = switchyard::Config::default();
    config.database.url = db.topology().default_url().connection_string();
    config.vendor_sync.feed = Some(feed.display().to_string());
    config.vendor_sync.every = std::time::Duration::from_millis(100);
    let app = TestApp::spawn_with(config).await;
    let imports = orchestration::testing::Scenario::new(db.fabric())
        .within(std::time::Duration::from_secs(30))
        .wait_for_state(
            "the feed imported",
            async |_| app.get("/api/ops/imports").await,
            |imports| imports[0]["finished_at"].is_string(),
        )
        .await;
    assert_eq!(imports[0]["inserted"], 2, "{imports}");
    let product = app.get("/api/products/VEN-2").await;
    assert_eq!(product["price_minor"], 250, "{product}");
    // Later ticks find the same feed and skip it: still one import.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let again = app.get("/api/ops/imports").await;
    assert_eq!(again.as_array().unwrap().len(), 1, "{again}");
    assert_eq!(again[0]["updated_at"], imports[0]["updated_at"], "{again}");
    app.stop().await;
}

/// A feed that has `HOT-1` at 40 units on hand (among 500 other products, named for
/// `version` so each version is a new import).
fn hot_feed(version: u32) -> String {
    use std::fmt::Write as _;
    let mut feed = String::from("sku,name,price_minor,currency,stock\nHOT-1,Hot,100,EUR,40\n");
    for i in 0..500 {
        let _ = writeln!(feed, "FILL-{i:04},Filler {i} v{version},100,EUR,5");
    }
    feed
}

/// Customers order `HOT-1` over HTTP while `vendor_sync` imports new versions of a
/// feed that says 40 units are on hand: the orders never take more than 40, and after
/// a last import the units available and reserved add up to 40.
async fn placements_during_vendor_syncs_never_oversell(db: TestDatabase) {
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("vendor.csv");
    std::fs::write(&feed, hot_feed(0)).unwrap();
    let mut config = switchyard::Config::default();
    config.database.url = db.topology().default_url().connection_string();
    config.vendor_sync.feed = Some(feed.display().to_string());
    config.vendor_sync.every = std::time::Duration::from_millis(50);
    config.vendor_sync.chunk_size = 100;
    let app = TestApp::spawn_with(config).await;
    let imported = async |at_least: usize| {
        orchestration::testing::Scenario::new(db.fabric())
            .within(std::time::Duration::from_secs(60))
            .wait_for_state(
                "the feed imported",
                async |_| app.get("/api/ops/imports").await,
                |imports| {
                    let imports = imports.as_array().unwrap();
                    imports.len() >= at_least && imports[0]["finished_at"].is_string()
                },
            )
            .await
    };
    imported(1).await;

    // A new version of the feed every 100 ms while the customers order.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, feed) = (stop.clone(), feed.clone());
        tokio::spawn(async move {
            let mut version = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                version += 1;
                let next = feed.with_extension("next");
                std::fs::write(&next, hot_feed(version)).unwrap();
                std::fs::rename(&next, &feed).unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            version
        })
    };
    let mut customers = Vec::new();
    for n in 0..8 {
        let email = format!("hot-{n}@tests.example");
        customers.push(app.client_of(&email, &["customer"]).await.0);
    }
    let clients: Vec<_> = customers
        .into_iter()
        .map(|http| {
            let (url, base) = (app.url("/api/orders"), app.url(""));
            tokio::spawn(async move {
                let mut units = 0;
                for _ in 0..10 {
                    let quantity = fastrand::i64(1..=3);
                    let response = http
                        .post(&url)
                        .json(&json!({"lines": [{"sku": "HOT-1", "quantity": quantity}]}))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let mut body: Value = response.json().await.unwrap();
                    if status == StatusCode::ACCEPTED {
                        body = tests::placement_outcome(&http, &base, &body).await;
                    }
                    match (status, body["status"].as_str()) {
                        (StatusCode::CREATED, _) | (StatusCode::ACCEPTED, Some("confirmed")) => {
                            units += quantity;
                        }
                        (StatusCode::CONFLICT, _) | (StatusCode::ACCEPTED, Some("refused")) => {}
                        other => panic!("unexpected answer {other:?}: {body}"),
                    }
                }
                units
            })
        })
        .collect();
    let mut ordered = 0;
    for client in clients {
        ordered += client.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let versions = writer.await.unwrap();
    assert!(ordered > 0, "some orders were placed");
    assert!(ordered <= 40, "{ordered} units ordered of 40 on hand");

    // One more version after the orders: on hand is the feed's 40 again.
    let before = app.get("/api/ops/imports").await.as_array().unwrap().len();
    std::fs::write(&feed, hot_feed(versions + 1)).unwrap();
    let imports = imported(before + 1).await;
    assert!(
        imports.as_array().unwrap().len() >= 3,
        "imports ran beside the orders"
    );
    let hot = app.get("/api/products/HOT-1").await;
    let (available, reserved) = (
        hot["available"].as_i64().unwrap(),
        hot["reserved"].as_i64().unwrap(),
    );
    assert_eq!(reserved, ordered, "{hot}");
    assert_eq!(available + reserved, 40, "{hot}");
    app.stop().await;
}
