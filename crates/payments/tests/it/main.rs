//! Payments' integration tests, run on SQLite, PostgreSQL and MariaDB.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use orchestration::UnitOfWorkError;
use orchestration::testing::TestDatabase;
use payments::{
    ChargeOutcome, ChargeRequest, Error, GatewayError, GatewayRequest, GatewayRequestKind,
    GatewayRequestOutcome, NewPayment, Payment, PaymentGateway, PaymentPolicy, PaymentStatus,
    RefundOutcome, RefundRequest, SimulatedGateway, SimulatedGatewayOptions,
};

orchestration::engine_tests! {
    boundaries: [migrations::payments()];
    a_payment_opens_pending_and_reads_back_equal,
    invalid_payments_are_refused_and_nothing_is_stored,
    large_payments_need_a_verified_customer,
    opening_again_with_a_key_returns_its_payment_or_refuses,
    concurrent_opens_with_one_key_make_one_payment,
    charges_are_recorded_once_from_pending,
    refunds_and_voids_are_recorded_once,
    the_gateway_charges_each_key_once,
    concurrent_charges_with_one_key_charge_once,
    the_gateway_declines_at_decline_rate_one,
    a_failed_request_is_recorded_or_not_and_a_retry_settles_it,
    refunds_give_back_only_what_was_charged,
    a_payment_goes_through_the_gateway_and_back,
}

/// An instant with microseconds, like the stored ones.
fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
        + Duration::seconds(seconds)
        + Duration::microseconds(123_456)
}

fn new_payment(key: &str, order: &str, amount_minor: i64) -> NewPayment {
    NewPayment {
        idempotency_key: key.to_owned(),
        order_reference: order.to_owned(),
        customer_id: "customer-1".to_owned(),
        amount_minor,
        currency: "EUR".to_owned(),
    }
}

fn charged(reference: &str) -> ChargeOutcome {
    ChargeOutcome::Charged {
        reference: reference.to_owned(),
    }
}

fn gateway(db: &TestDatabase, options: SimulatedGatewayOptions) -> SimulatedGateway {
    SimulatedGateway::new(db.connection(payments::SCHEMA).clone(), options)
}

fn charge_request(key: &str, amount_minor: i64) -> ChargeRequest {
    ChargeRequest {
        key: key.to_owned(),
        amount_minor,
        currency: "EUR".to_owned(),
        customer_id: "customer-1".to_owned(),
        reference: "order-1".to_owned(),
    }
}

fn refund_request(key: &str, charge_key: &str, amount_minor: i64) -> RefundRequest {
    RefundRequest {
        key: key.to_owned(),
        charge_key: charge_key.to_owned(),
        amount_minor,
    }
}

/// The gateway's requests, by key.
async fn requests(db: &TestDatabase) -> BTreeMap<String, Vec<GatewayRequest>> {
    let mut by_key: BTreeMap<String, Vec<GatewayRequest>> = BTreeMap::new();
    for request in payments::gateway_requests(db.connection(payments::SCHEMA))
        .await
        .unwrap()
    {
        by_key.entry(request.key.clone()).or_default().push(request);
    }
    by_key
}

