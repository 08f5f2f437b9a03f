//! Notifications from the workflows on every engine: a placed order notifies its
//! customer once, through the file sender; a sender that keeps failing leaves the order
//! as it was, and the notification is retried with backoff, then dead.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::Utc;
use identity::{AccountKind, AccountStatus, DisplayName, Email, NewAccount};
use notifications::{FileSender, Message, SendError, SendFuture, Sender, Status};
use orchestration::host::{Host, Policy, Schedule};
use orchestration::testing::{Scenario, TestDatabase};
use orders::CustomerId;
use workflows::{DeliverNotifications, DeliveryPolicy, PlaceOrderCommand};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    a_placed_order_notifies_its_customer_once,
    a_failing_sender_is_retried_then_gives_up_and_the_order_stands,
    two_deliverers_send_each_notification_once,
}

/// A customer account; its id as the orders' customer id.
async fn customer(db: &TestDatabase, email: &str) -> CustomerId {
    let account = identity::create_account(
        db.connection(identity::SCHEMA),
        &NewAccount {
            email: Email::parse(email).unwrap(),
            display_name: DisplayName::parse("C").unwrap(),
            kind: AccountKind::Customer,
            status: AccountStatus::Active,
        },
        Utc::now(),
    )
    .await
    .unwrap();
    CustomerId::parse(&account.id.to_string()).unwrap()
}

fn quick(max_attempts: u32) -> DeliveryPolicy {
    DeliveryPolicy {
        batch: 10,
        attempt_timeout: StdDuration::from_secs(5),
        backoff_initial: StdDuration::from_millis(20),
        backoff_max: StdDuration::from_millis(100),
        max_attempts,
    }
}

/// Places an order of one `A` for `customer` and delivers its events and
/// notifications through `sender`.
async fn place_and_deliver(
    db: &TestDatabase,
    customer: CustomerId,
    sender: Arc<dyn Sender>,
    policy: DeliveryPolicy,
) -> (orchestration::host::RunningHost, uuid::Uuid) {
    super::add(db, "A", 1250, "EUR", 10).await;
    let workflow = super::workflow(db);
    let command = PlaceOrderCommand {
        customer_id: customer,
        lines: vec![(super::sku("A"), inventory::Quantity::new(2).unwrap())],
    };
    let placement = workflow.place(None, &command, super::WAIT).await.unwrap();
    let order = super::placed(&placement).id;
    (super::deliver(db.fabric(), sender, policy), order)
}

async fn a_placed_order_notifies_its_customer_once(db: TestDatabase) {
    let mail = tempfile::tempdir().unwrap();
    let sender = FileSender::new(mail.path());
    let customer = customer(&db, "ann@example.com").await;
    let (host, order) = place_and_deliver(&db, customer, Arc::new(sender.clone()), quick(3)).await;
    let conn = db.connection(notifications::SCHEMA);
    let sent = Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the confirmation sent",
            async |_| {
                notifications::for_recipient(conn, "ann@example.com", 10)
                    .await
                    .unwrap()
            },
            |sent| sent.iter().any(|n| n.status == Status::Sent),
        )
        .await;
    host.shutdown().await;
    assert_eq!(sent.len(), 1, "one notification: {sent:?}");
    let text = std::fs::read_to_string(sender.path_of(sent[0].id)).unwrap();
    assert!(text.contains("To: ann@example.com"), "{text}");
    assert!(
        text.contains(&format!("Subject: Your order {order} is confirmed")),
        "{text}"
    );
    assert!(
        text.contains("25.00 EUR") && text.contains("2 x A"),
        "{text}"
    );
}

/// Fails every send, counting them.
#[derive(Debug, Default)]
struct Refusing(Mutex<u32>);

impl Sender for Refusing {
    fn send<'a>(&'a self, _message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            *self.0.lock().unwrap() += 1;
            Err(SendError::transient("the mail server is down"))
        })
    }
}

async fn a_failing_sender_is_retried_then_gives_up_and_the_order_stands(db: TestDatabase) {
    let customer = customer(&db, "bob@example.com").await;
    let refusing = Arc::new(Refusing::default());
    let (host, order) = place_and_deliver(&db, customer, refusing.clone(), quick(3)).await;
    let conn = db.connection(notifications::SCHEMA);
    let dead = Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the notification dead",
            async |_| {
                notifications::for_recipient(conn, "bob@example.com", 10)
                    .await
                    .unwrap()
            },
            |found| found.iter().any(|n| n.status == Status::Dead),
        )
        .await;
    host.shutdown().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(
        *refusing.0.lock().unwrap(),
        3,
        "three attempts, then no more"
    );
    let attempts = notifications::attempts_of(conn, dead[0].id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(
        attempts[2].error.as_deref(),
        Some("the mail server is down")
    );
    // The order is confirmed, whatever became of its notification.
    let stored = orders::get(db.connection(orders::SCHEMA), order)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, orders::OrderStatus::Confirmed);
}

/// Records what it sends.
#[derive(Debug, Default)]
struct Recording(Mutex<Vec<uuid::Uuid>>);

impl Sender for Recording {
    fn send<'a>(&'a self, message: &'a Message) -> SendFuture<'a> {
        Box::pin(async move {
            // Slow enough that the two deliverers' claims overlap.
            tokio::time::sleep(StdDuration::from_millis(2)).await;
            self.0.lock().unwrap().push(message.id);
            Ok(())
        })
    }
}

async fn two_deliverers_send_each_notification_once(db: TestDatabase) {
    let conn = db.connection(notifications::SCHEMA);
    let now = Utc::now();
    for i in 0..40 {
        let notification = notifications::NewNotification {
            cause: format!("event-{i}"),
            recipient: notifications::Recipient::parse("pat@example.com").unwrap(),
            template: "welcome".to_owned(),
            data: serde_json::json!({"display_name": "Pat"}),
        };
        notifications::enqueue(conn, &notification, now)
            .await
            .unwrap();
    }
    let sent = Arc::new(Recording::default());
    // Two instances on one database, each with its deliverer.
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let fabric = orchestration::Fabric::connect(db.topology(), migrations::all())
            .await
            .unwrap();
        let mut host = Host::new(fabric.databases());
        host.add_job(
            DeliverNotifications::new(&fabric, sent.clone(), quick(3)),
            Schedule::every(StdDuration::from_millis(10)),
            Policy::StopHost,
        )
        .unwrap();
        hosts.push((host.start(), fabric));
    }
    Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "every notification sent",
            async |_| {
                notifications::for_recipient(conn, "pat@example.com", 100)
                    .await
                    .unwrap()
            },
            |found| found.iter().all(|n| n.status == Status::Sent),
        )
        .await;
    for (host, fabric) in hosts {
        host.shutdown().await;
        fabric.close().await;
    }
    let mut ids = sent.0.lock().unwrap().clone();
    assert_eq!(ids.len(), 40, "each sent once: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
}
