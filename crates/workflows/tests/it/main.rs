//! Workflow tests across the inventory, orders, payments and audit boundaries, on
//! every engine: order placement as a saga (held, charged, confirmed; or refused and
//! undone), its idempotency, the audit trail, and the expired-holds job.

mod login;
mod notify;
mod refund;
mod registration;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, SubsecRound, Utc};
use inventory::{Currency, Money, NewProduct, ProductName, Quantity, ReservationStatus, Sku};
use orchestration::testing::{Clock, Scenario, TestDatabase};
use orchestration::{
    Fabric,
    dispatch::{Dispatcher, DispatcherOptions},
    host::{Host, Policy, RunningHost, Schedule},
    saga::{RetryPolicy, RunState},
};
use orders::{CustomerId, OrderStatus};
use payments::{
    GatewayRequestKind, GatewayRequestOutcome, PaymentPolicy, PaymentStatus, SimulatedGateway,
    SimulatedGatewayOptions,
};
use sea_orm::ConnectionTrait;
use workflows::{
    PlaceOrder, PlaceOrderCommand, PlaceOrderError, PlaceOrderOutcome, PlaceOrderSettings,
    Placement, Refusal, ReleaseExpiredHolds,
};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    placing_an_order_holds_charges_and_confirms,
    a_line_out_of_stock_undoes_the_hold,
    an_unknown_product_or_an_invalid_order_is_refused,
    a_large_order_of_an_unverified_customer_needs_verification,
    a_declined_payment_releases_the_hold,
    a_gateway_that_keeps_failing_leaves_nothing_charged_and_nothing_held,
    one_idempotency_key_places_one_order,
    a_placed_order_is_audited_once_its_event_is_delivered,
    an_audit_failure_never_changes_or_delays_the_order,
    expired_holds_of_finished_placements_are_released,
    concurrent_placements_do_not_trip_over_each_other,
}

const WAIT: StdDuration = StdDuration::from_secs(60);

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

async fn add(db: &TestDatabase, code: &str, price: i64, currency: &str, stock: u32) {
    let product = NewProduct {
        sku: sku(code),
        name: ProductName::parse(code).unwrap(),
        price: Money::new(price, Currency::parse(currency).unwrap()).unwrap(),
        initial_stock: stock,
    };
    inventory::add_product(db.connection(inventory::SCHEMA), &product, Utc::now())
        .await
        .unwrap();
}

fn command(lines: &[(&str, i64)]) -> PlaceOrderCommand {
    PlaceOrderCommand {
        customer_id: CustomerId::parse("c-1").unwrap(),
        lines: lines
            .iter()
            .map(|(code, n)| (sku(code), Quantity::new(*n).unwrap()))
            .collect(),
    }
}

async fn stock(db: &TestDatabase, code: &str) -> (i64, i64) {
    let product = inventory::get(db.connection(inventory::SCHEMA), &sku(code))
        .await
        .unwrap()
        .unwrap();
    (product.available, product.reserved)
}

fn workflow(db: &TestDatabase) -> PlaceOrder {
    workflow_with(db, SimulatedGatewayOptions::default())
}

/// The placement saga with a simulated gateway behaving as `gateway` says; the
/// subscribers too, on the first call per fabric.
fn workflow_with(db: &TestDatabase, gateway: SimulatedGatewayOptions) -> PlaceOrder {
    // Three quick attempts.
    let retry = RetryPolicy {
        max_attempts: 3,
        backoff: orchestration::backoff::Backoff::new(
            StdDuration::from_millis(10),
            StdDuration::from_millis(50),
        ),
        timeout: StdDuration::from_secs(10),
    };
    workflow_retrying(db, gateway, retry)
}

