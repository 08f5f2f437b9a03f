//! The kill test: a child process places orders (the placement saga across the
//! inventory, payments and orders files) in a loop and is SIGKILLed at random moments.
//! After every kill, another instance finishes the interrupted placement; then no
//! order exists without its reservations, no reservation without its order, stock is
//! conserved, no placement is charged twice, and every order has its `OrderPlaced`
//! event in the outbox.

use std::process::{Command, Stdio};
use std::time::Duration;

use orchestration::{DatabaseUrl, Fabric, Topology};
use tests::order_loop::initial_stock;
use tests::{StoreSnapshot, check_charges, finish_runs};

const KILLS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_tears_a_cross_boundary_commit() {
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::new(DatabaseUrl::Sqlite {
        dir: dir.path().to_owned(),
    });
    let initial = initial_stock();
    let mut orders_seen = 0;
    let mut grew = 0;
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_order-loop"))
            .arg(format!("sqlite://{}", dir.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start order-loop");
        // The first run gets time to migrate and seed; later runs die anywhere,
        // including while opening files and recovering from the previous kill.
        let lifetime = if round == 0 {
            1_500
        } else {
            fastrand::u64(20..250)
        };
        tokio::time::sleep(Duration::from_millis(lifetime)).await;
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "order-loop exited on its own ({status}): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // Another instance finishes the placement the kill interrupted.
        let fabric = Fabric::connect(&topology, migrations::all()).await.unwrap();
        workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
        tests::order_loop::place_order(&fabric).unwrap();
        finish_runs(&fabric).await;
        let snapshot = StoreSnapshot::read(&fabric).await;
        if let Err(broken) = check_charges(&fabric, &snapshot).await {
            panic!("after kill {round}: {broken}");
        }
        fabric.close().await;
        if let Err(broken) = snapshot.check(&initial) {
            panic!("after kill {round}: {broken}");
        }
        if let Err(broken) = snapshot.check_events() {
            panic!("after kill {round}: {broken}");
        }
        let count = snapshot.order_count();
        assert!(
            count >= orders_seen,
            "orders disappeared: {orders_seen} -> {count}"
        );
        if count > orders_seen {
            grew += 1;
        }
        orders_seen = count;
    }
    eprintln!(
        "[kill] {KILLS} kills, {orders_seen} orders committed, the store grew between {grew} of them"
    );
    assert!(orders_seen > 0, "the loop never committed an order");
    assert!(
        grew >= KILLS / 4,
        "too few runs committed anything ({grew}); the test proves little"
    );
}
