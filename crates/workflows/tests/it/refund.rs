//! Refunds on every engine: a full refund gives the money back and the units to stock
//! once; partial refunds and every refusal; one idempotency key refunds once; the
//! customer's window; a gateway that keeps failing leaves the order as it was, and the
//! next refund is asked under the same gateway key (so a refund that went through is
//! never paid twice); concurrent refunds of one order; a notification to the customer;
//! and the cancellation of a placement still running.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use inventory::Quantity;
use orchestration::saga::{RetryPolicy, RunState};
use orchestration::testing::{Scenario, TestDatabase};
use orders::{CustomerId, OrderStatus};
use payments::{
    GatewayRequestKind, GatewayRequestOutcome, PaymentStatus, RefundStatus, SimulatedGateway,
    SimulatedGatewayOptions,
};
use workflows::{
    PlaceOrderOutcome, RefundOrder, RefundOrderCommand, RefundOrderError, RefundOrderOutcome,
    RefundOrderSettings, RefundRefusal, RefundRun, Requester,
};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    a_full_refund_gives_the_money_back_and_restocks_once,
    partial_refunds_and_every_refusal,
    one_idempotency_key_refunds_once,
    the_customer_refunds_within_the_window_and_staff_after_it,
    a_gateway_that_keeps_failing_changes_nothing_and_the_next_refund_reuses_its_key,
    concurrent_refunds_of_one_order_refund_it_once,
    a_refunded_order_notifies_and_audits_once,
    a_running_placement_is_cancelled_through_its_compensation,
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff: orchestration::backoff::Backoff::new(
            StdDuration::from_millis(10),
            StdDuration::from_millis(50),
        ),
        timeout: StdDuration::from_secs(10),
    }
}

fn refunds_with(
    db: &TestDatabase,
    gateway: SimulatedGatewayOptions,
    customer_window: Duration,
) -> RefundOrder {
    let settings = RefundOrderSettings {
        gateway: Arc::new(SimulatedGateway::new(
            db.connection(payments::SCHEMA).clone(),
            gateway,
        )),
        customer_window,
        retry: quick_retry(),
    };
    RefundOrder::register(db.fabric(), settings).unwrap()
}

fn refunds(db: &TestDatabase) -> RefundOrder {
    refunds_with(db, SimulatedGatewayOptions::default(), Duration::days(14))
}

/// Places an order of `lines` for customer `c-1`; its id.
async fn order(db: &TestDatabase, lines: &[(&str, i64)]) -> uuid::Uuid {
    let workflow = super::workflow(db);
    super::placed(&super::place(&workflow, lines).await).id
}

fn customer() -> Requester {
    Requester::Customer(CustomerId::parse("c-1").unwrap())
}

fn command(order_id: uuid::Uuid, lines: Option<&[(&str, i64)]>) -> RefundOrderCommand {
    RefundOrderCommand {
        order_id,
        lines: lines.map(|lines| {
            lines
                .iter()
                .map(|(code, n)| (super::sku(code), Quantity::new(*n).unwrap()))
                .collect()
        }),
        requested_by: customer(),
    }
}

async fn refund(refunds: &RefundOrder, command: &RefundOrderCommand) -> RefundRun {
    refunds.refund(None, command, super::WAIT).await.unwrap()
}

fn refunded(run: &RefundRun) -> &workflows::OrderRefund {
    match &run.outcome {
        RefundOrderOutcome::Refunded(refund) => refund,
        other => panic!("expected Refunded, got {other:?}"),
    }
}

fn refused(run: &RefundRun) -> &RefundRefusal {
    match &run.outcome {
        RefundOrderOutcome::Refused(refusal) => refusal,
        other => panic!("expected Refused, got {other:?}"),
    }
}

async fn payment(db: &TestDatabase, order_id: uuid::Uuid) -> payments::Payment {
    let mut payments =
        payments::payments_for_order(db.connection(payments::SCHEMA), &order_id.to_string())
            .await
            .unwrap();
    assert_eq!(payments.len(), 1, "{payments:?}");
    payments.remove(0)
}

