//! Killed between commit and dispatch: `order-loop` writes `OrderPlaced` events but
//! never delivers them; it freezes right after the commit of its third order, at the
//! `outbox.committed` pause point, and is SIGKILLed there. The app, started afterwards
//! on the same files, delivers every committed order's event: each order gets exactly
//! one audit entry.

use std::time::Duration;

use orchestration::testing::Scenario;
use orchestration::{DatabaseUrl, Fabric, Topology};
use switchyard::Config;
use tests::{StoreSnapshot, TestApp};

const NTH: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_a_kill_is_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    super::kill_order_loop_at(std::slice::from_ref(&url), "outbox.committed", NTH).await;

    // The three orders committed with their events, which nobody has delivered.
    let topology = Topology::new(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    });
    let fabric = Fabric::connect(&topology, migrations::all()).await.unwrap();
    let snapshot = StoreSnapshot::read(&fabric).await;
    assert_eq!(snapshot.order_count(), NTH);
    snapshot.check_events().unwrap();
    let status = fabric.events().status().await.unwrap();
    let subscribers = workflows::ORDER_PLACED_SUBSCRIBERS.len();
    assert_eq!(status[0].pending, (NTH * subscribers) as u64, "{status:?}");

    // Restarted, the app delivers them: one audit entry per order.
    let mut config = Config::default();
    config.database.url = url;
    let app = TestApp::spawn_with(config).await;
    let mut ids: Vec<&String> = snapshot.ordered.keys().map(|(id, _)| id).collect();
    ids.dedup();
    for id in ids {
        let path = format!("/api/audit?subject=order:{id}");
        let body = Scenario::new(&fabric)
            .within(Duration::from_secs(30))
            .wait_for_state(
                &format!("audited order {id}"),
                async |_| app.get(&path).await,
                |body| {
                    body["items"]
                        .as_array()
                        .is_some_and(|items| !items.is_empty())
                },
            )
            .await;
        let entries = body["items"].as_array().expect("items");
        assert_eq!(entries.len(), 1, "{body}");
        assert_eq!(entries[0]["action"], "order.placed");
        assert_eq!(entries[0]["actor"], "customer:killer");
    }
    app.stop().await;
    fabric.close().await;
}
