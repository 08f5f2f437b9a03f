//! Fault injection at every step boundary of the placement saga: `order-loop` freezes
//! before or after a local step's commit, or before or after the gateway call, on its
//! second placement, and is SIGKILLed there. Another instance then takes over (once
//! the dead one's lease is past) and finishes every run: each ends completed or
//! compensated, stock is conserved, no key is charged twice, and every order has its
//! event. On SQLite at every boundary, and on one PostgreSQL database shared by the
//! killed instance and the one that finishes its work.

use orchestration::testing::{Engine, TestDatabase};
use orchestration::{
    DatabaseUrl, Fabric, Topology,
    saga::{RunFilter, RunState},
};
use tests::order_loop::initial_stock;
use tests::{StoreSnapshot, check_charges, finish_runs};

const POINTS: [&str; 6] = [
    "saga.hold_stock.before_commit",
    "saga.hold_stock.after_commit",
    "saga.charge.before_call",
    "saga.charge.after_call",
    "saga.confirm_order.before_commit",
    "saga.confirm_order.after_commit",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_killed_at_any_step_boundary_is_finished_by_another_instance() {
    for point in POINTS {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite {
            dir: dir.path().to_owned(),
        };
        killed_and_finished(url, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_run_abandoned_by_a_killed_instance_is_finished_by_another() {
    for point in ["saga.charge.after_call", "saga.confirm_order.before_commit"] {
        let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
            return;
        };
        killed_and_finished(db.topology().default_url().clone(), point).await;
    }
}

async fn killed_and_finished(url: DatabaseUrl, point: &str) {
    super::kill_order_loop_at(&[url.connection_string()], point, 2).await;

    let fabric = Fabric::connect(&Topology::new(url), migrations::all())
        .await
        .unwrap();
    workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
    tests::order_loop::place_order(&fabric).unwrap();
    let unfinished = fabric
        .sagas()
        .runs(&RunFilter {
            states: vec![RunState::Running],
            limit: None,
        })
        .await
        .unwrap();
    // Killed before the first step's commit, the run was never stored (that commit
    // stores it): its placement never answered, and did not happen. Killed after the
    // last step's commit, the run is complete: that commit completed it.
    let stored = point != "saga.hold_stock.before_commit";
    let expected = usize::from(stored && point != "saga.confirm_order.after_commit");
    assert_eq!(unfinished.len(), expected, "{point}: {unfinished:?}");
    finish_runs(&fabric).await;

    let runs = fabric.sagas().runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1 + usize::from(stored), "{point}: {runs:?}");
    assert!(
        runs.iter().all(|r| r.state == RunState::Completed),
        "{point}: {runs:?}"
    );
    let snapshot = StoreSnapshot::read(&fabric).await;
    snapshot
        .check(&initial_stock())
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    snapshot
        .check_events()
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    check_charges(&fabric, &snapshot)
        .await
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    assert_eq!(snapshot.order_count(), 1 + usize::from(stored), "{point}");
    fabric.close().await;
}

const REFUND_POINTS: [&str; 6] = [
    "saga.record_intent.before_commit",
    "saga.record_intent.after_commit",
    "saga.refund.before_call",
    "saga.refund.after_call",
    "saga.apply_refund.before_commit",
    "saga.apply_refund.after_commit",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_killed_at_any_step_boundary_is_finished_by_another_instance() {
    for point in REFUND_POINTS {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite {
            dir: dir.path().to_owned(),
        };
        refund_killed_and_finished(url, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_refund_abandoned_by_a_killed_instance_is_finished_by_another() {
    for point in ["saga.refund.after_call", "saga.apply_refund.before_commit"] {
        let Some(db) = TestDatabase::create(Engine::Postgres, migrations::all()).await else {
            return;
        };
        refund_killed_and_finished(db.topology().default_url().clone(), point).await;
    }
}

/// `order-loop` refunding what it places, killed at `point` on its second refund;
/// another instance finishes the run: no refund is paid twice, stock comes back
/// exactly once, and each applied refund has its event.
async fn refund_killed_and_finished(url: DatabaseUrl, point: &str) {
    super::kill_order_loop_at_with(
        &[url.connection_string()],
        point,
        2,
        &[(tests::order_loop::REFUNDS_VAR, "1")],
    )
    .await;

    let fabric = Fabric::connect(&Topology::new(url), migrations::all())
        .await
        .unwrap();
    workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
    tests::order_loop::place_order(&fabric).unwrap();
    tests::order_loop::refund_order(&fabric).unwrap();
    let unfinished = fabric
        .sagas()
        .runs(&RunFilter {
            states: vec![RunState::Running],
            limit: None,
        })
        .await
        .unwrap();
    // Killed before the first step's commit, the refund was never stored (that commit
    // stores it), and did not happen. Killed after the last step's commit, the run is
    // complete: that commit completed it.
    let stored = point != "saga.record_intent.before_commit";
    let expected = usize::from(stored && point != "saga.apply_refund.after_commit");
    assert_eq!(unfinished.len(), expected, "{point}: {unfinished:?}");
    finish_runs(&fabric).await;

    // Every run completed, but for the refund of "the rest" of an order whose first
    // refund took every unit: refused, nothing changed.
    let runs = fabric.sagas().runs(&RunFilter::default()).await.unwrap();
    let refused = |r: &orchestration::saga::RunStatus| {
        r.state == RunState::Compensated
            && r.rejection.as_ref().is_some_and(|rejection| {
                rejection["kind"] == "not_refundable" && rejection["status"] == "refunded"
            })
    };
    assert!(
        runs.iter()
            .all(|r| r.state == RunState::Completed || refused(r)),
        "{point}: {runs:?}"
    );
    let applied = runs
        .iter()
        .filter(|r| r.saga == workflows::RefundOrder::SAGA && r.state == RunState::Completed)
        .count();
    assert!(applied > usize::from(stored), "{point}: {runs:?}");
    let snapshot = StoreSnapshot::read(&fabric).await;
    snapshot
        .check(&initial_stock())
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    snapshot
        .check_events()
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    assert_eq!(snapshot.applied_refunds.len(), applied, "{point}");
    check_charges(&fabric, &snapshot)
        .await
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    tests::check_refunds(&fabric)
        .await
        .unwrap_or_else(|e| panic!("{point}: {e}"));
    fabric.close().await;
}