/// The gateway's refunds that went through for `order_id`'s charge.
async fn gateway_refunds(db: &TestDatabase, order_id: uuid::Uuid) -> Vec<payments::GatewayRequest> {
    let charge_key = payment(db, order_id).await.idempotency_key;
    payments::gateway_requests(db.connection(payments::SCHEMA))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.kind == GatewayRequestKind::Refund
                && r.outcome == GatewayRequestOutcome::Refunded
                && r.charge_key.as_deref() == Some(charge_key.as_str())
        })
        .collect()
}

async fn intents(db: &TestDatabase, order_id: uuid::Uuid) -> Vec<payments::RefundIntent> {
    payments::refund_intents_for_order(db.connection(payments::SCHEMA), &order_id.to_string())
        .await
        .unwrap()
}

async fn order_status(db: &TestDatabase, order_id: uuid::Uuid) -> OrderStatus {
    orders::get(db.connection(orders::SCHEMA), order_id)
        .await
        .unwrap()
        .unwrap()
        .status
}

async fn a_full_refund_gives_the_money_back_and_restocks_once(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 10).await;
    super::add(&db, "B", 250, "EUR", 10).await;
    let order_id = order(&db, &[("A", 3), ("B", 1)]).await;
    assert_eq!(super::stock(&db, "A").await, (7, 3));
    let refunds = refunds(&db);

    let run = refund(&refunds, &command(order_id, None)).await;
    let done = refunded(&run);
    assert_eq!(done.amount_minor, 550);
    assert_eq!(done.order.status, OrderStatus::Refunded);
    assert!(
        done.order
            .lines
            .iter()
            .all(|l| l.refunded_quantity == l.quantity)
    );
    assert_eq!(super::stock(&db, "A").await, (10, 0), "restocked");
    assert_eq!(super::stock(&db, "B").await, (10, 0), "restocked");
    assert_eq!(payment(&db, order_id).await.status, PaymentStatus::Refunded);
    let intents = intents(&db, order_id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].id, run.id);
    assert_eq!(intents[0].status, RefundStatus::Refunded);
    assert_eq!(gateway_refunds(&db, order_id).await.len(), 1);

    // Nothing is left: a second refund is refused and changes nothing.
    let again = refund(&refunds, &command(order_id, None)).await;
    assert_eq!(
        refused(&again),
        &RefundRefusal::NotRefundable {
            status: OrderStatus::Refunded
        }
    );
    assert_eq!(super::stock(&db, "A").await, (10, 0));
    assert_eq!(gateway_refunds(&db, order_id).await.len(), 1);
    // The refund's run reads back the same.
    assert_eq!(refunds.refund_of(run.id).await.unwrap(), Some(run));
}