async fn a_payment_opens_pending_and_reads_back_equal(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let now = at(0) + Duration::nanoseconds(789);
    let opened = payments::open(
        conn,
        &new_payment("pay-1", "order-1", 1250),
        &PaymentPolicy::default(),
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            opened.idempotency_key.as_str(),
            opened.order_reference.as_str(),
            opened.customer_id.as_str(),
            opened.amount_minor,
            opened.currency.as_str(),
            opened.status,
        ),
        (
            "pay-1",
            "order-1",
            "customer-1",
            1250,
            "EUR",
            PaymentStatus::Pending
        )
    );
    assert_eq!(
        (&opened.gateway_reference, &opened.decline_reason),
        (&None, &None)
    );
    // Kept to the microsecond, so what `open` returns is what is read back.
    assert_eq!((opened.created_at, opened.updated_at), (at(0), at(0)));
    let read = payments::payment_by_key(conn, "pay-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, opened);
    assert!(
        payments::payment_by_key(conn, "pay-404")
            .await
            .unwrap()
            .is_none()
    );

    // Listed by order, oldest first, whatever the order of their ids.
    let earlier = payments::open(
        conn,
        &new_payment("pay-0", "order-1", 99),
        &PaymentPolicy::default(),
        at(-10),
    )
    .await
    .unwrap();
    payments::open(
        conn,
        &new_payment("pay-other", "order-2", 1),
        &PaymentPolicy::default(),
        at(0),
    )
    .await
    .unwrap();
    let listed = payments::payments_for_order(conn, "order-1").await.unwrap();
    assert_eq!(listed, [earlier, read]);
    assert!(
        payments::payments_for_order(conn, "order-404")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        payments::refunds_for(conn, listed[0].id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn invalid_payments_are_refused_and_nothing_is_stored(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let cases: Vec<(&str, NewPayment)> = vec![
        ("amount_minor", new_payment("k-1", "order-bad", 0)),
        ("amount_minor", new_payment("k-2", "order-bad", -100)),
        ("idempotency_key", new_payment("", "order-bad", 100)),
        (
            "idempotency_key",
            new_payment(&"k".repeat(256), "order-bad", 100),
        ),
        ("idempotency_key", new_payment("k-3 ", "order-bad", 100)),
        ("order_reference", new_payment("k-4", "", 100)),
        (
            "customer_id",
            NewPayment {
                customer_id: String::new(),
                ..new_payment("k-5", "order-bad", 100)
            },
        ),
        (
            "currency",
            NewPayment {
                currency: "eur".to_owned(),
                ..new_payment("k-6", "order-bad", 100)
            },
        ),
        (
            "currency",
            NewPayment {
                currency: "EURO".to_owned(),
                ..new_payment("k-7", "order-bad", 100)
            },
        ),
    ];
    for (field, new) in cases {
        let err = payments::open(conn, &new, &PaymentPolicy::default(), at(0))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid(ref why) if why.starts_with(field)),
            "{field}: {err}"
        );
    }
    assert!(
        payments::payments_for_order(conn, "order-bad")
            .await
            .unwrap()
            .is_empty()
    );
    // The longest key is fine.
    let longest = "k".repeat(255);
    let opened = payments::open(
        conn,
        &new_payment(&longest, "order-bad", 100),
        &PaymentPolicy::default(),
        at(0),
    )
    .await
    .unwrap();
    assert_eq!(opened.idempotency_key, longest);
}

async fn large_payments_need_a_verified_customer(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let policy = PaymentPolicy::default();
    assert!(!payments::is_verified(conn, "customer-1").await.unwrap());
    let at_threshold = payments::open(conn, &new_payment("small", "o", 100_000), &policy, at(0))
        .await
        .unwrap();
    assert_eq!(at_threshold.status, PaymentStatus::Pending);

    let err = payments::open(conn, &new_payment("large", "o", 100_001), &policy, at(0))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VerificationRequired {
                ref customer_id,
                amount_minor: 100_001,
                threshold_minor: 100_000,
            } if customer_id == "customer-1"
        ),
        "{err}"
    );
    assert!(
        payments::payment_by_key(conn, "large")
            .await
            .unwrap()
            .is_none()
    );

    assert!(
        payments::verify_customer(conn, "customer-1", at(1))
            .await
            .unwrap()
    );
    // Idempotent: the first verification's time stays.
    assert!(
        !payments::verify_customer(conn, "customer-1", at(2))
            .await
            .unwrap()
    );
    assert_eq!(
        payments::verified_at(conn, "customer-1").await.unwrap(),
        Some(at(1))
    );
    assert_eq!(
        payments::verified_at(conn, "customer-9").await.unwrap(),
        None
    );
    assert!(payments::is_verified(conn, "customer-1").await.unwrap());
    assert!(!payments::is_verified(conn, "Customer-1").await.unwrap());
    let large = payments::open(conn, &new_payment("large", "o", 100_001), &policy, at(3))
        .await
        .unwrap();
    assert_eq!(large.amount_minor, 100_001);

    // Another customer, and another threshold.
    let strict = PaymentPolicy {
        verification_threshold_minor: 10,
    };
    let other = NewPayment {
        customer_id: "customer-2".to_owned(),
        ..new_payment("other", "o", 11)
    };
    let err = payments::open(conn, &other, &strict, at(4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VerificationRequired {
                threshold_minor: 10,
                ..
            }
        ),
        "{err}"
    );

    let err = payments::verify_customer(conn, " customer-3", at(5))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

