//! Registration on every engine: a pending account, the verification mail with its
//! token, verification (active, welcome mail), registering again (pending: a new
//! token; active: nothing, the same answer), throttling, and the removal of
//! registrations never verified.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, SubsecRound, Utc};
use identity::{AccountStatus, DisplayName, Email, Password, ThrottlePolicy};
use notifications::{FileSender, Status};
use orchestration::host::{Host, Policy, RunningHost, Schedule};
use orchestration::testing::{Clock, Scenario, TestDatabase};
use sea_orm::ConnectionTrait;
use workflows::{
    ExpireRegistrations, MailSettings, Registering, Registration, RegistrationOutcome,
    RegistrationSettings, VerificationOutcome,
};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    a_registration_is_verified_by_the_token_mailed_to_it,
    registering_again_resends_to_a_pending_email_and_tells_nothing_of_an_active_one,
    registrations_are_throttled_per_client,
    concurrent_registrations_of_one_new_email_are_answered_alike,
    registrations_never_verified_are_removed,
}

const CHEAP: identity::PasswordPolicy = identity::PasswordPolicy {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn registration(fabric: &orchestration::Fabric, per_client: u32) -> Registration {
    Registration::new(
        fabric,
        RegistrationSettings {
            password: CHEAP,
            per_client: ThrottlePolicy {
                max_failures: per_client,
                window: Duration::hours(1),
            },
        },
    )
}

fn registering(email: &str) -> Registering {
    Registering {
        email: Email::parse(email).unwrap(),
        display_name: DisplayName::parse("Alice").unwrap(),
        password: Password::new("correct horse battery").unwrap(),
    }
}

/// Delivers events and notifications (to files under `mail`).
fn deliver(db: &TestDatabase, mail: &std::path::Path) -> RunningHost {
    let fabric = db.fabric();
    if fabric.events().subscribers().is_empty() {
        workflows::subscribe(fabric, &MailSettings::default()).unwrap();
    }
    super::deliver(
        fabric,
        Arc::new(FileSender::new(mail)),
        workflows::DeliveryPolicy::default(),
    )
}

/// The sent mails to `email` with `template`, as their files' text, once there are
/// `count`.
async fn mails(
    db: &TestDatabase,
    mail: &std::path::Path,
    email: &str,
    template: &str,
    count: usize,
) -> Vec<String> {
    let conn = db.connection(notifications::SCHEMA);
    let sent = Scenario::new(db.fabric())
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            &format!("{count} {template} mails to {email}"),
            async |_| {
                notifications::for_recipient(conn, email, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|n| n.template == template && n.status == Status::Sent)
                    .collect::<Vec<_>>()
            },
            |sent| sent.len() >= count,
        )
        .await;
    sent.iter()
        .map(|n| std::fs::read_to_string(mail.join(format!("{}.eml", n.id))).unwrap())
        .collect()
}

/// The token in a verification mail.
fn token_in(mail: &str) -> String {
    mail.lines()
        .find_map(|line| line.strip_prefix("Your verification token: "))
        .unwrap_or_else(|| panic!("no token in {mail}"))
        .trim()
        .to_owned()
}

async fn status_of(db: &TestDatabase, email: &str) -> Option<AccountStatus> {
    identity::find_account_by_email(
        db.connection(identity::SCHEMA),
        &Email::parse(email).unwrap(),
    )
    .await
    .unwrap()
    .map(|a| a.status)
}

async fn a_registration_is_verified_by_the_token_mailed_to_it(db: TestDatabase) {
    let dir = tempfile::tempdir().unwrap();
    let host = deliver(&db, dir.path());
    let registration = registration(db.fabric(), 10);
    let outcome = registration
        .register(registering("Alice@Example.com"), "c1")
        .await
        .unwrap();
    assert_eq!(outcome, RegistrationOutcome::Accepted);
    assert_eq!(
        status_of(&db, "alice@example.com").await,
        Some(AccountStatus::Pending)
    );
    let mail = mails(&db, dir.path(), "alice@example.com", "verify_email", 1).await;
    assert!(
        mail[0].contains("Subject: Verify your email"),
        "{}",
        mail[0]
    );
    let token = token_in(&mail[0]);
    // The token is stored only as its hash.
    let conn = db.connection(identity::SCHEMA);
    let stored = conn
        .query_all_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT token_hash FROM identity.verification_tokens",
        ))
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let hash: String = stored[0].try_get("", "token_hash").unwrap();
    assert_ne!(hash, token);

    assert_eq!(
        registration.verify("nonsense").await.unwrap(),
        VerificationOutcome::InvalidToken
    );
    let VerificationOutcome::Verified(account) = registration.verify(&token).await.unwrap() else {
        panic!("not verified");
    };
    assert_eq!(account.status, AccountStatus::Active);
    assert_eq!(
        registration.verify(&token).await.unwrap(),
        VerificationOutcome::InvalidToken,
        "once"
    );
    let welcome = mails(&db, dir.path(), "alice@example.com", "welcome", 1).await;
    assert!(
        welcome[0].contains("Subject: Welcome to Switchyard"),
        "{}",
        welcome[0]
    );
    assert!(welcome[0].contains("Hello Alice"), "{}", welcome[0]);
    assert_eq!(
        identity::abilities_of(conn, account.id)
            .await
            .unwrap()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect::<Vec<_>>(),
        ["orders.place"]
    );
    host.shutdown().await;
}