async fn partial_refunds_and_every_refusal(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 10).await;
    super::add(&db, "B", 250, "EUR", 10).await;
    let order_id = order(&db, &[("A", 3), ("B", 1)]).await;
    let refunds = refunds(&db);

    let first = refund(&refunds, &command(order_id, Some(&[("A", 1)]))).await;
    assert_eq!(refunded(&first).amount_minor, 100);
    assert_eq!(refunded(&first).order.status, OrderStatus::PartlyRefunded);
    assert_eq!(super::stock(&db, "A").await, (8, 2));
    assert_eq!(
        payment(&db, order_id).await.status,
        PaymentStatus::PartlyRefunded
    );

    for (lines, expected) in [
        (
            vec![("A", 3)],
            RefundRefusal::MoreThanOrdered {
                sku: "A".to_owned(),
                requested: 3,
                refundable: 2,
            },
        ),
        (
            vec![("A", 1), ("A", 1), ("B", 1), ("B", 1)],
            RefundRefusal::MoreThanOrdered {
                sku: "B".to_owned(),
                requested: 2,
                refundable: 1,
            },
        ),
        (
            vec![("Z", 1)],
            RefundRefusal::NotInOrder {
                sku: "Z".to_owned(),
            },
        ),
    ] {
        let run = refund(&refunds, &command(order_id, Some(&lines))).await;
        assert_eq!(refused(&run), &expected, "{lines:?}");
    }
    // None of the refusals reached the gateway or the stock.
    assert_eq!(super::stock(&db, "A").await, (8, 2));
    assert_eq!(intents(&db, order_id).await.len(), 1);

    // The rest.
    let rest = refund(&refunds, &command(order_id, None)).await;
    assert_eq!(refunded(&rest).amount_minor, 450);
    assert_eq!(refunded(&rest).order.status, OrderStatus::Refunded);
    assert_eq!(super::stock(&db, "A").await, (10, 0));
    assert_eq!(super::stock(&db, "B").await, (10, 0));
    assert_eq!(payment(&db, order_id).await.status, PaymentStatus::Refunded);
    let given_back = gateway_refunds(&db, order_id).await;
    let keys: Vec<&str> = given_back.iter().map(|r| r.key.as_str()).collect();
    let payment_id = payment(&db, order_id).await.id;
    assert_eq!(
        keys,
        [
            format!("refund:{payment_id}:1"),
            format!("refund:{payment_id}:2")
        ]
    );
    assert_eq!(
        given_back.iter().map(|r| r.amount_minor).sum::<i64>(),
        550,
        "exactly what was paid"
    );

    // An order that was never placed has nothing paid to refund.
    let missing = refunds
        .refund(None, &command(uuid::Uuid::now_v7(), None), super::WAIT)
        .await
        .unwrap();
    assert_eq!(refused(&missing), &RefundRefusal::NothingPaid);
}

async fn one_idempotency_key_refunds_once(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 10).await;
    let order_id = order(&db, &[("A", 3)]).await;
    let refunds = refunds(&db);
    let one = command(order_id, Some(&[("A", 1)]));
    let first = refunds
        .refund(Some("k-1"), &one, super::WAIT)
        .await
        .unwrap();
    let again = refunds
        .refund(Some("k-1"), &one, super::WAIT)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(super::stock(&db, "A").await, (8, 2), "restocked once");
    assert_eq!(gateway_refunds(&db, order_id).await.len(), 1);

    let other = command(order_id, Some(&[("A", 2)]));
    let err = refunds
        .refund(Some("k-1"), &other, super::WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RefundOrderError::KeyReused { refund, .. } if refund == first.id),
        "{err}"
    );
}

async fn the_customer_refunds_within_the_window_and_staff_after_it(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 10).await;
    let order_id = order(&db, &[("A", 2)]).await;
    // A window that closed at once.
    let refunds = refunds_with(&db, SimulatedGatewayOptions::default(), Duration::zero());
    let run = refund(&refunds, &command(order_id, None)).await;
    assert!(
        matches!(refused(&run), RefundRefusal::WindowClosed { .. }),
        "{run:?}"
    );
    assert_eq!(order_status(&db, order_id).await, OrderStatus::Confirmed);

    let staff = RefundOrderCommand {
        requested_by: Requester::Staff("staff-1".to_owned()),
        ..command(order_id, None)
    };
    assert_eq!(refunded(&refund(&refunds, &staff).await).amount_minor, 200);
}