async fn opening_again_with_a_key_returns_its_payment_or_refuses(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let policy = PaymentPolicy::default();
    let first = payments::open(conn, &new_payment("pay-1", "order-1", 500), &policy, at(0))
        .await
        .unwrap();
    let again = payments::open(conn, &new_payment("pay-1", "order-1", 500), &policy, at(60))
        .await
        .unwrap();
    assert_eq!(again, first);

    let changed = [
        new_payment("pay-1", "order-1", 501),
        new_payment("pay-1", "order-2", 500),
        NewPayment {
            customer_id: "customer-2".to_owned(),
            ..new_payment("pay-1", "order-1", 500)
        },
        NewPayment {
            currency: "USD".to_owned(),
            ..new_payment("pay-1", "order-1", 500)
        },
    ];
    for new in changed {
        let err = payments::open(conn, &new, &policy, at(60))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::KeyReused { ref key } if key == "pay-1"),
            "{new:?}: {err}"
        );
    }

    // The existing payment is returned whatever the policy says now.
    let strict = PaymentPolicy {
        verification_threshold_minor: 1,
    };
    let replayed = payments::open(conn, &new_payment("pay-1", "order-1", 500), &strict, at(90))
        .await
        .unwrap();
    assert_eq!(replayed, first);

    // Keys compare exactly (MariaDB's default collations would make these one key).
    let upper = payments::open(conn, &new_payment("PAY-1", "order-1", 700), &policy, at(0))
        .await
        .unwrap();
    assert_ne!(upper.id, first.id);
    let accented = payments::open(conn, &new_payment("päy-1", "order-1", 800), &policy, at(0))
        .await
        .unwrap();
    assert_ne!(accented.id, first.id);
    let listed = payments::payments_for_order(conn, "order-1").await.unwrap();
    let amounts: Vec<i64> = listed.iter().map(|p| p.amount_minor).collect();
    assert_eq!(amounts.len(), 3);
    assert_eq!(
        payments::payment_by_key(conn, "PAY-1")
            .await
            .unwrap()
            .unwrap()
            .amount_minor,
        700
    );
}

/// Errors of a unit of work that opens a payment.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Payments(#[from] Error),
    #[error(transparent)]
    Fabric(#[from] UnitOfWorkError),
}

async fn concurrent_opens_with_one_key_make_one_payment(db: TestDatabase) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let fabric = db.fabric().clone();
            tokio::spawn(async move {
                fabric
                    .unit_of_work("open_payment")
                    .run(async |uow| -> Result<_, RunError> {
                        uow.step(payments::SCHEMA, "open", async |tx| {
                            payments::open(
                                tx,
                                &new_payment("shared", "order-c", 4200),
                                &PaymentPolicy::default(),
                                at(i),
                            )
                            .await
                        })
                        .await
                    })
                    .await
            })
        })
        .collect();
    let mut opened: Vec<Payment> = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(done) => opened.push(done.value),
            Err(err) => panic!("an open failed: {err}"),
        }
    }
    assert_eq!(opened.len(), 16);
    let first = &opened[0];
    assert!(
        opened.iter().all(|p| p == first),
        "different payments: {opened:?}"
    );
    let stored = payments::payments_for_order(db.connection(payments::SCHEMA), "order-c")
        .await
        .unwrap();
    assert_eq!(stored, std::slice::from_ref(first));
}

