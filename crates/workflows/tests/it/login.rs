//! The login sequence on every engine: password, TOTP, the outcomes as values, the
//! audit intent of each attempt, and throttling that holds across instances.

use chrono::{Duration, SubsecRound, Utc};
use identity::{
    AccountId, AccountKind, AccountStatus, DisplayName, Email, NewAccount, Password,
    PasswordPolicy, ThrottlePolicy, TotpConfirmation,
};
use orchestration::Fabric;
use orchestration::testing::{Clock, TestDatabase, TimeMachine};
use workflows::{LOGIN_ATTEMPTED, Login, LoginOutcome, LoginSettings, PasswordStep, TotpStep};

orchestration::engine_tests! {
    boundaries: (migrations::all());
    a_right_password_starts_a_session_and_every_attempt_is_an_audit_intent,
    an_unknown_email_and_a_wrong_password_get_the_same_answer,
    an_account_with_totp_needs_a_valid_unused_code,
    an_account_that_may_not_log_in_is_told_so_only_with_the_right_password,
    failures_are_throttled_per_email_across_instances_until_the_window_ends,
    racing_attempts_accept_a_code_once_and_all_get_an_answer,
}

const PASSWORD: &str = "correct horse battery";

fn settings() -> LoginSettings {
    LoginSettings {
        // Cheap hashes keep the tests fast; the code path is the same.
        password: PasswordPolicy {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        per_email: ThrottlePolicy {
            max_failures: 3,
            window: Duration::minutes(15),
        },
        ..LoginSettings::default()
    }
}

async fn account(fabric: &Fabric, email: &str, status: AccountStatus) -> AccountId {
    let conn = fabric.connection(identity::SCHEMA).unwrap();
    let now = fabric.clock().now().trunc_subsecs(6);
    let new = NewAccount {
        email: Email::parse(email).unwrap(),
        display_name: DisplayName::parse("Alice").unwrap(),
        kind: AccountKind::Customer,
        status,
    };
    let id = identity::create_account(conn, &new, now).await.unwrap().id;
    let hash =
        identity::hash_password(&Password::new(PASSWORD).unwrap(), &settings().password).unwrap();
    identity::set_password(conn, id, &hash, now).await.unwrap();
    id
}

fn step<'a>(email: &'a str, password: &'a str) -> PasswordStep<'a> {
    PasswordStep {
        email,
        password,
        client: "203.0.113.7",
        user_agent: "tests",
    }
}

/// The challenge the password step of `email`'s account (which has TOTP) returns.
async fn challenge_of(login: &Login, email: &str) -> identity::ChallengeToken {
    match login.password(&step(email, PASSWORD)).await.unwrap() {
        LoginOutcome::TotpRequired { challenge } => challenge,
        other => panic!("TOTP is asked for: {other:?}"),
    }
}

/// The second step of `challenge` with `code`.
fn answer<'a>(challenge: &'a identity::ChallengeToken, code: &'a str) -> TotpStep<'a> {
    TotpStep {
        challenge: challenge.as_str(),
        code,
        client: "203.0.113.7",
        user_agent: "phone",
    }
}

/// A fabric on `db` whose clock the test moves.
async fn timed(db: &TestDatabase) -> (Fabric, TimeMachine) {
    let (clock, time) = Clock::manual(Utc::now().trunc_subsecs(6));
    (db.fabric_with_clock(clock).await, time)
}

async fn a_right_password_starts_a_session_and_every_attempt_is_an_audit_intent(db: TestDatabase) {
    workflows::subscribe(db.fabric(), &workflows::MailSettings::default()).unwrap();
    let fabric = db.fabric();
    let id = account(fabric, "alice@example.com", AccountStatus::Active).await;
    let login = Login::new(fabric, settings());
    let (outcome, attempted) = db
        .scenario()
        .stimulate(async || login.password(&step(" Alice@Example.com", PASSWORD)).await)
        .await
        .and_wait_for_event(LOGIN_ATTEMPTED, |e| e.outcome == "session_started")
        .await;
    let LoginOutcome::SessionStarted { session, token } = outcome.unwrap() else {
        panic!("a right password starts a session");
    };
    assert_eq!(session.account_id, id);
    assert_eq!(session.user_agent, "tests");
    assert_eq!(attempted.account_id, Some(id.to_string()));
    assert_eq!(attempted.email.as_deref(), Some("alice@example.com"));
    assert_eq!(attempted.client, "203.0.113.7");
    let conn = fabric.connection(identity::SCHEMA).unwrap();
    let opened = identity::authenticate(conn, &token, fabric.clock().now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.account.id, id);
}

async fn an_unknown_email_and_a_wrong_password_get_the_same_answer(db: TestDatabase) {
    workflows::subscribe(db.fabric(), &workflows::MailSettings::default()).unwrap();
    let fabric = db.fabric();
    account(fabric, "bob@example.com", AccountStatus::Active).await;
    let login = Login::new(fabric, settings());
    for (email, password) in [
        ("nobody@example.com", PASSWORD),
        ("bob@example.com", "not the password"),
        ("bob@example.com", ""),
        ("not an email", PASSWORD),
    ] {
        let (outcome, attempted) = db
            .scenario()
            .stimulate(async || login.password(&step(email, password)).await)
            .await
            .and_wait_for_event(LOGIN_ATTEMPTED, |_| true)
            .await;
        assert_eq!(
            outcome.unwrap(),
            LoginOutcome::InvalidCredentials,
            "{email}"
        );
        assert_eq!(attempted.outcome, "invalid_credentials");
    }
}

async fn an_account_with_totp_needs_a_valid_unused_code(db: TestDatabase) {
    let (fabric, time) = timed(&db).await;
    let id = account(&fabric, "carol@example.com", AccountStatus::Active).await;
    let conn = fabric.connection(identity::SCHEMA).unwrap();
    let enrolment = identity::enroll_totp(conn, id, "carol@example.com", time.now())
        .await
        .unwrap();
    let code = identity::totp_code(&enrolment.secret_base32, time.now()).unwrap();
    let TotpConfirmation::Confirmed { recovery_codes } =
        identity::confirm_totp(conn, id, &code, time.now())
            .await
            .unwrap()
    else {
        panic!("confirmed");
    };
    time.advance(std::time::Duration::from_secs(30));
    let login = Login::new(&fabric, settings());
    let challenge = challenge_of(&login, "carol@example.com").await;
    // The code that confirmed the enrolment was used; a wrong one is wrong.
    assert_eq!(
        login.totp(&answer(&challenge, &code)).await.unwrap(),
        LoginOutcome::InvalidCode
    );
    assert_eq!(
        login.totp(&answer(&challenge, "000000x")).await.unwrap(),
        LoginOutcome::InvalidCode
    );
    let fresh = identity::totp_code(&enrolment.secret_base32, time.now()).unwrap();
    let LoginOutcome::SessionStarted { session, .. } =
        login.totp(&answer(&challenge, &fresh)).await.unwrap()
    else {
        panic!("a fresh code starts a session");
    };
    assert_eq!(
        (session.account_id, session.user_agent.as_str()),
        (id, "phone")
    );
    // The challenge is over once answered.
    let recovery = recovery_codes[0].as_str();
    assert_eq!(
        login.totp(&answer(&challenge, recovery)).await.unwrap(),
        LoginOutcome::InvalidCode
    );
    // A recovery code answers a new challenge, once.
    let challenge = challenge_of(&login, "carol@example.com").await;
    assert!(matches!(
        login.totp(&answer(&challenge, recovery)).await.unwrap(),
        LoginOutcome::SessionStarted { .. }
    ));
    // An expired challenge is refused.
    let challenge = challenge_of(&login, "carol@example.com").await;
    time.advance(std::time::Duration::from_secs(6 * 60));
    let late = identity::totp_code(&enrolment.secret_base32, time.now()).unwrap();
    assert_eq!(
        login.totp(&answer(&challenge, &late)).await.unwrap(),
        LoginOutcome::InvalidCode
    );
}

async fn an_account_that_may_not_log_in_is_told_so_only_with_the_right_password(db: TestDatabase) {
    let fabric = db.fabric();
    let id = account(fabric, "dave@example.com", AccountStatus::Active).await;
    let conn = fabric.connection(identity::SCHEMA).unwrap();
    identity::set_status(conn, id, AccountStatus::Suspended, Utc::now())
        .await
        .unwrap();
    let login = Login::new(fabric, settings());
    assert_eq!(
        login
            .password(&step("dave@example.com", PASSWORD))
            .await
            .unwrap(),
        LoginOutcome::AccountNotActive {
            status: AccountStatus::Suspended
        }
    );
    assert_eq!(
        login
            .password(&step("dave@example.com", "guessing wrong"))
            .await
            .unwrap(),
        LoginOutcome::InvalidCredentials
    );
}

async fn failures_are_throttled_per_email_across_instances_until_the_window_ends(db: TestDatabase) {
    let (clock, time) = Clock::manual(Utc::now().trunc_subsecs(6));
    let a = db.fabric_with_clock(clock.clone()).await;
    let b = db.fabric_with_clock(clock).await;
    account(&a, "erin@example.com", AccountStatus::Active).await;
    let on_a = Login::new(&a, settings());
    let on_b = Login::new(&b, settings());
    for _ in 0..3 {
        assert_eq!(
            on_a.password(&step("erin@example.com", "wrong password"))
                .await
                .unwrap(),
            LoginOutcome::InvalidCredentials
        );
    }
    // The other instance refuses the account, even with the right password.
    let refused = on_b
        .password(&step("erin@example.com", PASSWORD))
        .await
        .unwrap();
    let LoginOutcome::Throttled { retry_after } = refused else {
        panic!("throttled: {refused:?}");
    };
    assert!(retry_after > Duration::minutes(14) && retry_after <= Duration::minutes(15));
    // An email no account has is throttled the same way: the answer tells nothing.
    for _ in 0..3 {
        assert_eq!(
            on_a.password(&step("nobody@example.com", "wrong password"))
                .await
                .unwrap(),
            LoginOutcome::InvalidCredentials
        );
    }
    assert!(matches!(
        on_b.password(&step("nobody@example.com", PASSWORD))
            .await
            .unwrap(),
        LoginOutcome::Throttled { .. }
    ));
    // Another account from the same client is not throttled by erin's failures.
    account(&a, "frank@example.com", AccountStatus::Active).await;
    assert!(matches!(
        on_b.password(&step("frank@example.com", PASSWORD))
            .await
            .unwrap(),
        LoginOutcome::SessionStarted { .. }
    ));
    time.advance(std::time::Duration::from_secs(15 * 60));
    assert!(matches!(
        on_b.password(&step("erin@example.com", PASSWORD))
            .await
            .unwrap(),
        LoginOutcome::SessionStarted { .. }
    ));
}

/// Racing requests: eight logins with one fresh TOTP code on one challenge each start
/// one session at most, and eight wrong passwords at once all get an answer.
async fn racing_attempts_accept_a_code_once_and_all_get_an_answer(db: TestDatabase) {
    let (fabric, time) = timed(&db).await;
    let id = account(&fabric, "gina@example.com", AccountStatus::Active).await;
    let conn = fabric.connection(identity::SCHEMA).unwrap();
    let enrolment = identity::enroll_totp(conn, id, "gina@example.com", time.now())
        .await
        .unwrap();
    let code = identity::totp_code(&enrolment.secret_base32, time.now()).unwrap();
    identity::confirm_totp(conn, id, &code, time.now())
        .await
        .unwrap();
    time.advance(std::time::Duration::from_secs(30));
    let login = Login::new(
        &fabric,
        LoginSettings {
            per_email: ThrottlePolicy {
                max_failures: 100,
                window: Duration::minutes(15),
            },
            ..settings()
        },
    );
    let mut challenges = Vec::new();
    for _ in 0..8 {
        let challenge = challenge_of(&login, "gina@example.com").await;
        challenges.push(challenge);
    }
    let fresh = identity::totp_code(&enrolment.secret_base32, time.now()).unwrap();
    let mut racing = tokio::task::JoinSet::new();
    for challenge in challenges {
        let (login, fresh) = (login.clone(), fresh.clone());
        racing.spawn(async move { login.totp(&answer(&challenge, &fresh)).await });
    }
    let mut sessions = 0;
    while let Some(outcome) = racing.join_next().await {
        match outcome.unwrap().unwrap() {
            LoginOutcome::SessionStarted { .. } => sessions += 1,
            LoginOutcome::InvalidCode => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sessions, 1, "one code, one session");

    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let login = login.clone();
        racing.spawn(async move {
            login
                .password(&step("gina@example.com", "wrong password"))
                .await
        });
    }
    while let Some(outcome) = racing.join_next().await {
        assert_eq!(outcome.unwrap().unwrap(), LoginOutcome::InvalidCredentials);
    }
}