/// [`workflow_with`], retrying gateway calls by `charge_retry`.
fn workflow_retrying(
    db: &TestDatabase,
    gateway: SimulatedGatewayOptions,
    charge_retry: RetryPolicy,
) -> PlaceOrder {
    let fabric = db.fabric();
    if fabric.events().subscribers().is_empty() {
        workflows::subscribe(fabric, &workflows::MailSettings::default()).unwrap();
    }
    let settings = PlaceOrderSettings {
        hold: Duration::minutes(15),
        gateway: Arc::new(SimulatedGateway::new(
            db.connection(payments::SCHEMA).clone(),
            gateway,
        )),
        policy: PaymentPolicy {
            verification_threshold_minor: 10_000,
        },
        charge_retry,
    };
    PlaceOrder::register(fabric, settings).unwrap()
}

async fn place(workflow: &PlaceOrder, lines: &[(&str, i64)]) -> Placement {
    workflow.place(None, &command(lines), WAIT).await.unwrap()
}

fn placed(placement: &Placement) -> &orders::Order {
    match &placement.outcome {
        PlaceOrderOutcome::Placed(order) => order,
        other => panic!("expected Placed, got {other:?}"),
    }
}

fn refused(placement: &Placement) -> &Refusal {
    match &placement.outcome {
        PlaceOrderOutcome::Refused(refusal) => refusal,
        other => panic!("expected Refused, got {other:?}"),
    }
}

async fn payments_of(db: &TestDatabase, placement: &Placement) -> Vec<payments::Payment> {
    payments::payments_for_order(db.connection(payments::SCHEMA), &placement.id.to_string())
        .await
        .unwrap()
}

async fn placing_an_order_holds_charges_and_confirms(db: TestDatabase) {
    add(&db, "B", 500, "EUR", 10).await;
    add(&db, "A", 1200, "EUR", 10).await;
    let placement = place(&workflow(&db), &[("B", 2), ("A", 3)]).await;
    let order = placed(&placement);
    assert_eq!(order.id, placement.id, "the order's id is the placement's");
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.total_minor, 2 * 500 + 3 * 1200);
    assert_eq!(order.lines[0].sku, "B", "lines keep the customer's order");
    assert_eq!(stock(&db, "A").await, (7, 3));
    assert_eq!(stock(&db, "B").await, (8, 2));
    let reservations =
        inventory::reservations_for(db.connection(inventory::SCHEMA), &order.id.to_string())
            .await
            .unwrap();
    assert_eq!(reservations.len(), 2);
    assert!(
        reservations
            .iter()
            .all(|r| r.status == ReservationStatus::Committed),
        "{reservations:?}"
    );
    let payments = payments_of(&db, &placement).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Charged);
    assert_eq!(payments[0].amount_minor, order.total_minor);
    assert_eq!(payments[0].idempotency_key, format!("{}/charge", order.id));
    let requests = payments::gateway_requests(db.connection(payments::SCHEMA))
        .await
        .unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].outcome, GatewayRequestOutcome::Charged);
    assert_eq!(requests[0].reference, payments[0].gateway_reference);
    // The run shows each step's checkpoint.
    let run = db.fabric().sagas().run(placement.id).await.unwrap();
    assert_eq!(run.run.state, RunState::Completed);
    let steps: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, ["hold_stock", "charge", "confirm_order"]);
}