async fn charges_are_recorded_once_from_pending(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let policy = PaymentPolicy::default();
    payments::open(conn, &new_payment("pay-c", "order-1", 900), &policy, at(0))
        .await
        .unwrap();
    let charged_payment = payments::record_charge(conn, "pay-c", &charged("ch_1"), at(10))
        .await
        .unwrap();
    assert_eq!(charged_payment.status, PaymentStatus::Charged);
    assert_eq!(charged_payment.gateway_reference.as_deref(), Some("ch_1"));
    assert_eq!(charged_payment.decline_reason, None);
    assert_eq!(
        (charged_payment.created_at, charged_payment.updated_at),
        (at(0), at(10))
    );
    assert_eq!(
        payments::payment_by_key(conn, "pay-c").await.unwrap(),
        Some(charged_payment.clone())
    );

    // Idempotent: the same answer again changes nothing.
    let again = payments::record_charge(conn, "pay-c", &charged("ch_1"), at(20))
        .await
        .unwrap();
    assert_eq!(again, charged_payment);

    let declined = ChargeOutcome::Declined {
        reason: "insufficient funds".to_owned(),
    };
    let err = payments::record_charge(conn, "pay-c", &declined, at(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                ref key,
                from: PaymentStatus::Charged,
                to: PaymentStatus::Declined,
            } if key == "pay-c"
        ),
        "{err}"
    );

    payments::open(conn, &new_payment("pay-d", "order-1", 900), &policy, at(0))
        .await
        .unwrap();
    let declined_payment = payments::record_charge(conn, "pay-d", &declined, at(10))
        .await
        .unwrap();
    assert_eq!(declined_payment.status, PaymentStatus::Declined);
    assert_eq!(
        declined_payment.decline_reason.as_deref(),
        Some("insufficient funds")
    );
    assert_eq!(declined_payment.gateway_reference, None);
    assert_eq!(
        payments::record_charge(conn, "pay-d", &declined, at(20))
            .await
            .unwrap(),
        declined_payment
    );
    let err = payments::record_charge(conn, "pay-d", &charged("ch_2"), at(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: PaymentStatus::Declined,
                to: PaymentStatus::Charged,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        payments::payment_by_key(conn, "pay-d").await.unwrap(),
        Some(declined_payment)
    );

    let err = payments::record_charge(conn, "pay-404", &charged("ch_3"), at(0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownPayment { ref key } if key == "pay-404"),
        "{err}"
    );
    let err = payments::record_charge(conn, "pay-d", &charged(""), at(0))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

async fn refunds_and_voids_are_recorded_once(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let policy = PaymentPolicy::default();
    let refunded = RefundOutcome::Refunded {
        reference: "re_1".to_owned(),
    };
    for key in ["charged", "pending", "declined", "lost-answer", "voided"] {
        payments::open(conn, &new_payment(key, "order-r", 700), &policy, at(0))
            .await
            .unwrap();
    }
    payments::record_charge(conn, "charged", &charged("ch_1"), at(1))
        .await
        .unwrap();
    let decline = ChargeOutcome::Declined {
        reason: "no".to_owned(),
    };
    payments::record_charge(conn, "declined", &decline, at(1))
        .await
        .unwrap();

    // charged → refunded, with a refund of the whole amount.
    let after = payments::record_refund(conn, "charged", &refunded, at(2))
        .await
        .unwrap();
    assert_eq!(after.status, PaymentStatus::Refunded);
    assert_eq!(after.gateway_reference.as_deref(), Some("ch_1"));
    assert_eq!(after.updated_at, at(2));
    let refunds = payments::refunds_for(conn, after.id).await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0].payment_id,
            refunds[0].amount_minor,
            refunds[0].gateway_reference.as_str(),
            refunds[0].created_at
        ),
        (after.id, 700, "re_1", at(2))
    );
    // Idempotent: no second refund.
    assert_eq!(
        payments::record_refund(conn, "charged", &refunded, at(3))
            .await
            .unwrap(),
        after
    );
    assert_eq!(
        payments::refunds_for(conn, after.id).await.unwrap(),
        refunds
    );
    let err = payments::record_refund(conn, "charged", &RefundOutcome::NothingCharged, at(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: PaymentStatus::Refunded,
                to: PaymentStatus::Voided,
                ..
            }
        ),
        "{err}"
    );

    // pending or declined → voided when nothing was charged.
    for key in ["pending", "declined"] {
        let voided = payments::record_refund(conn, key, &RefundOutcome::NothingCharged, at(4))
            .await
            .unwrap();
        assert_eq!(voided.status, PaymentStatus::Voided, "{key}");
        assert_eq!(
            payments::record_refund(conn, key, &RefundOutcome::NothingCharged, at(5))
                .await
                .unwrap(),
            voided
        );
        assert!(
            payments::refunds_for(conn, voided.id)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let err = payments::record_refund(conn, "pending", &refunded, at(6))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: PaymentStatus::Voided,
                to: PaymentStatus::Refunded,
                ..
            }
        ),
        "{err}"
    );
    let err = payments::record_charge(conn, "pending", &charged("ch_late"), at(6))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: PaymentStatus::Voided,
                to: PaymentStatus::Charged,
                ..
            }
        ),
        "{err}"
    );

    // pending → refunded: the charge happened, its answer was lost.
    let lost = payments::record_refund(conn, "lost-answer", &refunded, at(7))
        .await
        .unwrap();
    assert_eq!(lost.status, PaymentStatus::Refunded);
    assert_eq!(payments::refunds_for(conn, lost.id).await.unwrap().len(), 1);

    // charged, then "nothing charged": the records disagree, refused.
    payments::record_charge(conn, "voided", &charged("ch_2"), at(1))
        .await
        .unwrap();
    let err = payments::record_refund(conn, "voided", &RefundOutcome::NothingCharged, at(8))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidTransition {
                from: PaymentStatus::Charged,
                to: PaymentStatus::Voided,
                ..
            }
        ),
        "{err}"
    );

    let err = payments::record_refund(conn, "nope", &RefundOutcome::NothingCharged, at(9))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownPayment { ref key } if key == "nope"),
        "{err}"
    );
}

