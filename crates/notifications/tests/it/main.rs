//! The integration tests of notifications, run on SQLite, PostgreSQL and MariaDB.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use notifications::{
    Attempt, Error, FileSender, Message, NewNotification, Recipient, Sender, Status,
};
use orchestration::testing::TestDatabase;
use serde_json::json;

orchestration::engine_tests! {
    boundaries: [migrations::notifications()];
    a_notification_is_queued_once_per_cause_recipient_and_template,
    a_claim_is_won_once_and_attempts_are_recorded_until_sent_or_dead,
    concurrent_claims_of_one_notification_have_one_winner,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn new(cause: &str, to: &str) -> NewNotification {
    NewNotification {
        cause: cause.to_owned(),
        recipient: Recipient::parse(to).unwrap(),
        template: "order_confirmed".to_owned(),
        data: json!({"order_id": "o-1", "currency": "EUR", "total": "30.00", "lines": []}),
    }
}

async fn a_notification_is_queued_once_per_cause_recipient_and_template(db: TestDatabase) {
    let conn = db.connection(notifications::SCHEMA);
    let at = now();
    let (first, created) = notifications::enqueue(conn, &new("event-1", "a@example.com"), at)
        .await
        .unwrap();
    assert!(created);
    let (again, created) = notifications::enqueue(conn, &new("event-1", "a@example.com"), at)
        .await
        .unwrap();
    assert_eq!(
        (again, created),
        (first, false),
        "a redelivered event queues nothing"
    );
    let (other, created) = notifications::enqueue(conn, &new("event-1", "b@example.com"), at)
        .await
        .unwrap();
    assert!(created && other != first);
    let stored = notifications::get(conn, first).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Pending);
    assert_eq!((stored.channel.as_str(), stored.attempts), ("email", 0));
    assert_eq!(stored.data["total"], "30.00");
    let mut long = new(&"c".repeat(256), "a@example.com");
    assert!(matches!(
        notifications::enqueue(conn, &long, at).await,
        Err(Error::Invalid(_))
    ));
    long.cause = "event-2".to_owned();
    long.template = String::new();
    assert!(notifications::enqueue(conn, &long, at).await.is_err());
    for bad in [
        "",
        "no-at",
        "a@b@c",
        "a b@example.com",
        "@example.com",
        "a@",
    ] {
        assert!(Recipient::parse(bad).is_err(), "{bad}");
    }
}

