//! The `vendor_sync` job in the app, on every engine: it imports the configured feed
//! on its schedule, and skips it once imported.

use orchestration::testing::TestDatabase;
use tests::TestApp;

orchestration::engine_tests! {
    boundaries: (migrations::all());
    the_vendor_sync_job_imports_its_feed_once,
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
    config.vendor_sync.feed = Some(feed);
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