async fn the_gateway_charges_each_key_once(db: TestDatabase) {
    let gateway = gateway(&db, SimulatedGatewayOptions::default());
    let request = charge_request("charge-1", 1250);
    let first = gateway.charge(&request).await.unwrap();
    let ChargeOutcome::Charged { ref reference } = first else {
        panic!("declined: {first:?}");
    };
    assert!(reference.starts_with("ch_"), "{reference}");
    let second = gateway.charge(&request).await.unwrap();
    assert_eq!(second, first);

    // Another key is another charge.
    let other = gateway
        .charge(&charge_request("charge-2", 1250))
        .await
        .unwrap();
    assert_ne!(other, first);

    // The key with other parameters: refused for good.
    for changed in [
        charge_request("charge-1", 1251),
        ChargeRequest {
            currency: "USD".to_owned(),
            ..charge_request("charge-1", 1250)
        },
    ] {
        let err = gateway.charge(&changed).await.unwrap_err();
        assert!(
            matches!(err, GatewayError::Refused(_)) && !err.is_transient(),
            "{err}"
        );
    }
    let err = gateway
        .charge(&charge_request(" padded", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Refused(_)), "{err}");

    let recorded = requests(&db).await;
    assert_eq!(
        recorded.keys().map(String::as_str).collect::<Vec<_>>(),
        ["charge-1", "charge-2"]
    );
    let row = &recorded["charge-1"][0];
    assert_eq!(recorded["charge-1"].len(), 1);
    assert_eq!(
        (
            row.kind,
            row.outcome,
            row.amount_minor,
            row.currency.as_deref(),
            row.reference.as_deref(),
            row.charge_key.as_deref(),
        ),
        (
            GatewayRequestKind::Charge,
            GatewayRequestOutcome::Charged,
            1250,
            Some("EUR"),
            Some(reference.as_str()),
            None,
        )
    );
}

async fn concurrent_charges_with_one_key_charge_once(db: TestDatabase) {
    // The latency lines the requests up: they all reach the store at about one time.
    let gateway = gateway(
        &db,
        SimulatedGatewayOptions {
            latency: std::time::Duration::from_millis(50),
            ..SimulatedGatewayOptions::default()
        },
    );
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.charge(&charge_request("contended", 300)).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    assert!(
        outcomes.iter().all(|o| *o == outcomes[0]),
        "different outcomes: {outcomes:?}"
    );
    let recorded = requests(&db).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded["contended"].len(), 1);
    let ChargeOutcome::Charged { reference } = &outcomes[0] else {
        panic!("declined: {outcomes:?}");
    };
    assert_eq!(recorded["contended"][0].reference.as_ref(), Some(reference));
}