async fn a_claim_is_won_once_and_attempts_are_recorded_until_sent_or_dead(db: TestDatabase) {
    let conn = db.connection(notifications::SCHEMA);
    let at = now();
    let (id, _) = notifications::enqueue(conn, &new("event-1", "a@example.com"), at)
        .await
        .unwrap();
    let due = notifications::due(conn, at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        notifications::claim(conn, &due[0], at + Duration::seconds(30))
            .await
            .unwrap()
    );
    // The same snapshot again: another deliverer lost the race.
    assert!(
        !notifications::claim(conn, &due[0], at + Duration::seconds(30))
            .await
            .unwrap()
    );
    // Claimed: not due while the attempt may run.
    assert!(
        notifications::due(conn, at + Duration::seconds(10), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let retry_at = at + Duration::seconds(5);
    let failed = Attempt::Failed {
        error: "connection refused".to_owned(),
        retry_at: Some(retry_at),
    };
    notifications::record_attempt(conn, id, 1, &failed, at)
        .await
        .unwrap();
    let stored = notifications::get(conn, id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Pending);
    assert_eq!(stored.last_error.as_deref(), Some("connection refused"));
    assert_eq!(stored.next_attempt_at, retry_at);
    let due = notifications::due(conn, retry_at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(
        notifications::claim(conn, &due[0], retry_at + Duration::seconds(30))
            .await
            .unwrap()
    );
    notifications::record_attempt(conn, id, 2, &Attempt::Sent, retry_at)
        .await
        .unwrap();
    let sent = notifications::get(conn, id).await.unwrap().unwrap();
    assert_eq!((sent.status, sent.attempts), (Status::Sent, 2));
    assert_eq!(sent.sent_at, Some(retry_at));
    assert!(
        notifications::due(conn, retry_at + Duration::hours(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let attempts = notifications::attempts_of(conn, id).await.unwrap();
    let outcomes: Vec<(&str, Option<&str>)> = attempts
        .iter()
        .map(|a| (a.outcome.as_str(), a.error.as_deref()))
        .collect();
    assert_eq!(
        outcomes,
        [("failed", Some("connection refused")), ("sent", None)]
    );

    // Without a retry, a failure is the end.
    let (dead, _) = notifications::enqueue(conn, &new("event-2", "a@example.com"), at)
        .await
        .unwrap();
    let due = notifications::due(conn, at, 10).await.unwrap();
    assert!(notifications::claim(conn, &due[0], at).await.unwrap());
    let given_up = Attempt::Failed {
        error: "mailbox unknown".to_owned(),
        retry_at: None,
    };
    notifications::record_attempt(conn, dead, 1, &given_up, at)
        .await
        .unwrap();
    let stored = notifications::get(conn, dead).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Dead);
    assert!(
        notifications::due(conn, at + Duration::days(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        notifications::for_recipient(conn, "a@example.com", 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn concurrent_claims_of_one_notification_have_one_winner(db: TestDatabase) {
    let conn = db.connection(notifications::SCHEMA).clone();
    let at = now();
    notifications::enqueue(&conn, &new("event-1", "a@example.com"), at)
        .await
        .unwrap();
    let seen = notifications::due(&conn, at, 1).await.unwrap().remove(0);
    let claims: Vec<_> = (0..8)
        .map(|_| {
            let (conn, seen) = (conn.clone(), seen.clone());
            tokio::spawn(async move {
                notifications::claim(&conn, &seen, at + Duration::seconds(30)).await
            })
        })
        .collect();
    let mut won = 0;
    for claim in claims {
        if claim.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

#[test]
fn templates_render_with_their_data_and_refuse_without_it() {
    let rendered = notifications::render(
        "order_confirmed",
        &json!({
            "order_id": "o-1", "currency": "EUR", "total": "30.00",
            "lines": [{"sku": "WIDGET-1", "quantity": 2}]
        }),
    )
    .unwrap();
    assert_eq!(rendered.subject, "Your order o-1 is confirmed");
    assert!(rendered.body.contains("30.00 EUR"), "{}", rendered.body);
    assert!(rendered.body.contains("2 x WIDGET-1"), "{}", rendered.body);
    assert!(matches!(
        notifications::render("order_confirmed", &json!({})),
        Err(Error::Template(_))
    ));
    assert!(matches!(
        notifications::render("nope", &json!({})),
        Err(Error::Invalid(_))
    ));
}

#[tokio::test]
async fn the_file_sender_writes_a_message_a_person_can_read_once_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let sender = FileSender::new(dir.path().join("mail"));
    let message = Message {
        id: uuid::Uuid::now_v7(),
        to: "a@example.com".to_owned(),
        subject: "Hello".to_owned(),
        body: "Hi there.\n".to_owned(),
        created_at: now(),
    };
    sender.send(&message).await.unwrap();
    sender.send(&message).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(sender.dir()).unwrap().collect();
    assert_eq!(files.len(), 1, "sent twice, one file");
    let text = std::fs::read_to_string(sender.path_of(message.id)).unwrap();
    assert!(
        text.contains("To: a@example.com\nSubject: Hello\n"),
        "{text}"
    );
    assert!(text.ends_with("\n\nHi there.\n"), "{text}");
    // A directory that cannot be made: a transient failure, named.
    let blocked = FileSender::new(sender.path_of(message.id).join("sub"));
    let err = blocked.send(&message).await.unwrap_err();
    assert!(
        !err.permanent && err.message.contains("cannot write"),
        "{err}"
    );
}

/// A minimal SMTP server on a free local port, as a relay: it answers each session's
/// commands, refusing every recipient with 550 when `refuse` is set, and hands over
/// each accepted message's text.
async fn smtp_relay(refuse: bool) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (received, messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 relay.test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let command = line.to_ascii_uppercase();
                    let reply: &[u8] = if command.starts_with("EHLO") || command.starts_with("HELO")
                    {
                        b"250 relay.test\r\n"
                    } else if command.starts_with("RCPT") && refuse {
                        b"550 5.1.1 no such user\r\n"
                    } else if command.starts_with("DATA") {
                        write.write_all(b"354 end with .\r\n").await.unwrap();
                        let mut text = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            text.push_str(&line);
                            text.push('\n');
                        }
                        let _ = received.send(text);
                        b"250 2.0.0 queued\r\n"
                    } else if command.starts_with("QUIT") {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, messages)
}

fn message() -> Message {
    Message {
        id: uuid::Uuid::now_v7(),
        to: "ann@example.com".to_owned(),
        subject: "Your order is confirmed".to_owned(),
        body: "Thank you.\n".to_owned(),
        created_at: now(),
    }
}

#[tokio::test]
async fn the_smtp_sender_delivers_through_a_relay_and_tells_refusals_from_outages() {
    let timeout = std::time::Duration::from_secs(5);
    let (port, mut received) = smtp_relay(false).await;
    let sender =
        notifications::SmtpSender::new("127.0.0.1", port, "Switchyard <shop@example.com>", timeout)
            .unwrap();
    let sent = message();
    sender.send(&sent).await.unwrap();
    let text = received.recv().await.unwrap();
    assert!(text.contains("To: ann@example.com"), "{text}");
    assert!(
        text.contains("From: Switchyard <shop@example.com>"),
        "{text}"
    );
    assert!(text.contains("Subject: Your order is confirmed"), "{text}");
    assert!(
        text.contains(&format!("Message-ID: <{}@switchyard>", sent.id)),
        "{text}"
    );
    assert!(text.contains("Thank you."), "{text}");

    // A refused recipient is permanent: retrying cannot help.
    let (port, _) = smtp_relay(true).await;
    let refusing =
        notifications::SmtpSender::new("127.0.0.1", port, "shop@example.com", timeout).unwrap();
    let err = refusing.send(&message()).await.unwrap_err();
    assert!(err.permanent, "{err}");
    // No relay at all: transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down =
        notifications::SmtpSender::new("127.0.0.1", port, "shop@example.com", timeout).unwrap();
    let err = down.send(&message()).await.unwrap_err();
    assert!(!err.permanent, "{err}");
    assert!(notifications::SmtpSender::new("127.0.0.1", 25, "not a mailbox", timeout).is_err());
}
