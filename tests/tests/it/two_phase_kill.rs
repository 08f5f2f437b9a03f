//! Kill tests of two-phase commit: orders on one PostgreSQL database, inventory on
//! another. The `order-loop` child freezes at a pause point in the commit of its third
//! order and is SIGKILLed there: (a) after preparing a participant but before the
//! decision, (b) after the decision but before the participants commit. Recovery then
//! resolves what was left in doubt: both databases agree for every order, and nothing
//! of ours stays in `pg_prepared_xacts`.

use std::time::Duration;

use orchestration::{Fabric, Topology};
use tests::StoreSnapshot;
use tests::order_loop::initial_stock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_prepare_rolls_back() {
    killed_at("two_phase.after_prepare", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_decision_commits() {
    killed_at("two_phase.after_decision", true).await;
}

/// The two-phase commit that is interrupted: the second placement's hold.
const NTH: usize = 3;

async fn killed_at(point: &str, decided: bool) {
    let Some((orders_db, inventory_db)) = tests::split_postgres().await else {
        return;
    };
    let orders_url = orders_db.topology().default_url().clone();
    let inventory_url = inventory_db.topology().default_url().clone();

    let args = [
        orders_url.connection_string(),
        inventory_url.connection_string(),
    ];
    super::kill_order_loop_at(&args, point, NTH).await;

    let topology = Topology::new(orders_url).with_override(inventory::SCHEMA, inventory_url);
    let fabric = Fabric::connect(&topology, migrations::all()).await.unwrap();
    assert!(
        tests::prepared_transactions(&fabric).await > 0,
        "the kill left nothing in doubt"
    );

    let report = orchestration::two_phase::recover_in_doubt(fabric.databases(), Duration::ZERO)
        .await
        .unwrap();
    if decided {
        assert!(
            !report.committed.is_empty() && report.rolled_back.is_empty(),
            "{report:?}"
        );
    } else {
        assert!(
            report.committed.is_empty() && !report.rolled_back.is_empty(),
            "{report:?}"
        );
    }
    assert_eq!(
        tests::prepared_transactions(&fabric).await,
        0,
        "prepared transactions of ours remain"
    );

    // The interrupted commit was the second placement's hold (the first placement
    // committed its hold and its confirmation): rolled back or committed, another
    // instance finishes that placement from its last checkpoint.
    workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
    tests::order_loop::place_order(&fabric).unwrap();
    let held = fabric.sagas().run(unfinished(&fabric).await).await.unwrap();
    assert_eq!(held.steps.len(), usize::from(decided), "{held:?}");
    tests::finish_runs(&fabric).await;
    let initial = initial_stock();
    let snapshot = StoreSnapshot::read(&fabric).await;
    snapshot.check(&initial).unwrap();
    snapshot.check_events().unwrap();
    tests::check_charges(&fabric, &snapshot).await.unwrap();
    assert_eq!(snapshot.order_count(), 2);
    fabric.close().await;
}

/// The one placement still running.
async fn unfinished(fabric: &Fabric) -> uuid::Uuid {
    let running = fabric
        .sagas()
        .runs(&orchestration::saga::RunFilter {
            states: vec![orchestration::saga::RunState::Running],
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    running[0].id
}