async fn the_gateway_declines_at_decline_rate_one(db: TestDatabase) {
    let declining = gateway(
        &db,
        SimulatedGatewayOptions {
            decline_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
    );
    let declined = ChargeOutcome::Declined {
        reason: "card declined (simulated)".to_owned(),
    };
    for i in 0..5 {
        let outcome = declining
            .charge(&charge_request(&format!("d-{i}"), 100))
            .await
            .unwrap();
        assert_eq!(outcome, declined);
    }
    // The decline is stored: a gateway that would charge now still answers it.
    let charging = gateway(&db, SimulatedGatewayOptions::default());
    assert_eq!(
        charging.charge(&charge_request("d-0", 100)).await.unwrap(),
        declined
    );
    let recorded = requests(&db).await;
    assert_eq!(recorded.len(), 5);
    for rows in recorded.values() {
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].outcome, GatewayRequestOutcome::Declined);
        assert_eq!(rows[0].reference, None);
        assert_eq!(rows[0].reason.as_deref(), Some("card declined (simulated)"));
    }
}

/// With `failure_rate` 1.0 every request fails, half before and half after recording
/// its effect. Retried with a gateway that does not fail, each key ends with exactly
/// one request, and a key whose effect was recorded answers with that effect.
async fn a_failed_request_is_recorded_or_not_and_a_retry_settles_it(db: TestDatabase) {
    let failing = gateway(
        &db,
        SimulatedGatewayOptions {
            failure_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
    );
    let keys: Vec<String> = (0..40).map(|i| format!("flaky-{i}")).collect();
    for key in &keys {
        let err = failing.charge(&charge_request(key, 500)).await.unwrap_err();
        assert!(
            matches!(err, GatewayError::Unavailable(_)) && err.is_transient(),
            "{key}: {err}"
        );
    }
    let before_retry = requests(&db).await;
    // 40 fair coin flips: both kinds of failure happened (all alike: 2 in 2^40).
    assert!(
        !before_retry.is_empty() && before_retry.len() < keys.len(),
        "{} of {} recorded",
        before_retry.len(),
        keys.len()
    );
    // The failing gateway fails again even on a key it recorded.
    let recorded_key = before_retry.keys().next().unwrap();
    assert!(
        failing
            .charge(&charge_request(recorded_key, 500))
            .await
            .is_err()
    );

    let working = gateway(&db, SimulatedGatewayOptions::default());
    for key in &keys {
        let outcome = working.charge(&charge_request(key, 500)).await.unwrap();
        let ChargeOutcome::Charged { reference } = outcome else {
            panic!("{key} declined");
        };
        if let Some(rows) = before_retry.get(key) {
            assert_eq!(rows[0].reference.as_ref(), Some(&reference), "{key}");
        }
    }
    let after_retry = requests(&db).await;
    assert_eq!(after_retry.keys().collect::<Vec<_>>(), {
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted
    });
    for (key, rows) in &after_retry {
        assert_eq!(rows.len(), 1, "{key}");
        assert_eq!(rows[0].outcome, GatewayRequestOutcome::Charged, "{key}");
    }
}

async fn refunds_give_back_only_what_was_charged(db: TestDatabase) {
    let gateway = gateway(&db, SimulatedGatewayOptions::default());
    let ChargeOutcome::Charged {
        reference: charge_reference,
    } = gateway
        .charge(&charge_request("ch-key", 1000))
        .await
        .unwrap()
    else {
        panic!("declined");
    };

    // A charged key: refunded, once per refund key.
    let refund = refund_request("re-key", "ch-key", 1000);
    let first = gateway.refund(&refund).await.unwrap();
    let RefundOutcome::Refunded { ref reference } = first else {
        panic!("nothing charged: {first:?}");
    };
    assert!(reference.starts_with("re_"), "{reference}");
    assert_eq!(gateway.refund(&refund).await.unwrap(), first);
    // Nothing is left of the charge for another refund key.
    let err = gateway
        .refund(&refund_request("re-key-2", "ch-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Refused(_)), "{err}");
    // The refund key with other parameters.
    let err = gateway
        .refund(&refund_request("re-key", "ch-key", 999))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Refused(_)), "{err}");
    // A refund key is not a charge key.
    let err = gateway
        .refund(&refund_request("re-of-re", "re-key", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Refused(_)), "{err}");

    // A key never charged: nothing to give back, and a charge arriving late under it
    // takes nothing.
    let never = gateway
        .refund(&refund_request("re-never", "never-charged", 400))
        .await
        .unwrap();
    assert_eq!(never, RefundOutcome::NothingCharged);
    let late = gateway
        .charge(&charge_request("never-charged", 400))
        .await
        .unwrap();
    assert!(
        matches!(late, ChargeOutcome::Declined { ref reason } if reason.contains("re-never")),
        "{late:?}"
    );

    // A declined charge: nothing to give back either.
    let declining = SimulatedGateway::new(
        db.connection(payments::SCHEMA).clone(),
        SimulatedGatewayOptions {
            decline_rate: 1.0,
            ..SimulatedGatewayOptions::default()
        },
    );
    declining
        .charge(&charge_request("declined", 250))
        .await
        .unwrap();
    assert_eq!(
        gateway
            .refund(&refund_request("re-declined", "declined", 250))
            .await
            .unwrap(),
        RefundOutcome::NothingCharged
    );

    let recorded = requests(&db).await;
    let summary: Vec<(
        &str,
        GatewayRequestKind,
        GatewayRequestOutcome,
        Option<&str>,
    )> = recorded
        .values()
        .flatten()
        .map(|r| (r.key.as_str(), r.kind, r.outcome, r.charge_key.as_deref()))
        .collect();
    use GatewayRequestKind::{Charge, Refund};
    use GatewayRequestOutcome::{Charged, Declined, NothingCharged, Refunded};
    assert_eq!(
        summary,
        [
            ("ch-key", Charge, Charged, None),
            ("declined", Charge, Declined, None),
            ("never-charged", Charge, Declined, None),
            ("re-declined", Refund, NothingCharged, Some("declined")),
            ("re-key", Refund, Refunded, Some("ch-key")),
            ("re-never", Refund, NothingCharged, Some("never-charged")),
        ]
    );
    assert_eq!(
        recorded["ch-key"][0].reference.as_ref(),
        Some(&charge_reference)
    );
    assert_eq!(recorded["re-key"][0].amount_minor, 1000);
    assert_eq!(recorded["re-key"][0].currency.as_deref(), Some("EUR"));
}

/// The ledger and the gateway together: open, charge, record, refund, record.
async fn a_payment_goes_through_the_gateway_and_back(db: TestDatabase) {
    let conn = db.connection(payments::SCHEMA);
    let gateway: Box<dyn PaymentGateway> =
        Box::new(gateway(&db, SimulatedGatewayOptions::default()));
    let payment = payments::open(
        conn,
        &new_payment("order-9:payment", "order-9", 4999),
        &PaymentPolicy::default(),
        at(0),
    )
    .await
    .unwrap();

    let charge = ChargeRequest::for_payment(&payment);
    assert_eq!(
        (
            charge.key.as_str(),
            charge.amount_minor,
            charge.currency.as_str(),
            charge.customer_id.as_str(),
            charge.reference.as_str()
        ),
        ("order-9:payment", 4999, "EUR", "customer-1", "order-9")
    );
    let outcome = gateway.charge(&charge).await.unwrap();
    let payment = payments::record_charge(conn, &payment.idempotency_key, &outcome, at(1))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Charged);
    let ChargeOutcome::Charged { reference } = &outcome else {
        panic!("declined");
    };
    assert_eq!(payment.gateway_reference.as_ref(), Some(reference));

    let refund = RefundRequest::for_payment(&payment);
    assert_eq!(refund.key, format!("refund:{}", payment.id));
    assert_eq!(
        (refund.charge_key.as_str(), refund.amount_minor),
        ("order-9:payment", 4999)
    );
    let outcome = gateway.refund(&refund).await.unwrap();
    let payment = payments::record_refund(conn, &payment.idempotency_key, &outcome, at(2))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Refunded);
    let refunds = payments::refunds_for(conn, payment.id).await.unwrap();
    let RefundOutcome::Refunded { reference } = &outcome else {
        panic!("nothing charged");
    };
    assert_eq!(refunds.len(), 1);
    assert_eq!(&refunds[0].gateway_reference, reference);
    assert_eq!(refunds[0].amount_minor, 4999);
}