async fn a_gateway_that_keeps_failing_changes_nothing_and_the_next_refund_reuses_its_key(
    db: TestDatabase,
) {
    super::add(&db, "A", 100, "EUR", 10).await;
    let order_id = order(&db, &[("A", 2)]).await;
    // Every request fails; half of them after taking effect (a lost response).
    let failing = refunds_with(
        &db,
        SimulatedGatewayOptions {
            failure_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
        Duration::days(14),
    );
    let run = refund(&failing, &command(order_id, None)).await;
    let RefundOrderOutcome::Failed { state, error } = &run.outcome else {
        panic!("expected Failed, got {run:?}");
    };
    assert_eq!(*state, RunState::Compensated, "{error}");
    assert!(error.contains("unavailable"), "{error}");
    // Never half applied: the order and its stock are as they were.
    assert_eq!(order_status(&db, order_id).await, OrderStatus::Confirmed);
    assert_eq!(super::stock(&db, "A").await, (8, 2));
    let failed = intents(&db, order_id).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, RefundStatus::Failed, "{failed:?}");
    let payment_id = payment(&db, order_id).await.id;
    assert_eq!(failed[0].gateway_key, format!("refund:{payment_id}:1"));

    // The gateway recovers (another instance): the next refund asks under the same key,
    // so if the failed one went through, the gateway answers with it instead of paying
    // again.
    let fabric = orchestration::Fabric::connect(db.topology(), migrations::all())
        .await
        .unwrap();
    let working = RefundOrder::register(
        &fabric,
        RefundOrderSettings {
            gateway: Arc::new(SimulatedGateway::new(
                fabric.connection(payments::SCHEMA).unwrap().clone(),
                SimulatedGatewayOptions::default(),
            )),
            customer_window: Duration::days(14),
            retry: quick_retry(),
        },
    )
    .unwrap();
    workflows::subscribe(&fabric, &workflows::MailSettings::default()).unwrap();
    let next = working
        .refund(None, &command(order_id, None), super::WAIT)
        .await
        .unwrap();
    assert_eq!(refunded(&next).amount_minor, 200);
    let intents = intents(&db, order_id).await;
    assert_eq!(intents[1].gateway_key, format!("refund:{payment_id}:1"));
    let given_back = gateway_refunds(&db, order_id).await;
    assert_eq!(given_back.len(), 1, "paid back once: {given_back:?}");
    assert_eq!(given_back[0].amount_minor, 200);
    assert_eq!(super::stock(&db, "A").await, (10, 0));
}