async fn a_line_out_of_stock_undoes_the_hold(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    add(&db, "B", 100, "EUR", 1).await;
    // A is reserved first (SKU order), then B fails: A's reservation rolls back with
    // the step.
    let placement = place(&workflow(&db), &[("A", 4), ("B", 2)]).await;
    assert_eq!(
        refused(&placement),
        &Refusal::OutOfStock {
            sku: "B".to_owned(),
            requested: 2,
            available: 1
        }
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
    assert_eq!(stock(&db, "B").await, (1, 0));
    assert!(payments_of(&db, &placement).await.is_empty());
}

async fn an_unknown_product_or_an_invalid_order_is_refused(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    add(&db, "B", 100, "USD", 10).await;
    let workflow = workflow(&db);
    let placement = place(&workflow, &[("A", 1), ("GHOST", 1)]).await;
    assert_eq!(
        refused(&placement),
        &Refusal::UnknownProduct {
            sku: "GHOST".to_owned()
        }
    );
    let placement = place(&workflow, &[("A", 1), ("B", 1)]).await;
    assert!(
        matches!(refused(&placement), Refusal::InvalidOrder { message } if message.contains("currenc")),
        "{placement:?}"
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
}

async fn a_large_order_of_an_unverified_customer_needs_verification(db: TestDatabase) {
    add(&db, "A", 6_000, "EUR", 10).await;
    let workflow = workflow(&db);
    // 12,000 is above the 10,000 threshold: the hold is undone, nothing is charged.
    let placement = place(&workflow, &[("A", 2)]).await;
    assert_eq!(
        refused(&placement),
        &Refusal::VerificationRequired {
            amount_minor: 12_000,
            threshold_minor: 10_000
        }
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
    assert!(
        payments::gateway_requests(db.connection(payments::SCHEMA))
            .await
            .unwrap()
            .iter()
            .all(|r| r.kind == GatewayRequestKind::Refund),
        "nothing was charged"
    );
    // Within the threshold it goes through, and so does a verified customer's order.
    placed(&place(&workflow, &[("A", 1)]).await);
    payments::verify_customer(db.connection(payments::SCHEMA), "c-1", Utc::now())
        .await
        .unwrap();
    placed(&place(&workflow, &[("A", 2)]).await);
    assert_eq!(stock(&db, "A").await, (7, 3));
}

async fn a_declined_payment_releases_the_hold(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow_with(
        &db,
        SimulatedGatewayOptions {
            decline_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
    );
    let placement = place(&workflow, &[("A", 3)]).await;
    assert!(
        matches!(refused(&placement), Refusal::PaymentDeclined { .. }),
        "{placement:?}"
    );
    assert_eq!(stock(&db, "A").await, (10, 0));
    let payments = payments_of(&db, &placement).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, PaymentStatus::Declined);
    let run = db.fabric().sagas().run(placement.id).await.unwrap();
    let steps: Vec<_> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect();
    assert_eq!(
        steps,
        [("hold_stock", orchestration::saga::StepState::Compensated)]
    );
    assert!(
        orders::get(db.connection(orders::SCHEMA), placement.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_gateway_that_keeps_failing_leaves_nothing_charged_and_nothing_held(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    // Every request fails; half of them after taking effect (a lost response).
    let workflow = workflow_with(
        &db,
        SimulatedGatewayOptions {
            failure_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
    );
    let placement = place(&workflow, &[("A", 3)]).await;
    let PlaceOrderOutcome::Abandoned { state, error } = &placement.outcome else {
        panic!("expected Abandoned, got {placement:?}");
    };
    // The refund fails too, so the compensation keeps failing: an operator's turn.
    assert_eq!(*state, RunState::Failed, "{error}");
    assert!(
        error.contains("compensating step `charge` attempt 3: ") && error.contains("unavailable"),
        "the third of three attempts: {error}"
    );
    let run = db.fabric().sagas().run(placement.id).await.unwrap();
    assert_eq!(run.steps[1].attempts, 3, "{run:?}");
    assert_eq!(stock(&db, "A").await, (7, 3), "the hold stays until undone");

    // The gateway recovers; the operator retries; the run undoes the charge (if it
    // happened) and the hold.
    let (_mended, fabric) = workflow_on_new_instance(&db).await;
    db.fabric().sagas().retry(placement.id).await.unwrap();
    let host = recovery(&fabric);
    Scenario::new(&fabric)
        .within(WAIT)
        .wait_for_state(
            "undid the placement",
            async |fabric| fabric.sagas().run(placement.id).await.unwrap(),
            |run| run.run.state == RunState::Compensated,
        )
        .await;
    host.shutdown().await;
    assert_eq!(stock(&db, "A").await, (10, 0));
    let requests = payments::gateway_requests(db.connection(payments::SCHEMA))
        .await
        .unwrap();
    let charged = requests
        .iter()
        .filter(|r| r.outcome == GatewayRequestOutcome::Charged)
        .count();
    let refunded = requests
        .iter()
        .filter(|r| r.outcome == GatewayRequestOutcome::Refunded)
        .count();
    assert!(charged <= 1, "{requests:?}");
    assert_eq!(charged, refunded, "every charge refunded: {requests:?}");
    for payment in payments_of(&db, &placement).await {
        assert!(
            matches!(
                payment.status,
                PaymentStatus::Refunded | PaymentStatus::Voided | PaymentStatus::Pending
            ),
            "{payment:?}"
        );
        assert!(payment.status != PaymentStatus::Charged);
    }
}

/// A second instance on the same database whose gateway works.
async fn workflow_on_new_instance(db: &TestDatabase) -> (PlaceOrder, Fabric) {
    let fabric = Fabric::connect(db.topology(), migrations::all())
        .await
        .unwrap();
    workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
    let settings = PlaceOrderSettings {
        hold: Duration::minutes(15),
        gateway: Arc::new(SimulatedGateway::new(
            fabric.connection(payments::SCHEMA).unwrap().clone(),
            SimulatedGatewayOptions::default(),
        )),
        policy: PaymentPolicy::default(),
        charge_retry: RetryPolicy::default(),
    };
    (PlaceOrder::register(&fabric, settings).unwrap(), fabric)
}

fn recovery(fabric: &Fabric) -> RunningHost {
    let mut host = Host::new(fabric.databases());
    host.add(
        orchestration::saga::SagaRecovery::new(
            fabric.sagas(),
            orchestration::saga::SagaRecoveryOptions {
                poll_interval: StdDuration::from_millis(50),
                concurrency: 4,
            },
        ),
        Policy::StopHost,
    )
    .unwrap();
    host.start()
}

async fn one_idempotency_key_places_one_order(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow(&db);
    let first = workflow
        .place(Some("order-1"), &command(&[("A", 2)]), WAIT)
        .await
        .unwrap();
    let again = workflow
        .place(Some("order-1"), &command(&[("A", 2)]), WAIT)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(stock(&db, "A").await, (8, 2), "held once");
    match workflow
        .place(Some("order-1"), &command(&[("A", 3)]), WAIT)
        .await
    {
        Err(PlaceOrderError::KeyReused { key, placement }) => {
            assert_eq!((key.as_str(), placement), ("order-1", first.id));
        }
        other => panic!("expected KeyReused, got {other:?}"),
    }
    // Concurrent placements with one key: one order.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let workflow = workflow.clone();
            tokio::spawn(async move {
                workflow
                    .place(Some("order-2"), &command(&[("A", 1)]), WAIT)
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for racer in racers {
        ids.push(placed(&racer.await.unwrap().unwrap()).id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(stock(&db, "A").await, (7, 3));
    let requests = payments::gateway_requests(db.connection(payments::SCHEMA))
        .await
        .unwrap();
    assert_eq!(requests.len(), 2, "one charge per placement: {requests:?}");

    // A key is the customer's own: another customer's same key is another placement.
    let mut other = command(&[("A", 3)]);
    other.customer_id = CustomerId::parse("c-2").unwrap();
    let theirs = workflow.place(Some("order-1"), &other, WAIT).await.unwrap();
    assert_ne!(theirs.id, first.id);
    assert_eq!(theirs.customer_id, "c-2");
    assert_eq!(first.customer_id, "c-1");
    assert_eq!(stock(&db, "A").await, (4, 6));
    let too_long = "k".repeat(workflows::MAX_PLACEMENT_KEY_LEN + 1);
    assert!(matches!(
        workflow.place(Some(&too_long), &other, WAIT).await,
        Err(PlaceOrderError::Saga(
            orchestration::saga::SagaError::InvalidKey(_)
        ))
    ));
}

async fn concurrent_placements_do_not_trip_over_each_other(db: TestDatabase) {
    // One attempt per gateway call: a placement that failed on a lock another one
    // held (SQLite's `database is locked`) would be undone, not retried.
    add(&db, "A", 100, "EUR", 1000).await;
    let once = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let workflow = workflow_retrying(&db, SimulatedGatewayOptions::default(), once);
    let dispatching = dispatcher(db.fabric());
    let placements: Vec<_> = (0..24)
        .map(|_| {
            let workflow = workflow.clone();
            tokio::spawn(async move { workflow.place(None, &command(&[("A", 1)]), WAIT).await })
        })
        .collect();
    for placement in placements {
        placed(&placement.await.unwrap().unwrap());
    }
    dispatching.shutdown().await;
    assert_eq!(stock(&db, "A").await, (976, 24));
}

/// Delivers `fabric`'s events and its notifications, through `sender` under `policy`.
fn deliver(
    fabric: &Fabric,
    sender: Arc<dyn notifications::Sender>,
    policy: workflows::DeliveryPolicy,
) -> RunningHost {
    let mut host = Host::new(fabric.databases());
    host.add(
        Dispatcher::new(
            fabric.events(),
            DispatcherOptions {
                poll_interval: StdDuration::from_millis(50),
                ..DispatcherOptions::default()
            },
        ),
        Policy::StopHost,
    )
    .unwrap();
    host.add_job(
        workflows::DeliverNotifications::new(fabric, sender, policy),
        Schedule::every(StdDuration::from_millis(20)),
        Policy::StopHost,
    )
    .unwrap();
    host.start()
}

fn dispatcher(fabric: &Fabric) -> RunningHost {
    let mut host = Host::new(fabric.databases());
    let options = DispatcherOptions {
        max_attempts: 2,
        backoff: orchestration::backoff::Backoff::new(
            StdDuration::from_millis(10),
            DispatcherOptions::default().backoff.max,
        ),
        poll_interval: StdDuration::from_millis(50),
        ..DispatcherOptions::default()
    };
    host.add(Dispatcher::new(fabric.events(), options), Policy::StopHost)
        .unwrap();
    host.start()
}

async fn a_placed_order_is_audited_once_its_event_is_delivered(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow(&db);
    // Refused placements emit nothing.
    refused(&place(&workflow, &[("A", 50)]).await);
    let before = Utc::now().trunc_subsecs(6);
    let (placement, event) = db
        .scenario()
        .stimulate(async || place(&workflow, &[("A", 2)]).await)
        .await
        .and_wait_for_event(workflows::ORDER_PLACED, |event| event.total_minor == 200)
        .await;
    let order = placed(&placement);
    assert_eq!(event.order_id, order.id);
    let status = db.fabric().events().status().await.unwrap();
    // One message per subscriber of the event.
    let subscribers = workflows::ORDER_PLACED_SUBSCRIBERS.len() as u64;
    assert_eq!(status[0].pending, subscribers, "{status:?}");
    let host = dispatcher(db.fabric());
    let subject = audit::Subject::parse(&format!("order:{}", order.id)).unwrap();
    let audit_db = db.connection(audit::SCHEMA);
    let entries = db
        .scenario()
        .wait_for_state(
            "audited the order",
            async |_| {
                audit::entries_for(audit_db, &subject, None, 10)
                    .await
                    .unwrap()
            },
            |entries| !entries.is_empty(),
        )
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action.as_str(), "order.placed");
    assert_eq!(entries[0].actor.as_str(), "customer:c-1");
    assert!(entries[0].occurred_at >= before);
    assert_eq!(entries[0].data["total_minor"], 200);
    host.shutdown().await;
}

async fn an_audit_failure_never_changes_or_delays_the_order(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let workflow = workflow(&db);
    let host = dispatcher(db.fabric());
    // Audit is broken: its table is gone.
    db.connection(audit::SCHEMA)
        .execute_unprepared("DROP TABLE audit.entries")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let placement = place(&workflow, &[("A", 2)]).await;
    let elapsed = started.elapsed();
    let order = placed(&placement);
    assert!(elapsed < StdDuration::from_secs(5), "{elapsed:?}");
    // The audit subscriber failed its attempts; the order stands.
    db.scenario()
        .wait_for_state(
            "gave the audit message up",
            async |fabric| fabric.events().status().await.unwrap(),
            |status| status[0].dead == 1,
        )
        .await;
    let stored = orders::get(db.connection(orders::SCHEMA), order.id)
        .await
        .unwrap()
        .expect("the order");
    assert_eq!(stored.status, OrderStatus::Confirmed);
    assert_eq!(stock(&db, "A").await, (8, 2));
    host.shutdown().await;
}

/// Holds expire by the fabric's clock: with a manual clock (a time machine) the job
/// releases nothing until time moves past the holds' expiry, and then releases the
/// abandoned hold at once, without the test sleeping through the hold time.
async fn expired_holds_of_finished_placements_are_released(db: TestDatabase) {
    add(&db, "A", 100, "EUR", 10).await;
    let start = Utc::now().trunc_subsecs(6);
    let (clock, time) = Clock::manual(start);
    let fabric = db.fabric_with_clock(clock).await;
    let inventory_db = db.connection(inventory::SCHEMA);
    let expires = start + Duration::minutes(15);
    // A hold nobody will release (its placement is gone), and a hold of a placement
    // that still runs (its own compensation will release it), both for 15 minutes.
    inventory::reserve(
        inventory_db,
        &sku("A"),
        Quantity::new(2).unwrap(),
        "legacy",
        expires,
        start,
    )
    .await
    .unwrap();
    let placement = place(&workflow(&db), &[("A", 1)]).await;
    placed(&placement);
    let running = uuid::Uuid::now_v7();
    insert_running_run(&db, running).await;
    inventory::reserve(
        inventory_db,
        &sku("A"),
        Quantity::new(3).unwrap(),
        &running.to_string(),
        expires,
        start,
    )
    .await
    .unwrap();
    assert_eq!(stock(&db, "A").await, (4, 6));
    let mut host = Host::new(fabric.databases());
    host.add_job(
        ReleaseExpiredHolds::new(&fabric, 100),
        Schedule::every(StdDuration::from_secs(60)),
        Policy::StopHost,
    )
    .unwrap();
    let host = host.start();
    // The job runs at once and each minute by the clock: nothing has expired yet.
    time.advance(StdDuration::from_secs(14 * 60));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(stock(&db, "A").await, (4, 6));
    time.advance(StdDuration::from_secs(2 * 60));
    Scenario::new(&fabric)
        .within(StdDuration::from_secs(20))
        .wait_for_state(
            "released the legacy hold",
            async |_| stock(&db, "A").await,
            |stock| *stock == (6, 4),
        )
        .await;
    time.advance(StdDuration::from_secs(60));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    host.shutdown().await;
    // The confirmed order's stock and the running placement's hold stay.
    assert_eq!(stock(&db, "A").await, (6, 4));
}

/// A placement run that some instance is driving right now.
async fn insert_running_run(db: &TestDatabase, id: uuid::Uuid) {
    let conn = db.connection("orchestration");
    let sql = format!(
        "INSERT INTO orchestration.saga_runs (id, saga, idempotency_key, input, status, current_step, attempts, cancel_requested, lease_holder, lease_expires_at_ms, created_at_ms, updated_at_ms) \
         VALUES ('{id}', 'place_order', '{id}', '{{}}', 'running', 1, 0, FALSE, 'elsewhere', {far}, 0, 0)",
        far = i64::MAX / 2
    );
    conn.execute_unprepared(&sql).await.unwrap();
}