async fn registering_again_resends_to_a_pending_email_and_tells_nothing_of_an_active_one(
    db: TestDatabase,
) {
    let dir = tempfile::tempdir().unwrap();
    let host = deliver(&db, dir.path());
    let registration = registration(db.fabric(), 10);
    registration
        .register(registering("bob@example.com"), "c1")
        .await
        .unwrap();
    let first = token_in(&mails(&db, dir.path(), "bob@example.com", "verify_email", 1).await[0]);
    // Pending: a new token; the first stops working.
    let again = registration
        .register(registering("bob@example.com"), "c1")
        .await
        .unwrap();
    assert_eq!(again, RegistrationOutcome::Accepted);
    let both = mails(&db, dir.path(), "bob@example.com", "verify_email", 2).await;
    let second = token_in(&both[1]);
    assert_ne!(first, second);
    assert_eq!(
        registration.verify(&first).await.unwrap(),
        VerificationOutcome::InvalidToken
    );
    assert!(matches!(
        registration.verify(&second).await.unwrap(),
        VerificationOutcome::Verified(_)
    ));
    mails(&db, dir.path(), "bob@example.com", "welcome", 1).await;
    // Active: the same answer, and no mail.
    let active = registration
        .register(registering("bob@example.com"), "c1")
        .await
        .unwrap();
    assert_eq!(active, RegistrationOutcome::Accepted);
    tokio::time::sleep(StdDuration::from_millis(500)).await;
    host.shutdown().await;
    let sent =
        notifications::for_recipient(db.connection(notifications::SCHEMA), "bob@example.com", 100)
            .await
            .unwrap();
    assert_eq!(sent.len(), 3, "two verifications and a welcome: {sent:?}");
    assert_eq!(
        status_of(&db, "bob@example.com").await,
        Some(AccountStatus::Active)
    );
}

async fn registrations_are_throttled_per_client(db: TestDatabase) {
    let registration = registration(db.fabric(), 3);
    for i in 0..3 {
        let outcome = registration
            .register(registering(&format!("r{i}@example.com")), "busy")
            .await
            .unwrap();
        assert_eq!(outcome, RegistrationOutcome::Accepted);
    }
    let throttled = registration
        .register(registering("r9@example.com"), "busy")
        .await
        .unwrap();
    assert!(
        matches!(throttled, RegistrationOutcome::Throttled { .. }),
        "{throttled:?}"
    );
    assert_eq!(status_of(&db, "r9@example.com").await, None);
    let elsewhere = registration
        .register(registering("r9@example.com"), "calm")
        .await
        .unwrap();
    assert_eq!(elsewhere, RegistrationOutcome::Accepted);
}

async fn concurrent_registrations_of_one_new_email_are_answered_alike(db: TestDatabase) {
    let registration = registration(db.fabric(), 100);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let registration = registration.clone();
            tokio::spawn(async move {
                registration
                    .register(registering("twin@example.com"), &format!("client-{i}"))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap();
        assert!(
            matches!(outcome, Ok(RegistrationOutcome::Accepted)),
            "every one answered 202 alike: {outcome:?}"
        );
    }
    assert_eq!(
        status_of(&db, "twin@example.com").await,
        Some(AccountStatus::Pending),
        "one pending account"
    );
}

async fn registrations_never_verified_are_removed(db: TestDatabase) {
    let start = Utc::now().trunc_subsecs(6);
    let (clock, time) = Clock::manual(start);
    let fabric = db.fabric_with_clock(clock).await;
    workflows::subscribe(&fabric, &MailSettings::default()).unwrap();
    let registration = registration(&fabric, 10);
    registration
        .register(registering("late@example.com"), "c1")
        .await
        .unwrap();
    let ttl = Duration::hours(24);
    let mut host = Host::new(fabric.databases());
    host.add(
        orchestration::dispatch::Dispatcher::new(
            fabric.events(),
            orchestration::dispatch::DispatcherOptions::default(),
        ),
        Policy::StopHost,
    )
    .unwrap();
    host.add_job(
        ExpireRegistrations::new(&fabric, ttl, 100),
        Schedule::every(StdDuration::from_secs(60)),
        Policy::StopHost,
    )
    .unwrap();
    let host = host.start();
    // The verification mail is queued (its token issued) ...
    let conn = db.connection(notifications::SCHEMA);
    Scenario::new(&fabric)
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the verification queued",
            async |_| {
                notifications::for_recipient(conn, "late@example.com", 10)
                    .await
                    .unwrap()
            },
            |queued| !queued.is_empty(),
        )
        .await;
    // ... and within its day nothing is removed.
    time.advance(StdDuration::from_secs(23 * 3600));
    tokio::time::sleep(StdDuration::from_millis(300)).await;
    assert_eq!(
        status_of(&db, "late@example.com").await,
        Some(AccountStatus::Pending)
    );
    time.advance(StdDuration::from_secs(2 * 3600));
    Scenario::new(&fabric)
        .within(StdDuration::from_secs(30))
        .wait_for_state(
            "the registration removed",
            async |_| status_of(&db, "late@example.com").await,
            Option::is_none,
        )
        .await;
    host.shutdown().await;
}