async fn concurrent_refunds_of_one_order_refund_it_once(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 100).await;
    let order_id = order(&db, &[("A", 4)]).await;
    let refunds = refunds(&db);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let refunds = refunds.clone();
            tokio::spawn(async move { refund(&refunds, &command(order_id, None)).await })
        })
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        runs.push(task.await.unwrap());
    }
    let done = runs
        .iter()
        .filter(|run| matches!(run.outcome, RefundOrderOutcome::Refunded(_)))
        .count();
    assert_eq!(done, 1, "{runs:?}");
    for run in &runs {
        match &run.outcome {
            RefundOrderOutcome::Refunded(_) => {}
            RefundOrderOutcome::Refused(
                RefundRefusal::InProgress { .. }
                | RefundRefusal::NotRefundable {
                    status: OrderStatus::Refunded,
                },
            ) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(super::stock(&db, "A").await, (100, 0), "restocked once");
    assert_eq!(gateway_refunds(&db, order_id).await.len(), 1);
}

async fn a_refunded_order_notifies_and_audits_once(db: TestDatabase) {
    use identity::{AccountKind, AccountStatus, DisplayName, Email, NewAccount};
    super::add(&db, "A", 1250, "EUR", 10).await;
    let account = identity::create_account(
        db.connection(identity::SCHEMA),
        &NewAccount {
            email: Email::parse("rae@example.com").unwrap(),
            display_name: DisplayName::parse("Rae").unwrap(),
            kind: AccountKind::Customer,
            status: AccountStatus::Active,
        },
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    let customer = CustomerId::parse(&account.id.to_string()).unwrap();
    let workflow = super::workflow(&db);
    let placed = workflow
        .place(
            None,
            &workflows::PlaceOrderCommand {
                customer_id: customer.clone(),
                lines: vec![(super::sku("A"), Quantity::new(2).unwrap())],
            },
            super::WAIT,
        )
        .await
        .unwrap();
    let order_id = super::placed(&placed).id;
    let refunds = refunds(&db);
    let run = refund(
        &refunds,
        &RefundOrderCommand {
            requested_by: Requester::Customer(customer),
            ..command(order_id, Some(&[("A", 1)]))
        },
    )
    .await;
    refunded(&run);

    let mail = tempfile::tempdir().unwrap();
    let sender = notifications::FileSender::new(mail.path());
    let host = super::deliver(
        db.fabric(),
        Arc::new(sender.clone()),
        workflows::DeliveryPolicy::default(),
    );
    let conn = db.connection(notifications::SCHEMA);
    let sent = Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the confirmation and the refund mail sent",
            async |_| {
                notifications::for_recipient(conn, "rae@example.com", 10)
                    .await
                    .unwrap()
            },
            |sent| sent.len() == 2 && sent.iter().all(|n| n.status == notifications::Status::Sent),
        )
        .await;
    let subject = orders_subject(order_id);
    let audited = Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the refund audited",
            async |_| {
                audit::entries_for(db.connection(audit::SCHEMA), &subject, None, 10)
                    .await
                    .unwrap()
            },
            |entries| {
                entries
                    .iter()
                    .any(|e| e.action.as_str() == "order.refunded")
            },
        )
        .await;
    host.shutdown().await;
    let refund_mail = sent
        .iter()
        .find(|n| n.template == "order_refunded")
        .expect("a refund mail");
    let text = std::fs::read_to_string(sender.path_of(refund_mail.id)).unwrap();
    assert!(
        text.contains(&format!("Subject: Your refund for order {order_id}")),
        "{text}"
    );
    assert!(
        text.contains("12.50 EUR") && text.contains("1 x A"),
        "{text}"
    );
    let entry = audited
        .iter()
        .find(|e| e.action.as_str() == "order.refunded")
        .unwrap();
    assert_eq!(entry.actor.as_str(), format!("customer:{}", account.id));
    assert_eq!(entry.data["amount_minor"], 1250);
    assert_eq!(
        audited
            .iter()
            .filter(|e| e.action.as_str() == "order.refunded")
            .count(),
        1
    );
}

fn orders_subject(order_id: uuid::Uuid) -> audit::Subject {
    audit::Subject::parse(&format!("order:{order_id}")).unwrap()
}

async fn a_running_placement_is_cancelled_through_its_compensation(db: TestDatabase) {
    super::add(&db, "A", 100, "EUR", 10).await;
    // A slow gateway: the placement is still charging when it is cancelled.
    let workflow = super::workflow_with(
        &db,
        SimulatedGatewayOptions {
            latency: StdDuration::from_millis(1500),
            ..SimulatedGatewayOptions::default()
        },
    );
    let placement = workflow
        .place(None, &super::command(&[("A", 3)]), StdDuration::ZERO)
        .await
        .unwrap();
    assert_eq!(placement.outcome, PlaceOrderOutcome::Pending);
    let cancelled = workflow
        .cancel(placement.id, super::WAIT)
        .await
        .unwrap()
        .unwrap();
    let PlaceOrderOutcome::Abandoned { state, .. } = cancelled.outcome else {
        panic!("expected Abandoned, got {cancelled:?}");
    };
    assert_eq!(state, RunState::Cancelled);
    assert_eq!(super::stock(&db, "A").await, (10, 0), "the hold released");
    for payment in super::payments_of(&db, &placement).await {
        assert!(
            matches!(
                payment.status,
                PaymentStatus::Refunded | PaymentStatus::Voided
            ),
            "the charge undone: {payment:?}"
        );
    }
    // Over: it cannot be cancelled again, and a placed order is refunded instead.
    let err = workflow
        .cancel(placement.id, super::WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            workflows::PlaceOrderError::NotRunning {
                state: RunState::Cancelled,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        workflow
            .cancel(uuid::Uuid::now_v7(), super::WAIT)
            .await
            .unwrap()
            .is_none()
    );
}
